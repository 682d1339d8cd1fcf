//! Flag evaluation counts for `dol_flag_evaluations_total{flag,variant,reason}`.
//!
//! # Design
//!
//! The OFREP path reads key-value only and runs no SQL, and should stay
//! that way; so the flag-evaluate component counts each answer in
//! key-value: **one key per minute** ([`minute_key`]), a small JSON list of
//! `[flag, variant, reason, count]` ([`Counts`]), read, incremented and
//! written back once per request (a bulk evaluation counts every flag of
//! the answer in that one write). Every minute the alerts scan lists the
//! keys of closed minutes (older than [`FOLD_LAG_SECS`]), adds them to the
//! SQLite totals (`flag_evaluations`, migration 5) with [`fold`], which
//! also records the minute in `flag_evaluation_minutes` in the same
//! transaction, then deletes the keys. `/metrics` exports the SQLite
//! totals only, so the counter never goes backwards and lags the live
//! traffic by one to three minutes.
//!
//! # Accuracy
//!
//! Spin key-value has no compare-and-set: two requests of the same minute
//! that read the key at the same moment both write `n + 1`, and one
//! increment is lost. Counts are exact for sequential requests and
//! **undercount under concurrent evaluations** (the README gives the
//! measured loss). A minute is folded at most once (the minute table), so
//! nothing is counted twice. Unknown flag keys are counted under the flag
//! label [`UNKNOWN_FLAG`] so a client sending random keys cannot grow the
//! metric's label set without bound.

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::StoreError;
use crate::storage::{Row, SqlExecutor, SqlValue, in_transaction};

/// Key-value key prefix of the per-minute counts.
pub const KEY_PREFIX: &str = "dol:flags:evals:";

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

/// The minute of a count key; `None` for other keys.
pub fn key_minute(key: &str) -> Option<i64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

/// Evaluation counts by (flag, variant, reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<(String, String, String), u64>);

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

/// What [`fold`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Minutes added to the totals.
    pub folded: Vec<i64>,
    /// Minutes skipped: already folded (their key outlived a failed
    /// delete), or unreadable.
    pub skipped: Vec<i64>,
    /// Evaluations added.
    pub evaluations: u64,
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

/// Adds the closed minutes' counts to the totals and records each minute
/// as folded, in one transaction; a minute folded before is skipped. The
/// caller deletes the keys of `folded` and `skipped` after this returns.
pub fn fold(
    db: &mut impl SqlExecutor,
    minutes: &[(i64, String)],
    now_s: i64,
    now_ms: i64,
) -> Result<FoldOutcome, StoreError> {
    let mut todo: Vec<&(i64, String)> = minutes
        .iter()
        .filter(|(m, _)| is_closed(*m, now_s))
        .collect();
    todo.sort_by_key(|(m, _)| *m);
    if todo.is_empty() {
        return Ok(FoldOutcome::default());
    }
    in_transaction(db, |db| {
        let mut out = FoldOutcome::default();
        for (minute, text) in todo {
            let seen = sql(
                db,
                "read folded minute",
                "SELECT 1 FROM flag_evaluation_minutes WHERE minute = ?",
                &[SqlValue::Integer(*minute)],
            )?;
            let Some(counts) = Counts::decode(text).filter(|_| seen.is_empty()) else {
                out.skipped.push(*minute);
                continue;
            };
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

/// [`LiveCounts`] of `flag` at `now_s`. Reads at most [`LIVE_MINUTES`]
/// per-minute keys with `get` (no listing: the keys are named by minute)
/// and runs one SQL statement; adds nothing to the OFREP path. The
/// key-value minutes are read first and the totals and folded minutes in
/// one statement after, so a minute folded in between is counted once
/// (from the totals) rather than twice.
pub fn live_counts(
    db: &mut impl SqlExecutor,
    mut get: impl FnMut(&str) -> Result<Option<Vec<u8>>, String>,
    flag: &str,
    now_s: i64,
) -> Result<LiveCounts, StoreError> {
    let current = minute_of(now_s);
    let first = current - (LIVE_MINUTES - 1) * 60;
    let mut open: BTreeMap<i64, Counts> = BTreeMap::new();
    for minute in (first..=current).step_by(60) {
        let bytes = get(&minute_key(minute)).map_err(|message| StoreError::KeyValue {
            context: "read flag evaluation counts",
            message,
        })?;
        // A corrupt key is skipped, as the fold skips it.
        if let Some(counts) = bytes.and_then(|b| Counts::decode(&String::from_utf8_lossy(&b))) {
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
    use crate::test_db::db;

    const NOW_S: i64 = 1_800_000_000;

    #[test]
    fn keys_and_minutes() {
        assert_eq!(minute_of(NOW_S + 59), NOW_S);
        assert_eq!(minute_key(NOW_S), "dol:flags:evals:1800000000");
        assert_eq!(key_minute("dol:flags:evals:1800000000"), Some(NOW_S));
        assert_eq!(key_minute("dol:flags:version"), None);
        assert_eq!(key_minute("dol:flags:evals:x"), None);
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
        let mut c = Counts::default();
        c.add("a", Some("on"), "STATIC", 2);
        let m0 = minute_of(NOW_S) - 180;
        let open = minute_of(NOW_S) - 60;
        let listed = vec![
            (m0, c.encode()),
            (m0 - 60, "garbage".to_owned()),
            (open, c.encode()),
        ];
        let out = fold(&mut db, &listed, NOW_S, 1).unwrap();
        assert_eq!(out.folded, vec![m0]);
        assert_eq!(out.skipped, vec![m0 - 60]);
        assert_eq!(out.evaluations, 2);
        // The same minute again (its key survived a failed delete): skipped.
        let again = fold(&mut db, &listed, NOW_S + 60, 2).unwrap();
        assert_eq!(again.folded, vec![open]);
        assert!(again.skipped.contains(&m0));
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
        let mut kv = crate::storage::MemoryKeyValue::default();
        let put = |kv: &mut crate::storage::MemoryKeyValue, minute: i64, c: &Counts| {
            kv.entries
                .insert(minute_key(minute), c.encode().into_bytes());
        };
        let mut c = Counts::default();
        c.add("a", Some("on"), "TARGETING_MATCH", 3);
        c.add("a", Some("off"), "DEFAULT", 1);
        c.add("b", Some("on"), "STATIC", 9);
        let folded = minute_of(NOW_S) - 300;
        fold(&mut db, &[(folded, c.encode())], NOW_S, 1).unwrap();
        // The folded minute's key outlived its delete: not counted twice.
        put(&mut kv, folded, &c);
        let mut open = Counts::default();
        open.add("a", Some("on"), "TARGETING_MATCH", 2);
        put(&mut kv, minute_of(NOW_S), &open);
        put(&mut kv, minute_of(NOW_S) - 60, &open);
        // Too old to be looked at, and a corrupt one: both ignored.
        put(&mut kv, minute_of(NOW_S) - LIVE_MINUTES * 60, &open);
        kv.entries
            .insert(minute_key(minute_of(NOW_S) - 120), b"garbage".to_vec());
        use crate::storage::KeyValue as _;
        let live = live_counts(&mut db, |k| kv.get(k), "a", NOW_S).unwrap();
        assert_eq!(
            live.variants,
            BTreeMap::from([("on".to_owned(), 7), ("off".to_owned(), 1)])
        );
        assert_eq!((live.total, live.unfolded), (8, 4));
        // A flag never evaluated: empty, not an error.
        let none = live_counts(&mut db, |k| kv.get(k), "zzz", NOW_S).unwrap();
        assert_eq!((none.total, none.variants.len()), (0, 0));
        // A key-value failure is an error naming what failed.
        let err = live_counts(&mut db, |_| Err("down".to_owned()), "a", NOW_S).unwrap_err();
        assert!(err.to_string().contains("flag evaluation counts"), "{err}");
    }

    #[test]
    fn a_failed_fold_adds_nothing() {
        let mut db = db();
        let mut c = Counts::default();
        c.add("a", None, "DISABLED", 1);
        let listed = vec![(minute_of(NOW_S) - 600, c.encode())];
        db.fail_on = Some("INSERT INTO flag_evaluation_minutes");
        assert!(fold(&mut db, &listed, NOW_S, 1).is_err());
        db.fail_on = None;
        assert!(totals(&mut db).unwrap().is_empty());
        assert_eq!(fold(&mut db, &listed, NOW_S, 1).unwrap().evaluations, 1);
    }
}
