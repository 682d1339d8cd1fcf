//! Flag evaluation counts for `dol_flag_evaluations_total{flag,variant,reason}`.
//!
//! # Design
//!
//! The OFREP path reads key-value only and runs no SQL, and should stay
//! that way; so the flag-evaluate component counts each answer in
//! key-value, by minute, with [`record`] (a reused instance gathers its
//! answers' counts in [`Pending`] and records them together a moment
//! later, so many answers share one increment):
//!
//! - an answer of at most [`EXACT_LABELS_MAX`] (flag, variant, reason)
//!   labels (a single evaluation, the gateway's in-process one) adds to one
//!   **atomic counter per label and minute** ([`counter_key`]) with
//!   `wasi:keyvalue/atomics.increment`, which Spin serves for the same
//!   stores: one host call, no read, and exact under concurrency. The first
//!   increment of a label in a minute (the counter comes back equal to its
//!   delta) also adds the label to the minute's index ([`index_key`]) with
//!   compare-and-swap, so the live counts find the counters by name;
//! - a larger answer (a bulk evaluation) is merged into the minute's list
//!   ([`minute_key`], a small JSON list of `[flag, variant, reason,
//!   count]`, [`Counts`]) with one read and one write, as every answer was
//!   counted before the counters: a bulk evaluation of many flags stays one
//!   write, but two bulk evaluations of the same minute that read the list
//!   at the same moment both write `n + 1` and one is lost (an undercount,
//!   never a double count).
//!
//! Every minute the alerts scan lists the keys, reads those of closed
//! minutes (older than [`FOLD_LAG_SECS`]) and adds them to the SQLite
//! totals (`flag_evaluations`, migration 5) with [`fold_closed`], which also
//! records each minute in `flag_evaluation_minutes` in the same
//! transaction, then deletes the keys. `/metrics` exports the SQLite totals
//! only, so the counter never goes backwards and lags the live traffic by
//! one to three minutes. A minute is folded at most once (the minute
//! table), so nothing is counted twice. Unknown flag keys are counted under
//! the flag label [`UNKNOWN_FLAG`] so a client sending random keys cannot
//! grow the metric's label set without bound.

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::StoreError;
use crate::storage::{AtomicKeyValue, Row, SqlExecutor, SqlValue, in_transaction};

/// Key-value key prefix of the per-minute lists of counts (bulk answers).
pub const KEY_PREFIX: &str = "dol:flags:evals:";

/// Key-value key prefix of the per-minute atomic counters and their index.
pub const COUNTER_PREFIX: &str = "dol:flags:count:";

/// Answers with at most this many labels are counted with atomic counters
/// (one increment each); larger ones in the minute's list (one write).
pub const EXACT_LABELS_MAX: usize = 4;

/// How often adding a label to a minute's index retries a compare-and-swap
/// that lost to a concurrent writer before giving up (the counter itself is
/// already counted; only the live counts would miss it until the fold).
const INDEX_CAS_ATTEMPTS: usize = 16;

/// Flag label of evaluations of flags that do not exist.
pub const UNKNOWN_FLAG: &str = "(unknown)";

/// Variant label of answers without a variant (errors, disabled flags).
pub const NO_VARIANT: &str = "-";

/// A minute is folded once it ended at least this long ago, seconds, so
/// requests still writing to it (a request started late in the minute)
/// have finished.
pub const FOLD_LAG_SECS: i64 = 120;

/// The columns [`totals`] reads.
const TOTALS_COLUMNS: &str = "flag, variant, reason, count";

/// The minute (Unix seconds, multiple of 60) holding `now_s`.
pub fn minute_of(now_s: i64) -> i64 {
    now_s.div_euclid(60) * 60
}

/// The key-value key of the counts of `minute`.
pub fn minute_key(minute: i64) -> String {
    format!("{KEY_PREFIX}{minute}")
}

/// The minute of a count list key; `None` for other keys.
pub fn key_minute(key: &str) -> Option<i64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

/// What is counted: `(flag, variant, reason)`.
pub type Label = (String, String, String);

/// The key-value key of `label`'s atomic counter in `minute`: the minute,
/// then the label as a JSON array (any flag or variant name stays
/// unambiguous).
pub fn counter_key(minute: i64, label: &Label) -> String {
    let (flag, variant, reason) = label;
    format!(
        "{COUNTER_PREFIX}{minute}:{}",
        serde_json::json!([flag, variant, reason])
    )
}

/// The key-value key of `minute`'s index: the labels that have a counter in
/// that minute, as a JSON list of `[flag, variant, reason]`.
pub fn index_key(minute: i64) -> String {
    format!("{COUNTER_PREFIX}{minute}")
}

/// A key-value key of the evaluation counts, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountKey {
    /// A minute's list of counts ([`minute_key`]).
    List(i64),
    /// A minute's index of counters ([`index_key`]).
    Index(i64),
    /// One label's counter in a minute ([`counter_key`]).
    Counter(i64, Label),
}

impl CountKey {
    /// The minute the key belongs to.
    pub fn minute(&self) -> i64 {
        match self {
            Self::List(m) | Self::Index(m) | Self::Counter(m, _) => *m,
        }
    }
}

/// Parses a key written by this module; `None` for any other key.
pub fn count_key(key: &str) -> Option<CountKey> {
    if let Some(minute) = key_minute(key) {
        return Some(CountKey::List(minute));
    }
    let rest = key.strip_prefix(COUNTER_PREFIX)?;
    match rest.split_once(':') {
        None => rest.parse().ok().map(CountKey::Index),
        Some((minute, label)) => Some(CountKey::Counter(
            minute.parse().ok()?,
            serde_json::from_str(label).ok()?,
        )),
    }
}

/// Counts `counts` (one request's answers) in the minute of `now_s`: exact
/// counters for a small answer, the minute's list for a large one (see the
/// module's design). The caller logs an error; counting never fails a
/// request.
pub fn record(kv: &mut impl AtomicKeyValue, counts: &Counts, now_s: i64) -> Result<(), StoreError> {
    record_in_minute(kv, counts, minute_of(now_s))
}

/// [`record`] for the minute that starts at `minute` (unix seconds).
fn record_in_minute(
    kv: &mut impl AtomicKeyValue,
    counts: &Counts,
    minute: i64,
) -> Result<(), StoreError> {
    if counts.0.len() > EXACT_LABELS_MAX {
        return add_to_list(kv, counts, minute);
    }
    for (label, n) in &counts.0 {
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        let total = kv
            .increment(&counter_key(minute, label), n)
            .map_err(kv_error("count flag evaluations"))?;
        // Equal to its delta: this increment created the counter, so this
        // request is the one (exactly one) that indexes it.
        if total == n {
            index_label(kv, minute, label)?;
        }
    }
    Ok(())
}

fn kv_error(context: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::KeyValue { context, message }
}

/// Merges `counts` into the minute's list: one read, one write (no
/// compare-and-set: a concurrent writer of the same list can overwrite it).
fn add_to_list(
    kv: &mut impl AtomicKeyValue,
    counts: &Counts,
    minute: i64,
) -> Result<(), StoreError> {
    let key = minute_key(minute);
    let mut total = kv
        .get(&key)
        .map_err(kv_error("read evaluation counts"))?
        .and_then(|b| Counts::decode_stored(&b))
        .unwrap_or_default();
    total.merge(counts);
    kv.set(&key, total.encode().as_bytes())
        .map_err(kv_error("write evaluation counts"))
}

/// The labels of a minute's index; an absent or unreadable one is empty
/// (an unreadable one is then replaced).
fn decode_index(bytes: Option<&[u8]>) -> Vec<Label> {
    bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default()
}

/// Adds `label` to `minute`'s index with compare-and-swap.
fn index_label(kv: &mut impl AtomicKeyValue, minute: i64, label: &Label) -> Result<(), StoreError> {
    let key = index_key(minute);
    for _ in 0..INDEX_CAS_ATTEMPTS {
        let current = kv.get(&key).map_err(kv_error("read the counter index"))?;
        let mut labels = decode_index(current.as_deref());
        if labels.contains(label) {
            return Ok(());
        }
        labels.push(label.clone());
        let encoded = serde_json::to_vec(&labels).map_err(|e| StoreError::Json(e.to_string()))?;
        if kv
            .compare_and_swap(&key, current.as_deref(), &encoded)
            .map_err(kv_error("write the counter index"))?
        {
            return Ok(());
        }
    }
    Err(StoreError::KeyValue {
        context: "write the counter index",
        message: format!("{key} kept changing ({INDEX_CAS_ATTEMPTS} attempts)"),
    })
}

/// How long an instance's first unwritten count waits for others to be
/// written with it ([`Pending`]): at 4,000 evaluations a second, about 80
/// share one write. A crash loses at most this long's counts (telemetry;
/// README "What a crash can lose"). OFREP and the gateway's in-process
/// evaluations both wait this long.
pub const FLUSH_AFTER_MS: u64 = 20;

/// Evaluation counts an instance has answered and not yet written, by
/// minute: a reused instance (WASI 0.3) adds every answer here and writes
/// them together a moment later ([`Pending::flush`]), so a burst of
/// evaluations of one flag costs one counter increment, not one each. The
/// counters stay exact (an increment by the batch's count); what a crash
/// can lose is the batch not yet written (telemetry, never a flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending(BTreeMap<i64, Counts>);

impl Pending {
    /// Adds one answer's `counts` to the minute of `now_s`; returns whether
    /// nothing was pending before, i.e. whether the caller must schedule a
    /// flush (one is already scheduled otherwise).
    pub fn add(&mut self, counts: &Counts, now_s: i64) -> bool {
        if counts.is_empty() {
            return false;
        }
        let was_empty = self.0.is_empty();
        self.0.entry(minute_of(now_s)).or_default().merge(counts);
        was_empty
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes what is pending, leaving this empty (the answers added while
    /// the taken batch is written schedule the next flush).
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }

    /// Writes every minute's counts with [`record`]'s rules (each minute on
    /// its own, so a failed one does not cost the others); returns the
    /// first error.
    pub fn flush(&self, kv: &mut impl AtomicKeyValue) -> Result<(), StoreError> {
        let mut first_error = None;
        for (minute, counts) in &self.0 {
            if let Err(err) = record_in_minute(kv, counts, *minute) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Evaluation counts by (flag, variant, reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<Label, u64>);

impl Counts {
    /// Counts `n` evaluations.
    pub fn add(&mut self, flag: &str, variant: Option<&str>, reason: &str, n: u64) {
        let k = (
            flag.to_owned(),
            variant.unwrap_or(NO_VARIANT).to_owned(),
            reason.to_owned(),
        );
        let c = self.0.entry(k).or_default();
        *c = c.saturating_add(n);
    }

    /// Counts one evaluation as the in-process provider reports it
    /// (`error_code` set means reason `ERROR`; `FLAG_NOT_FOUND` is counted
    /// under [`UNKNOWN_FLAG`]).
    pub fn add_evaluation(
        &mut self,
        flag: &str,
        variant: Option<&str>,
        reason: &str,
        error_code: Option<&str>,
    ) {
        let flag = if error_code == Some("FLAG_NOT_FOUND") {
            UNKNOWN_FLAG
        } else {
            flag
        };
        self.add(flag, variant, reason, 1);
    }

    fn add_ofrep_item(&mut self, v: &Value) {
        let Some(key) = v.get("key").and_then(Value::as_str) else {
            return;
        };
        let code = v.get("errorCode").and_then(Value::as_str);
        let reason = match code {
            Some(_) => "ERROR",
            None => v.get("reason").and_then(Value::as_str).unwrap_or("UNKNOWN"),
        };
        let variant = v.get("variant").and_then(Value::as_str);
        self.add_evaluation(key, variant, reason, code);
    }

    /// Counts the evaluations of an OFREP answer body: a single evaluation
    /// (`{key, reason, variant}` or `{key, errorCode}`) or a bulk one
    /// (`{flags: [...]}`). Bodies without a flag key (bad requests) count
    /// nothing.
    pub fn add_ofrep_body(&mut self, body: &Value) {
        match body.get("flags").and_then(Value::as_array) {
            Some(flags) => flags.iter().for_each(|f| self.add_ofrep_item(f)),
            None => self.add_ofrep_item(body),
        }
    }

    /// Adds `other` into these counts.
    pub fn merge(&mut self, other: &Self) {
        for ((f, v, r), n) in &other.0 {
            self.add(f, Some(v), r, *n);
        }
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored form: `[[flag, variant, reason, count], ...]`.
    pub fn encode(&self) -> String {
        let rows: Vec<Value> = self
            .0
            .iter()
            .map(|((f, v, r), n)| serde_json::json!([f, v, r, n]))
            .collect();
        Value::Array(rows).to_string()
    }

    /// Reads a stored list (the bytes of [`encode`](Self::encode) output);
    /// `None` when malformed.
    pub fn decode_stored(bytes: &[u8]) -> Option<Self> {
        Self::decode(&String::from_utf8_lossy(bytes))
    }

    /// Reads [`encode`](Self::encode) output; `None` when malformed (a
    /// corrupt key is skipped, not fatal).
    pub fn decode(text: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(text).ok()?;
        let mut out = Self::default();
        for row in v.as_array()? {
            let (Some(f), Some(var), Some(r), Some(n)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
                row.get(2).and_then(Value::as_str),
                row.get(3).and_then(Value::as_u64),
            ) else {
                return None;
            };
            out.add(f, Some(var), r, n);
        }
        Some(out)
    }
}

/// What [`fold`] and [`fold_closed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Minutes added to the totals.
    pub folded: Vec<i64>,
    /// Minutes skipped: already folded (their keys outlived a failed
    /// delete).
    pub skipped: Vec<i64>,
    /// Evaluations added.
    pub evaluations: u64,
    /// Count lists that could not be read as counts (counted as nothing,
    /// deleted with their minute).
    pub unreadable: usize,
    /// Keys whose delete failed (their minute is recorded, so they are
    /// skipped and deleted again next time).
    pub warnings: Vec<String>,
}

fn sql(
    db: &mut impl SqlExecutor,
    context: &'static str,
    q: &str,
    p: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    db.execute(q, p)
        .map_err(|message| StoreError::Sql { context, message })
}

/// Whether `minute` is closed at `now_s`: it ended [`FOLD_LAG_SECS`] ago.
pub fn is_closed(minute: i64, now_s: i64) -> bool {
    minute <= minute_of(now_s) - FOLD_LAG_SECS
}

/// Folds every closed minute among `keys` (the store's keys, as listed):
/// reads its list and its counters, adds them to the totals with [`fold`],
/// then deletes every key of the minutes folded or skipped. Keys of open
/// minutes and other keys are left alone. A read error stops the fold
/// before anything is added or deleted (the next run retries); a failed
/// delete is a warning.
pub fn fold_closed(
    db: &mut impl SqlExecutor,
    kv: &mut impl AtomicKeyValue,
    keys: impl IntoIterator<Item = String>,
    now_s: i64,
    now_ms: i64,
) -> Result<FoldOutcome, StoreError> {
    let mut by_minute: BTreeMap<i64, (Counts, Vec<String>)> = BTreeMap::new();
    let mut unreadable = 0;
    for key in keys {
        let Some(parsed) = count_key(&key).filter(|k| is_closed(k.minute(), now_s)) else {
            continue;
        };
        let (counts, keys) = by_minute.entry(parsed.minute()).or_default();
        match parsed {
            CountKey::List(_) => {
                let bytes = kv.get(&key).map_err(kv_error("read evaluation counts"))?;
                match bytes.and_then(|b| Counts::decode_stored(&b)) {
                    Some(list) => counts.merge(&list),
                    None => unreadable += 1,
                }
            }
            CountKey::Counter(_, (flag, variant, reason)) => {
                // A delta of 0 is the portable read (see AtomicKeyValue).
                let n = kv
                    .increment(&key, 0)
                    .map_err(kv_error("read an evaluation counter"))?;
                counts.add(
                    &flag,
                    Some(&variant),
                    &reason,
                    u64::try_from(n).unwrap_or(0),
                );
            }
            CountKey::Index(_) => {}
        }
        keys.push(key);
    }
    let minutes: Vec<(i64, Counts)> = by_minute
        .iter()
        .map(|(minute, (counts, _))| (*minute, counts.clone()))
        .collect();
    let mut out = fold(db, &minutes, now_s, now_ms)?;
    out.unreadable = unreadable;
    for minute in out.folded.iter().chain(&out.skipped) {
        for key in by_minute
            .get(minute)
            .map(|(_, keys)| keys.as_slice())
            .unwrap_or_default()
        {
            if let Err(e) = kv.delete(key) {
                out.warnings.push(format!("deleting {key} failed: {e}"));
            }
        }
    }
    Ok(out)
}

/// Adds the closed minutes' counts to the totals and records each minute
/// as folded, in one transaction; a minute folded before is skipped. The
/// caller deletes the keys of `folded` and `skipped` after this returns.
pub fn fold(
    db: &mut impl SqlExecutor,
    minutes: &[(i64, Counts)],
    now_s: i64,
    now_ms: i64,
) -> Result<FoldOutcome, StoreError> {
    let mut todo: Vec<&(i64, Counts)> = minutes
        .iter()
        .filter(|(m, _)| is_closed(*m, now_s))
        .collect();
    todo.sort_by_key(|(m, _)| *m);
    if todo.is_empty() {
        return Ok(FoldOutcome::default());
    }
    in_transaction(db, |db| {
        let mut out = FoldOutcome::default();
        for (minute, counts) in todo {
            let seen = sql(
                db,
                "read folded minute",
                "SELECT 1 FROM flag_evaluation_minutes WHERE minute = ?",
                &[SqlValue::Integer(*minute)],
            )?;
            if !seen.is_empty() {
                out.skipped.push(*minute);
                continue;
            }
            for ((f, v, r), n) in &counts.0 {
                sql(
                    db,
                    "add flag evaluations",
                    "INSERT INTO flag_evaluations (flag, variant, reason, count) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (flag, variant, reason) DO UPDATE SET count = flag_evaluations.count + excluded.count",
                    &[
                        SqlValue::Text(f.clone()),
                        SqlValue::Text(v.clone()),
                        SqlValue::Text(r.clone()),
                        SqlValue::Integer(i64::try_from(*n).unwrap_or(i64::MAX)),
                    ],
                )?;
                out.evaluations = out.evaluations.saturating_add(*n);
            }
            sql(
                db,
                "record folded minute",
                "INSERT INTO flag_evaluation_minutes (minute, folded_at) VALUES (?, ?)",
                &[SqlValue::Integer(*minute), SqlValue::Integer(now_ms)],
            )?;
            out.folded.push(*minute);
        }
        Ok(out)
    })
}

/// The folded totals in the order `/metrics` shows them:
/// `(flag, variant, reason, count)`.
pub fn totals(db: &mut impl SqlExecutor) -> Result<Vec<(String, String, String, u64)>, StoreError> {
    sql(
        db,
        "read flag evaluation totals",
        &format!("SELECT {TOTALS_COLUMNS} FROM flag_evaluations ORDER BY flag, variant, reason"),
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("flag_evaluations", values);
        Ok((
            r.text(0, "flag")?.to_owned(),
            r.text(1, "variant")?.to_owned(),
            r.text(2, "reason")?.to_owned(),
            r.uint(3, "count")?,
        ))
    })
    .collect()
}

/// How far back [`live_counts`] looks for minutes not folded yet, minutes:
/// the alerts scan folds every minute, so only the last two or three are
/// open; the margin covers a scan that missed a few ticks.
pub const LIVE_MINUTES: i64 = 15;

/// One flag's evaluations per variant right now (`GET
/// /admin/flags/{key}/evaluations`): the folded totals plus the minutes
/// still in key-value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCounts {
    /// The flag.
    pub flag: String,
    /// Evaluations per variant (`-` for answers without one), every reason.
    pub variants: BTreeMap<String, u64>,
    /// Their sum.
    pub total: u64,
    /// Of `total`, those in minutes not folded yet (the last minutes).
    pub unfolded: u64,
}

/// [`LiveCounts`] of `flag` at `now_s`. Reads, for each of the last
/// [`LIVE_MINUTES`] minutes, its list and its index with `get` (no listing:
/// the keys are named by minute) and the flag's counters the index names,
/// and runs one SQL statement; adds nothing to the OFREP path. The
/// key-value minutes are read first and the totals and folded minutes in
/// one statement after, so a minute folded in between is counted once
/// (from the totals) rather than twice.
pub fn live_counts(
    db: &mut impl SqlExecutor,
    kv: &mut impl AtomicKeyValue,
    flag: &str,
    now_s: i64,
) -> Result<LiveCounts, StoreError> {
    let current = minute_of(now_s);
    let first = current - (LIVE_MINUTES - 1) * 60;
    let mut open: BTreeMap<i64, Counts> = BTreeMap::new();
    for minute in (first..=current).step_by(60) {
        let mut counts = Counts::default();
        let list = kv
            .get(&minute_key(minute))
            .map_err(kv_error("read flag evaluation counts"))?;
        // A corrupt list is skipped, as the fold skips it.
        if let Some(list) = list.and_then(|b| Counts::decode_stored(&b)) {
            counts.merge(&list);
        }
        let index = kv
            .get(&index_key(minute))
            .map_err(kv_error("read the counter index"))?;
        for label in decode_index(index.as_deref()) {
            if label.0 != flag {
                continue;
            }
            // A delta of 0 is the portable read (see AtomicKeyValue).
            let n = kv
                .increment(&counter_key(minute, &label), 0)
                .map_err(kv_error("read an evaluation counter"))?;
            counts.add(
                &label.0,
                Some(&label.1),
                &label.2,
                u64::try_from(n).unwrap_or(0),
            );
        }
        if !counts.is_empty() {
            open.insert(minute, counts);
        }
    }
    let rows = sql(
        db,
        "read live flag evaluation counts",
        "SELECT variant, count, NULL FROM flag_evaluations WHERE flag = ? \
         UNION ALL SELECT NULL, NULL, minute FROM flag_evaluation_minutes WHERE minute >= ?",
        &[SqlValue::Text(flag.to_owned()), SqlValue::Integer(first)],
    )?;
    let mut out = LiveCounts {
        flag: flag.to_owned(),
        ..LiveCounts::default()
    };
    let add = |variants: &mut BTreeMap<String, u64>, variant: &str, n: u64| {
        let c = variants.entry(variant.to_owned()).or_default();
        *c = c.saturating_add(n);
    };
    for values in &rows {
        let r = Row::new("flag_evaluations", values);
        match r.opt_int(2, "minute")? {
            Some(folded) => {
                open.remove(&folded);
            }
            None => add(
                &mut out.variants,
                r.text(0, "variant")?,
                r.uint(1, "count")?,
            ),
        }
    }
    for counts in open.values() {
        for ((f, v, _), n) in &counts.0 {
            if f == flag {
                add(&mut out.variants, v, *n);
                out.unfolded = out.unfolded.saturating_add(*n);
            }
        }
    }
    out.total = out.variants.values().fold(0, |a, n| a.saturating_add(*n));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::MemoryKeyValue;
    use crate::test_db::db;

    const NOW_S: i64 = 1_800_000_000;

    #[test]
    fn keys_and_minutes() {
        assert_eq!(minute_of(NOW_S + 59), NOW_S);
        assert_eq!(minute_key(NOW_S), "dol:flags:evals:1800000000");
        assert_eq!(key_minute("dol:flags:evals:1800000000"), Some(NOW_S));
        assert_eq!(key_minute("dol:flags:version"), None);
        assert_eq!(key_minute("dol:flags:evals:x"), None);
        let label: Label = ("a:b".into(), "on".into(), "STATIC".into());
        assert_eq!(
            counter_key(NOW_S, &label),
            r#"dol:flags:count:1800000000:["a:b","on","STATIC"]"#
        );
        assert_eq!(
            count_key(&counter_key(NOW_S, &label)),
            Some(CountKey::Counter(NOW_S, label))
        );
        assert_eq!(count_key(&index_key(NOW_S)), Some(CountKey::Index(NOW_S)));
        assert_eq!(count_key(&minute_key(NOW_S)), Some(CountKey::List(NOW_S)));
        for other in [
            "dol:flags:version",
            "dol:flags:count:x",
            "dol:flags:count:1800000000:not json",
            "dol:flags:count:1800000000:[1,2]",
        ] {
            assert_eq!(count_key(other), None, "{other}");
        }
    }

    proptest::proptest! {
        /// Any flag, variant and reason name comes back from its counter's
        /// key unchanged (the key is the only place the label is stored).
        #[test]
        fn a_counter_key_names_its_minute_and_label(
            minute in -10_000_000_000i64..10_000_000_000,
            flag in ".*", variant in ".*", reason in ".*",
        ) {
            let label: Label = (flag, variant, reason);
            proptest::prop_assert_eq!(
                count_key(&counter_key(minute, &label)),
                Some(CountKey::Counter(minute, label))
            );
        }
    }

    fn counts(rows: &[(&str, &str, &str, u64)]) -> Counts {
        let mut c = Counts::default();
        for (f, v, r, n) in rows {
            c.add(f, Some(v), r, *n);
        }
        c
    }

    fn counter(kv: &mut MemoryKeyValue, minute: i64, f: &str, v: &str, r: &str) -> Option<i64> {
        let bytes = kv
            .entries
            .get(&counter_key(minute, &(f.into(), v.into(), r.into())))?;
        Some(i64::from_le_bytes(bytes.as_slice().try_into().unwrap()))
    }

    fn index(kv: &MemoryKeyValue, minute: i64) -> Vec<Label> {
        decode_index(kv.entries.get(&index_key(minute)).map(Vec::as_slice))
    }

    #[test]
    fn a_small_answer_counts_on_atomic_counters_indexed_once() {
        let mut kv = MemoryKeyValue::default();
        let m = minute_of(NOW_S);
        for _ in 0..3 {
            record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), NOW_S).unwrap();
        }
        record(
            &mut kv,
            &counts(&[("a", "off", "DEFAULT", 2), ("b", "x", "STATIC", 1)]),
            NOW_S + 1,
        )
        .unwrap();
        assert_eq!(counter(&mut kv, m, "a", "on", "STATIC"), Some(3));
        assert_eq!(counter(&mut kv, m, "a", "off", "DEFAULT"), Some(2));
        assert_eq!(counter(&mut kv, m, "b", "x", "STATIC"), Some(1));
        // Each label once, in the order first counted; no list written.
        assert_eq!(
            index(&kv, m),
            vec![
                ("a".into(), "on".into(), "STATIC".into()),
                ("a".into(), "off".into(), "DEFAULT".into()),
                ("b".into(), "x".into(), "STATIC".into()),
            ]
        );
        assert!(!kv.entries.contains_key(&minute_key(m)));
        // The next minute has counters and an index of its own.
        record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), NOW_S + 60).unwrap();
        assert_eq!(counter(&mut kv, m + 60, "a", "on", "STATIC"), Some(1));
        assert_eq!(index(&kv, m + 60).len(), 1);
    }

    #[test]
    fn a_large_answer_is_merged_into_the_minutes_list() {
        let mut kv = MemoryKeyValue::default();
        let m = minute_of(NOW_S);
        let bulk = counts(&[
            ("a", "on", "STATIC", 1),
            ("b", "on", "STATIC", 1),
            ("c", "on", "STATIC", 1),
            ("d", "on", "STATIC", 1),
            ("e", "on", "STATIC", 1),
        ]);
        assert!(bulk.0.len() > EXACT_LABELS_MAX);
        record(&mut kv, &bulk, NOW_S).unwrap();
        record(&mut kv, &bulk, NOW_S).unwrap();
        let list = Counts::decode(std::str::from_utf8(&kv.entries[&minute_key(m)]).unwrap());
        let mut twice = bulk.clone();
        twice.merge(&bulk);
        assert_eq!(list, Some(twice));
        assert_eq!(kv.entries.len(), 1, "no counter, no index");
        // A corrupt list is replaced, not fatal.
        kv.entries.insert(minute_key(m), b"garbage".to_vec());
        record(&mut kv, &bulk, NOW_S).unwrap();
        assert_eq!(
            Counts::decode(std::str::from_utf8(&kv.entries[&minute_key(m)]).unwrap()),
            Some(bulk)
        );
    }

    #[test]
    fn pending_answers_are_written_together_per_minute_and_stay_exact() {
        let mut pending = Pending::default();
        let single = counts(&[("a", "on", "STATIC", 1)]);
        // The first answer asks for a flush; the others join it.
        assert!(pending.add(&single, NOW_S));
        for _ in 0..99 {
            assert!(!pending.add(&single, NOW_S + 30));
        }
        // An answer that counts nothing (a bad request) schedules nothing.
        assert!(!Pending::default().add(&Counts::default(), NOW_S));
        // A batch that spans a minute's end counts each answer in its minute.
        assert!(!pending.add(&single, NOW_S + 60));
        let mut kv = MemoryKeyValue::default();
        let batch = pending.take();
        assert!(pending.is_empty());
        batch.flush(&mut kv).unwrap();
        let m = minute_of(NOW_S);
        assert_eq!(counter(&mut kv, m, "a", "on", "STATIC"), Some(100));
        assert_eq!(counter(&mut kv, m + 60, "a", "on", "STATIC"), Some(1));
        assert_eq!(index(&kv, m).len(), 1);
        // The next batch adds to the same counters.
        assert!(pending.add(&single, NOW_S));
        pending.take().flush(&mut kv).unwrap();
        assert_eq!(counter(&mut kv, m, "a", "on", "STATIC"), Some(101));
    }

    #[test]
    fn a_failed_minute_of_a_batch_does_not_cost_the_others() {
        let mut pending = Pending::default();
        pending.add(&counts(&[("a", "on", "STATIC", 1)]), NOW_S);
        pending.add(&counts(&[("a", "on", "STATIC", 1)]), NOW_S + 60);
        // The index of every minute is contended: both minutes are counted,
        // the error is reported once.
        let mut kv = Contended(MemoryKeyValue::default());
        let err = pending.flush(&mut kv).unwrap_err();
        assert!(err.to_string().contains("kept changing"), "{err}");
        let m = minute_of(NOW_S);
        assert_eq!(counter(&mut kv.0, m, "a", "on", "STATIC"), Some(1));
        assert_eq!(counter(&mut kv.0, m + 60, "a", "on", "STATIC"), Some(1));
    }

    /// A store whose compare-and-swap always loses (another writer changes
    /// the index every time) or whose writes fail.
    struct Contended(MemoryKeyValue);

    impl crate::storage::KeyValue for Contended {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.0.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
            self.0.set(key, value)
        }
        fn delete(&mut self, key: &str) -> Result<(), String> {
            self.0.delete(key)
        }
    }

    impl AtomicKeyValue for Contended {
        fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String> {
            self.0.increment(key, delta)
        }
        fn compare_and_swap(
            &mut self,
            _: &str,
            _: Option<&[u8]>,
            _: &[u8],
        ) -> Result<bool, String> {
            Ok(false)
        }
    }

    #[test]
    fn an_index_that_keeps_changing_is_an_error_but_the_count_stands() {
        let mut kv = Contended(MemoryKeyValue::default());
        let err = record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), NOW_S).unwrap_err();
        assert!(err.to_string().contains("kept changing"), "{err}");
        assert_eq!(
            counter(&mut kv.0, minute_of(NOW_S), "a", "on", "STATIC"),
            Some(1)
        );
        // A store that fails writes: an error naming what failed.
        let mut down = MemoryKeyValue {
            fail_writes: true,
            ..MemoryKeyValue::default()
        };
        let err = record(&mut down, &counts(&[("a", "on", "STATIC", 1)]), NOW_S).unwrap_err();
        assert!(err.to_string().contains("count flag evaluations"), "{err}");
    }

    #[test]
    fn fold_closed_reads_lists_and_counters_then_deletes_their_keys() {
        let mut db = db();
        let mut kv = MemoryKeyValue::default();
        let closed = minute_of(NOW_S) - 180;
        let open = minute_of(NOW_S) - 60;
        for now in [closed, closed, open] {
            record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), now).unwrap();
        }
        let bulk = counts(&[
            ("a", "on", "STATIC", 5),
            ("b", "on", "STATIC", 1),
            ("c", "on", "STATIC", 1),
            ("d", "on", "STATIC", 1),
            ("e", "on", "STATIC", 1),
        ]);
        record(&mut kv, &bulk, closed).unwrap();
        kv.entries
            .insert(minute_key(closed - 60), b"garbage".to_vec());
        kv.entries.insert("dol:flags:version".into(), b"7".to_vec());
        let keys: Vec<String> = kv.entries.keys().cloned().collect();
        let out = fold_closed(&mut db, &mut kv, keys, NOW_S, 1).unwrap();
        assert_eq!(out.folded, vec![closed - 60, closed]);
        assert_eq!((out.evaluations, out.unreadable), (2 + 9, 1));
        assert!(out.warnings.is_empty());
        assert_eq!(
            totals(&mut db).unwrap(),
            vec![
                ("a".into(), "on".into(), "STATIC".into(), 7),
                ("b".into(), "on".into(), "STATIC".into(), 1),
                ("c".into(), "on".into(), "STATIC".into(), 1),
                ("d".into(), "on".into(), "STATIC".into(), 1),
                ("e".into(), "on".into(), "STATIC".into(), 1),
            ]
        );
        // The closed minutes' keys are gone; the open minute and other keys stay.
        let left: Vec<&String> = kv.entries.keys().collect();
        assert_eq!(
            left,
            vec![
                &index_key(open),
                &counter_key(open, &("a".into(), "on".into(), "STATIC".into())),
                &"dol:flags:version".to_owned(),
            ]
        );
        // A key that outlived its delete is skipped (not added twice) and deleted.
        record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), closed).unwrap();
        let keys: Vec<String> = kv.entries.keys().cloned().collect();
        let again = fold_closed(&mut db, &mut kv, keys, NOW_S, 2).unwrap();
        assert_eq!(
            (again.folded.clone(), again.skipped.clone()),
            (vec![], vec![closed])
        );
        assert_eq!(totals(&mut db).unwrap()[0].3, 7);
        assert!(!kv.entries.contains_key(&index_key(closed)));
    }

    #[test]
    fn a_fold_that_cannot_read_a_counter_adds_and_deletes_nothing() {
        let mut db = db();
        let mut kv = MemoryKeyValue::default();
        let closed = minute_of(NOW_S) - 180;
        record(&mut kv, &counts(&[("a", "on", "STATIC", 1)]), closed).unwrap();
        let keys: Vec<String> = kv.entries.keys().cloned().collect();
        let before = kv.entries.clone();
        // Reading a counter is an increment by 0: a store refusing writes
        // fails the whole fold before anything is added.
        kv.fail_writes = true;
        let err = fold_closed(&mut db, &mut kv, keys, NOW_S, 1).unwrap_err();
        assert!(err.to_string().contains("evaluation counter"), "{err}");
        assert!(totals(&mut db).unwrap().is_empty());
        assert_eq!(kv.entries, before);
    }

    #[test]
    fn ofrep_bodies_count_single_bulk_and_errors() {
        let mut c = Counts::default();
        c.add_ofrep_body(&json!({"key":"a","value":true,"reason":"STATIC","variant":"on"}));
        c.add_ofrep_body(&json!({"key":"a","value":true,"reason":"STATIC","variant":"on"}));
        c.add_ofrep_body(&json!({"key":"nope","errorCode":"FLAG_NOT_FOUND","errorDetails":"x"}));
        c.add_ofrep_body(&json!({"key":"b","errorCode":"PARSE_ERROR","errorDetails":"x"}));
        c.add_ofrep_body(&json!({"key":"d","reason":"DISABLED"}));
        c.add_ofrep_body(&json!({"errorCode":"INVALID_CONTEXT","errorDetails":"x"}));
        c.add_ofrep_body(&json!({"flags":[
            {"key":"a","reason":"STATIC","variant":"on"},
            {"key":"e","reason":"TARGETING_MATCH","variant":"treatment"}
        ]}));
        let get = |f: &str, v: &str, r: &str| c.0.get(&(f.into(), v.into(), r.into())).copied();
        assert_eq!(get("a", "on", "STATIC"), Some(3));
        assert_eq!(get(UNKNOWN_FLAG, "-", "ERROR"), Some(1));
        assert_eq!(get("b", "-", "ERROR"), Some(1));
        assert_eq!(get("d", "-", "DISABLED"), Some(1));
        assert_eq!(get("e", "treatment", "TARGETING_MATCH"), Some(1));
        assert_eq!(c.0.len(), 5);
        assert_eq!(Counts::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Counts::decode("{}"), None);
        assert_eq!(Counts::decode(r#"[["a","b","c",-1]]"#), None);
        let mut twice = c.clone();
        twice.merge(&c);
        assert_eq!(
            twice.0.get(&("a".into(), "on".into(), "STATIC".into())),
            Some(&6)
        );
    }

    #[test]
    fn fold_adds_closed_minutes_once() {
        let mut db = db();
        let c = counts(&[("a", "on", "STATIC", 2)]);
        let m0 = minute_of(NOW_S) - 180;
        let open = minute_of(NOW_S) - 60;
        let listed = vec![(m0, c.clone()), (open, c.clone())];
        let out = fold(&mut db, &listed, NOW_S, 1).unwrap();
        assert_eq!(out.folded, vec![m0]);
        assert!(out.skipped.is_empty());
        assert_eq!(out.evaluations, 2);
        // The same minute again (its key survived a failed delete): skipped.
        let again = fold(&mut db, &listed, NOW_S + 60, 2).unwrap();
        assert_eq!(again.folded, vec![open]);
        assert_eq!(again.skipped, vec![m0]);
        assert_eq!(
            totals(&mut db).unwrap(),
            vec![("a".into(), "on".into(), "STATIC".into(), 4)]
        );
        // Nothing closed: no transaction at all.
        assert_eq!(
            fold(&mut db, &[], NOW_S, 3).unwrap(),
            FoldOutcome::default()
        );
    }

    #[test]
    fn live_counts_add_open_minutes_to_the_totals_once() {
        let mut db = db();
        let mut kv = MemoryKeyValue::default();
        let put = |kv: &mut MemoryKeyValue, minute: i64, c: &Counts| {
            kv.entries
                .insert(minute_key(minute), c.encode().into_bytes());
        };
        let c = counts(&[
            ("a", "on", "TARGETING_MATCH", 3),
            ("a", "off", "DEFAULT", 1),
            ("b", "on", "STATIC", 9),
        ]);
        let folded = minute_of(NOW_S) - 300;
        fold(&mut db, &[(folded, c.clone())], NOW_S, 1).unwrap();
        // The folded minute's keys outlived their delete: not counted twice.
        put(&mut kv, folded, &c);
        record(
            &mut kv,
            &counts(&[("a", "on", "TARGETING_MATCH", 1)]),
            folded,
        )
        .unwrap();
        let open = counts(&[("a", "on", "TARGETING_MATCH", 2)]);
        put(&mut kv, minute_of(NOW_S), &open);
        put(&mut kv, minute_of(NOW_S) - 60, &open);
        // Counters of two open minutes, of this flag and of another.
        for now in [NOW_S, NOW_S - 60] {
            record(&mut kv, &counts(&[("a", "on", "TARGETING_MATCH", 1)]), now).unwrap();
            record(&mut kv, &counts(&[("a", "-", "DISABLED", 1)]), now).unwrap();
            record(&mut kv, &counts(&[("b", "on", "STATIC", 1)]), now).unwrap();
        }
        // Too old to be looked at, and a corrupt list: both ignored.
        put(&mut kv, minute_of(NOW_S) - LIVE_MINUTES * 60, &open);
        record(
            &mut kv,
            &counts(&[("a", "on", "STATIC", 1)]),
            NOW_S - LIVE_MINUTES * 60,
        )
        .unwrap();
        kv.entries
            .insert(minute_key(minute_of(NOW_S) - 120), b"garbage".to_vec());
        let live = live_counts(&mut db, &mut kv, "a", NOW_S).unwrap();
        assert_eq!(
            live.variants,
            BTreeMap::from([
                ("on".to_owned(), 3 + 2 + 2 + 2),
                ("off".to_owned(), 1),
                ("-".to_owned(), 2)
            ])
        );
        assert_eq!((live.total, live.unfolded), (12, 8));
        // A flag never evaluated: empty, not an error.
        let none = live_counts(&mut db, &mut kv, "zzz", NOW_S).unwrap();
        assert_eq!((none.total, none.variants.len()), (0, 0));
        // A key-value failure is an error naming what failed.
        kv.fail_writes = true;
        let err = live_counts(&mut db, &mut kv, "a", NOW_S).unwrap_err();
        assert!(err.to_string().contains("evaluation counter"), "{err}");
    }

    #[test]
    fn a_failed_fold_adds_nothing() {
        let mut db = db();
        let mut c = Counts::default();
        c.add("a", None, "DISABLED", 1);
        let listed = vec![(minute_of(NOW_S) - 600, c)];
        db.fail_on = Some("INSERT INTO flag_evaluation_minutes");
        assert!(fold(&mut db, &listed, NOW_S, 1).is_err());
        db.fail_on = None;
        assert!(totals(&mut db).unwrap().is_empty());
        assert_eq!(fold(&mut db, &listed, NOW_S, 1).unwrap().evaluations, 1);
    }
}
