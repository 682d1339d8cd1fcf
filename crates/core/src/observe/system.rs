//! Reading the inputs of DOL's one health score ([`super::score`], "One
//! score") and everything else the health component shows, over
//! [`SqlExecutor`] and [`KeyValue`].
//!
//! `/api/health` and `/metrics` (health component) and the `alerts` scan
//! (scans component) all make the same two storage round trips
//! ([`key_value_check`], [`sqlite_check`]) over the stores they opened and
//! hand them to [`read_score_inputs`], which reads the rest (recent usage,
//! the gateway's breakers, the scans' freshness). So at the same moment
//! they compute the same score, status and emergency decision.
//!
//! Latencies are measured with the caller's `clock` (Unix ms); decisions
//! use `now_ms`. Errors are typed ([`StoreError`]); what may only be logged
//! comes back as text (`error`, `warnings`), never sent to clients.

use super::flag_counts;
use super::score::{ActiveAlert, ScoreInputs};
use super::store::{self, AlertQuery, StoreError};
use super::usage::{
    self, Agg, Breaker, HealthBody, HealthInputs, MetricsInput, Overview, USAGE_BUCKETS, UsageRow,
    Window, window_start,
};
use crate::gateway::engine::RoutingState;
use crate::gateway::telemetry::{LatencyCounts, latency_column};
use crate::health::{CheckResult, LAST_RUN_KEY, ScanRun};
use crate::storage::{KeyValue, Row, SqlExecutor, SqlValue};
use crate::video;

use crate::gateway::store::ROUTING_KEY;

/// Key the health component's key-value round trip writes and deletes.
pub const HEALTH_PROBE_KEY: &str = "dol:health:probe";

/// Key the `alerts` scan's key-value round trip writes and deletes: its
/// own, so a scan and a health request never read each other's stamp.
pub const SCANS_PROBE_KEY: &str = "dol:scans:health-probe";

/// One storage round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageCheck {
    /// The public result (a failure says only "unavailable").
    pub result: CheckResult,
    /// The latest scan run the store holds, when it was read.
    pub last_run: Option<ScanRun>,
    /// What went wrong, for the log only.
    pub error: Option<String>,
}

fn since(clock: &mut impl FnMut() -> i64, start: i64) -> u64 {
    u64::try_from(clock().saturating_sub(start)).unwrap_or(0)
}

/// A finished check: `Ok((last run, note to log))` passed, `Err` failed.
fn finish(
    name: &str,
    start: i64,
    clock: &mut impl FnMut() -> i64,
    outcome: Result<(Option<ScanRun>, Option<String>), String>,
) -> StorageCheck {
    let latency_ms = since(clock, start);
    match outcome {
        Ok((last_run, error)) => StorageCheck {
            result: CheckResult::pass(name, latency_ms),
            last_run,
            error,
        },
        Err(error) => StorageCheck {
            result: CheckResult::fail(name, latency_ms, "unavailable"),
            last_run: None,
            error: Some(error),
        },
    }
}

/// The `key-value` check: writes a stamp under `key`, reads it back and
/// deletes it, then reads the last scan run ([`LAST_RUN_KEY`]; unreadable
/// is not a storage failure). `kv` is the opened store, or why opening it
/// failed (the check then fails).
pub fn key_value_check<K: KeyValue>(
    kv: Result<&mut K, String>,
    key: &str,
    clock: &mut impl FnMut() -> i64,
) -> StorageCheck {
    let start = clock();
    let outcome = kv.and_then(|kv| {
        let stamp = start.to_string().into_bytes();
        kv.set(key, &stamp).map_err(|e| format!("set: {e}"))?;
        let read = kv.get(key).map_err(|e| format!("get: {e}"))?;
        if read.as_deref() != Some(stamp.as_slice()) {
            return Err("read back a different value".to_owned());
        }
        kv.delete(key).map_err(|e| format!("delete: {e}"))?;
        let last = kv
            .get(LAST_RUN_KEY)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok((last, None))
    });
    finish("key-value", start, clock, outcome)
}

/// The `sqlite` check: reads the latest scan run. `db` is the opened
/// database, or why opening it failed. A statement that fails fails the
/// check; a row that does not read passes it (the round trip worked) with
/// the problem in `error`.
pub fn sqlite_check<E: SqlExecutor>(
    db: Result<&mut E, String>,
    clock: &mut impl FnMut() -> i64,
) -> StorageCheck {
    database_check("sqlite", db, clock)
}

/// [`sqlite_check`] under the name of the backend in use (`sqlite` or
/// `postgres`), so a failing shared database is named as such.
pub fn database_check<E: SqlExecutor>(
    name: &str,
    db: Result<&mut E, String>,
    clock: &mut impl FnMut() -> i64,
) -> StorageCheck {
    let start = clock();
    let outcome = db.and_then(|db| match super::scan_store::last_run(db) {
        Ok(last) => Ok((last, None)),
        Err(e @ StoreError::Sql { .. }) => Err(e.to_string()),
        Err(e) => Ok((None, Some(e.to_string()))),
    });
    finish(name, start, clock, outcome)
}

/// The `migrations` check: every version of [`crate::migrate::MIGRATIONS`]
/// is in `_dol_migrations`; fails naming the missing ones.
pub fn migrations_check<E: SqlExecutor>(
    db: Result<&mut E, String>,
    clock: &mut impl FnMut() -> i64,
) -> StorageCheck {
    let start = clock();
    let applied = db.and_then(|db| applied_migrations(db).map_err(|e| e.to_string()));
    let latency_ms = since(clock, start);
    match applied {
        Ok(applied) => {
            let missing = usage::missing_migrations(&applied);
            let result = if missing.is_empty() {
                CheckResult::pass("migrations", latency_ms)
            } else {
                let list: Vec<String> = missing.iter().map(i64::to_string).collect();
                CheckResult::fail(
                    "migrations",
                    latency_ms,
                    &format!("missing versions {}", list.join(", ")),
                )
            };
            StorageCheck {
                result,
                last_run: None,
                error: None,
            }
        }
        Err(error) => StorageCheck {
            result: CheckResult::fail("migrations", latency_ms, "unavailable"),
            last_run: None,
            error: Some(error),
        },
    }
}

/// Which usage rows a reader sums: from `from_s` (Unix seconds), of one
/// org's keys (`org`, read from the aggregates' `org_id`, migration 17) or
/// of the whole deployment (`None`: every org summed, as before orgs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageScope<'a> {
    /// The first minute read.
    pub from_s: i64,
    /// One org's rows only (`Some("")`: keys of no org).
    pub org: Option<&'a str>,
}

impl From<i64> for UsageScope<'_> {
    fn from(from_s: i64) -> Self {
        Self { from_s, org: None }
    }
}

/// ` AND org_id = ?` and its parameter when `org` is given (nothing else
/// is ever spliced into the statement).
fn org_condition(org: Option<&str>, params: &mut Vec<SqlValue>) -> &'static str {
    match org {
        Some(org) => {
            params.push(SqlValue::Text(org.to_owned()));
            " AND org_id = ?"
        }
        None => "",
    }
}

/// The score's inputs, and what else was read on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    /// Everything [`super::score::system_score`] reads.
    pub inputs: ScoreInputs,
    /// The usage rows read (from the caller's start, at least the last
    /// 5 minutes); empty when unreadable.
    pub rows: Vec<UsageRow>,
    /// Why the usage rows could not be read (the generation check fails).
    pub usage_error: Option<StoreError>,
    /// What could not be read and was left out, for the log.
    pub warnings: Vec<String>,
}

/// The gateway's circuit breakers at `now_ms` (none when it has no
/// routing state yet).
pub fn breakers(kv: &mut impl KeyValue, now_ms: i64) -> Result<Vec<Breaker>, StoreError> {
    let state: RoutingState = match kv
        .get(ROUTING_KEY)
        .map_err(|message| StoreError::KeyValue {
            context: "read routing state",
            message,
        })? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            table: "key-value",
            reason: format!("{ROUTING_KEY}: {e}"),
        })?,
        None => RoutingState::default(),
    };
    Ok(usage::breakers(&state, u64::try_from(now_ms).unwrap_or(0)))
}

/// Reads the inputs of the health score at `now_ms`: the storage checks as
/// measured (`sqlite` shown as `database`), the usage rows of `usage`
/// (from its start, never later than the score's 5 minutes; one org's
/// when it names one: the score is then that org's), the breakers
/// from `kv` and the latest run of each scan. Each read is timed with
/// `clock` (its check's latency).
///
/// SQL is read only when the `sqlite` check passed and `db` is given;
/// otherwise usage counts as unreadable and no scan as run. An unreadable
/// routing state or usage is left out with a warning; the scans read
/// failing is an error.
pub fn read_score_inputs<'a, E: SqlExecutor, K: KeyValue>(
    db: Option<&mut E>,
    kv: Option<&mut K>,
    sqlite: &CheckResult,
    key_value: &CheckResult,
    usage: impl Into<UsageScope<'a>>,
    clock: &mut impl FnMut() -> i64,
    now_ms: i64,
) -> Result<Readings, StoreError> {
    let scope = usage.into();
    let mut warnings = Vec::new();
    let storage = vec![
        CheckResult {
            name: "database".to_owned(),
            ..sqlite.clone()
        },
        key_value.clone(),
    ];
    let start = clock();
    let mut video_probes = Vec::new();
    let read = match kv {
        Some(kv) => {
            video_probes = last_video_probes(kv);
            breakers(kv, now_ms).map_err(|e| e.to_string())
        }
        None => Err("key-value store unavailable".to_owned()),
    };
    let routing_latency_ms = since(clock, start);
    let breakers = read.unwrap_or_else(|e| {
        warnings.push(format!("routing state: {e}"));
        Vec::new()
    });
    let mut readings = Readings {
        inputs: ScoreInputs {
            storage,
            recent: Agg::default(),
            usage_latency_ms: 0,
            usage_failed: true,
            breakers,
            routing_latency_ms,
            scans: Vec::new(),
            scans_latency_ms: 0,
            video: Vec::new(),
            video_latency_ms: 0,
            now_ms,
        },
        rows: Vec::new(),
        usage_error: None,
        warnings,
    };
    let Some(db) = db.filter(|_| sqlite.ok) else {
        return Ok(readings);
    };
    let from = scope
        .from_s
        .min(window_start(now_ms.div_euclid(1000), usage::RECENT_SECS));
    let start = clock();
    match usage_since_in(db, from, scope.org) {
        Ok(rows) => {
            readings.inputs.recent = usage::recent_usage(&rows, now_ms);
            readings.inputs.usage_failed = false;
            readings.rows = rows;
        }
        Err(e) => {
            readings.warnings.push(format!("usage: {e}"));
            readings.usage_error = Some(e);
        }
    }
    readings.inputs.usage_latency_ms = since(clock, start);
    let start = clock();
    readings.inputs.scans = latest_scans(db)?;
    readings.inputs.scans_latency_ms = since(clock, start);
    let start = clock();
    let since_ms = u64::try_from(now_ms)
        .unwrap_or(0)
        .saturating_sub(video::health::WINDOW_MS);
    match video::store::recent_jobs(db, since_ms) {
        Ok(rows) => {
            readings.inputs.video =
                video::health::with_probes(video::health::fold(&rows), &video_probes);
        }
        // Video health is one check among several: left out, and logged.
        Err(e) => readings.warnings.push(format!("video jobs: {e}")),
    }
    readings.inputs.video_latency_ms = since(clock, start);
    Ok(readings)
}

/// The video platforms' last probes (`probes` scan), or none when unreadable.
fn last_video_probes(kv: &mut impl KeyValue) -> Vec<super::scans::ProbeResult> {
    kv.get(video::discovery::VIDEO_PROBES_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Everything `/api/health` shows at `now_ms` (see
/// [`usage::assemble_health`]): the score's inputs with 24 hours of usage
/// (for uptime), the firing alerts and the emergency mode. Returns the body
/// and the warnings to log. With `org`, the telemetry part of the score,
/// the `generation` check, the figures and uptime are that org's requests'
/// (the same one score over the org's aggregates); checks of the shared
/// storage, providers and scans, alerts and emergency mode stay the
/// deployment's, as they decide the org's requests too.
pub fn read_api_health<E: SqlExecutor, K: KeyValue>(
    mut db: Option<&mut E>,
    kv: Option<&mut K>,
    sqlite: &CheckResult,
    key_value: &CheckResult,
    clock: &mut impl FnMut() -> i64,
    now_ms: i64,
    org: Option<&str>,
) -> Result<(HealthBody, Vec<String>), StoreError> {
    let day = UsageScope {
        from_s: window_start(now_ms.div_euclid(1000), 86_400),
        org,
    };
    let readings = read_score_inputs(db.as_deref_mut(), kv, sqlite, key_value, day, clock, now_ms)?;
    let mut inputs = HealthInputs {
        score: readings.inputs,
        rows: readings.rows,
        alerts: Vec::new(),
        emergency: Default::default(),
        override_by: None,
        anomalies: Vec::new(),
    };
    if let Some(db) = db.filter(|_| sqlite.ok) {
        inputs.anomalies = crate::optimize::anomaly_alerts::active(db, now_ms)?;
        inputs.alerts = store::active_alerts(db)?
            .iter()
            .map(|a| ActiveAlert::from(&a.state))
            .collect();
        let (state, by) = store::emergency_state(db)?;
        inputs.emergency = state;
        inputs.override_by = by;
    }
    let mut body = usage::assemble_health(inputs);
    body.org = org.map(str::to_owned);
    Ok((body, readings.warnings))
}

/// Everything `/metrics` shows at `now_ms`, with the score, the breakers
/// and the emergency mode of `health` (read by [`read_api_health`]).
/// For one org, see [`read_org_metrics`].
pub fn read_metrics(
    db: &mut impl SqlExecutor,
    health: &HealthBody,
    now_ms: i64,
) -> Result<MetricsInput, StoreError> {
    let alerts = store::list_alerts(db, &AlertQuery::default())?
        .into_iter()
        .map(|a| {
            let status = serde_json::to_value(a.state.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (
                a.state.fingerprint,
                a.state.name,
                a.state.severity.as_str().to_owned(),
                a.state.source.as_str().to_owned(),
                status,
            )
        })
        .collect();
    let scans = latest_scans(db)?
        .into_iter()
        .map(|(n, t)| (n, now_ms.saturating_sub(t).max(0) as f64 / 1000.0))
        .collect();
    Ok(MetricsInput {
        flag_evaluations: flag_counts::totals(db)?,
        usage: usage_totals_in(db, None)?,
        routes: route_counts(db)?,
        quality: quality_histograms(db)?,
        breakers: health.providers.clone(),
        alerts,
        scans,
        health_score: health.health.system_health.score,
        emergency: health.emergency_mode.active,
        video: health.video_platforms.clone(),
        org: None,
    })
}

/// What `/metrics?org=ID` shows: the org's usage totals from the
/// aggregates, and the org's health score (`health` read with the org).
/// Deployment-wide families (breakers, alerts, scans, flag evaluations,
/// routes and quality, which only `requests` rows hold) are left out: they
/// are not the org's, and an org's reader sees its own figures only.
pub fn read_org_metrics(
    db: &mut impl SqlExecutor,
    health: &HealthBody,
    org: &str,
) -> Result<MetricsInput, StoreError> {
    Ok(MetricsInput {
        flag_evaluations: Vec::new(),
        usage: usage_totals_in(db, Some(org))?,
        routes: Vec::new(),
        quality: Vec::new(),
        breakers: Vec::new(),
        alerts: Vec::new(),
        scans: Vec::new(),
        health_score: health.health.system_health.score,
        emergency: health.emergency_mode.active,
        video: Vec::new(),
        org: Some(org.to_owned()),
    })
}

/// The `/api/metrics` overview of `window` at `now_s` (and the window
/// before it, for the trend). The 7 d and 30 d windows read whole hours
/// from `usage_hour` and only the partial hours at the edges of each
/// series point (and the minutes not folded yet) from `usage_minute`
/// ([`usage::plan_read`]); the figures are the ones
/// [`read_overview_minutes`] computes from minute rows alone.
pub fn read_overview(
    db: &mut impl SqlExecutor,
    window: Window,
    now_s: i64,
) -> Result<Overview, StoreError> {
    read_overview_in(db, window, now_s, None)
}

/// [`read_overview`] of one org's keys (`Some`) or of the whole
/// deployment (`None`), from the same aggregates (migration 17).
pub fn read_overview_in(
    db: &mut impl SqlExecutor,
    window: Window,
    now_s: i64,
    org: Option<&str>,
) -> Result<Overview, StoreError> {
    if matches!(window, Window::Hour | Window::Day) {
        // Their points are a minute or an hour that starts mid-hour: no
        // whole hour to read, so minute rows are all there is.
        let from = window.start(now_s) - window.seconds();
        return Ok(usage::overview(
            &usage_since_in(db, from, org)?,
            window,
            now_s,
        ));
    }
    let boundaries = usage::overview_boundaries(window, now_s);
    let plan = usage::plan_read(&boundaries, folded_until(db)?);
    let hours = Interval {
        table: "usage_hour",
        time: "hour",
        org,
    };
    let mut rows = usage_by_interval(db, hours, &plan.hours, &boundaries)?;
    let minutes = Interval {
        table: "usage_minute",
        time: "minute",
        org,
    };
    rows.extend(usage_by_interval(db, minutes, &plan.minutes, &boundaries)?);
    Ok(usage::overview(&rows, window, now_s))
}

/// The aggregate table [`usage_by_interval`] reads, its time column and
/// the org it keeps to (fixed names only).
#[derive(Clone, Copy)]
struct Interval<'a> {
    table: &'static str,
    time: &'static str,
    org: Option<&'a str>,
}

/// The overview of `window` at `now_s` from `usage_minute` rows alone (what
/// [`read_overview`] does for the short windows, and the reference it is
/// tested and benchmarked against for the long ones).
pub fn read_overview_minutes(
    db: &mut impl SqlExecutor,
    window: Window,
    now_s: i64,
) -> Result<Overview, StoreError> {
    let from = window.start(now_s) - window.seconds();
    Ok(usage::overview(
        &usage_since_in(db, from, None)?,
        window,
        now_s,
    ))
}

/// The fold's watermark (migration 9): every minute before it is in
/// `usage_hour`, none after.
pub fn folded_until(db: &mut impl SqlExecutor) -> Result<i64, StoreError> {
    let rows = sql(
        db,
        "read the usage fold watermark",
        "SELECT folded_until FROM usage_rollup WHERE id = 1",
        &[],
    )?;
    match rows.first() {
        Some(values) => Ok(Row::new("usage_rollup", values).int(0, "folded_until")?),
        None => Ok(0),
    }
}

/// The rows of `table` (`usage_minute` or `usage_hour`, whose time column
/// is `time`) in the half-open `ranges`, summed per series and interval
/// between consecutive `boundaries` (one statement; none without ranges).
/// Each row's `minute` is its interval's start. [`usage::overview`] places
/// a row by its start, and every row of a range lies inside one interval
/// ([`usage::plan_read`]), so the sums read exactly like their rows while
/// SQLite, not the caller, adds up the thousands of rows of a long window.
fn usage_by_interval(
    db: &mut impl SqlExecutor,
    of: Interval<'_>,
    ranges: &[(i64, i64)],
    boundaries: &[i64],
) -> Result<Vec<UsageRow>, StoreError> {
    let Interval { table, time, org } = of;
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    // Only `?` placeholders and fixed names are spliced in.
    let mut interval = String::from("CASE");
    let mut params = Vec::with_capacity(2 * (boundaries.len() + ranges.len()));
    for pair in boundaries.windows(2) {
        interval.push_str(&format!(" WHEN {time} < ? THEN ?"));
        params.extend([SqlValue::Integer(pair[1]), SqlValue::Integer(pair[0])]);
    }
    interval.push_str(&format!(" ELSE {time} END"));
    let conditions: Vec<String> = ranges
        .iter()
        .map(|_| format!("({time} >= ? AND {time} < ?)"))
        .collect();
    params.extend(
        ranges
            .iter()
            .flat_map(|(a, b)| [SqlValue::Integer(*a), SqlValue::Integer(*b)]),
    );
    let org = org_condition(org, &mut params);
    sql(
        db,
        "read usage",
        &format!(
            "SELECT {} FROM {table} WHERE ({}){org} \
             GROUP BY interval_start, tier, provider, model, outcome, variant",
            usage_sum_columns(&format!("{interval} AS interval_start"), "variant"),
            conditions.join(" OR ")
        ),
        &params,
    )?
    .iter()
    .map(|values| usage_row(table, values))
    .collect()
}

// ---------------------------------------------------------------------------
// Telemetry reads

/// Runs one statement, naming `context` in the error.
pub(super) fn sql(
    db: &mut impl SqlExecutor,
    context: &'static str,
    q: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    db.execute(q, params)
        .map_err(|message| StoreError::Sql { context, message })
}

/// The `usage_minute` (or `usage_hour`) columns [`usage_row`] reads, summed
/// over a group, with `time` and `variant` as the first and sixth (a fixed
/// expression or column name each). A row counts at most `requests`
/// fallback requests (see [`usage`]'s definitions), capped per stored row.
fn usage_sum_columns(time: &str, variant: &str) -> String {
    let buckets: Vec<String> = (0..USAGE_BUCKETS)
        .map(|i| format!("SUM({})", latency_column(i)))
        .collect();
    format!(
        "{time}, tier, provider, model, outcome, {variant}, SUM(requests), SUM(errors), \
         SUM(MIN(fallbacks, requests)), SUM(cache_hits), SUM(latency_sum_ms), SUM(quality_sum), \
         SUM(quality_n), SUM(cost_micros), SUM(cost_unknown), {}, SUM(baseline_micros)",
        buckets.join(", ")
    )
}

/// A row selected with [`usage_sum_columns`]
/// (columns named as in the table).
fn usage_row(table: &'static str, values: &[SqlValue]) -> Result<UsageRow, StoreError> {
    let r = Row::new(table, values);
    let mut buckets = LatencyCounts::default();
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = r.uint(15 + i, latency_column(i))?;
    }
    let requests = r.uint(6, "requests")?;
    Ok(UsageRow {
        minute: r.int(0, "minute")?,
        tier: r.text(1, "tier")?.to_owned(),
        provider: r.text(2, "provider")?.to_owned(),
        model: r.text(3, "model")?.to_owned(),
        outcome: r.text(4, "outcome")?.to_owned(),
        variant: r.text(5, "variant")?.to_owned(),
        agg: Agg {
            requests,
            errors: r.uint(7, "errors")?,
            fallbacks: r.uint(8, "fallbacks")?.min(requests),
            cache_hits: r.uint(9, "cache_hits")?,
            latency_sum_ms: r.uint(10, "latency_sum_ms")?,
            quality_sum: r.real(11, "quality_sum")?,
            quality_n: r.uint(12, "quality_n")?,
            cost_micros: r.uint(13, "cost_micros")?,
            cost_unknown: r.uint(14, "cost_unknown")?,
            baseline_micros: r.uint(15 + USAGE_BUCKETS, "baseline_micros")?,
            buckets,
        },
    })
}

/// The `usage_minute` rows with `minute >= from_s` (Unix seconds), one
/// per minute and series (every org's rows summed).
pub fn usage_since(db: &mut impl SqlExecutor, from_s: i64) -> Result<Vec<UsageRow>, StoreError> {
    usage_since_in(db, from_s, None)
}

/// [`usage_since`] of one org's keys (`Some`) or of all (`None`).
pub fn usage_since_in(
    db: &mut impl SqlExecutor,
    from_s: i64,
    org: Option<&str>,
) -> Result<Vec<UsageRow>, StoreError> {
    let mut params = vec![SqlValue::Integer(from_s)];
    let org = org_condition(org, &mut params);
    sql(
        db,
        "read usage",
        &format!(
            "SELECT {} FROM usage_minute WHERE minute >= ?{org} \
             GROUP BY minute, tier, provider, model, outcome, variant",
            usage_sum_columns("minute", "variant")
        ),
        &params,
    )?
    .iter()
    .map(|values| usage_row("usage_minute", values))
    .collect()
}

/// The `usage_minute` rows in any of `ranges` (`[from, to)`, Unix
/// seconds), one per minute and series (every org's rows summed): what the
/// anomaly scan reads (`crate::optimize::anomaly_alerts::ranges`).
pub fn usage_in_ranges(
    db: &mut impl SqlExecutor,
    ranges: &[(i64, i64)],
) -> Result<Vec<UsageRow>, StoreError> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::with_capacity(ranges.len() * 2);
    let mut conditions = Vec::with_capacity(ranges.len());
    for &(from, to) in ranges {
        conditions.push("(minute >= ? AND minute < ?)");
        params.push(SqlValue::Integer(from));
        params.push(SqlValue::Integer(to));
    }
    sql(
        db,
        "read usage ranges",
        &format!(
            "SELECT {} FROM usage_minute WHERE {} \
             GROUP BY minute, tier, provider, model, outcome, variant",
            usage_sum_columns("minute", "variant"),
            conditions.join(" OR ")
        ),
        &params,
    )?
    .iter()
    .map(|values| usage_row("usage_minute", values))
    .collect()
}

/// Usage totals per tier/provider/model/outcome over every kept minute,
/// for `/metrics` (minute 0, variant `-`).
pub fn usage_totals(db: &mut impl SqlExecutor) -> Result<Vec<UsageRow>, StoreError> {
    usage_totals_in(db, None)
}

/// [`usage_totals`] of one org's keys (`Some`) or of all (`None`).
pub fn usage_totals_in(
    db: &mut impl SqlExecutor,
    org: Option<&str>,
) -> Result<Vec<UsageRow>, StoreError> {
    let mut params = Vec::new();
    let org = org_condition(org, &mut params);
    sql(
        db,
        "read usage totals",
        &format!(
            "SELECT {} FROM usage_minute WHERE 1 = 1{org} GROUP BY tier, provider, model, outcome",
            // Every kept minute as one group: minute read as 0, variant as `-`.
            usage_sum_columns("0", "'-'")
        ),
        &params,
    )?
    .iter()
    .map(|values| usage_row("usage_minute", values))
    .collect()
}

const ROUTE_COLUMNS: &str = "route, COUNT(*)";

/// Requests per route over the kept `requests` rows, by route.
pub fn route_counts(db: &mut impl SqlExecutor) -> Result<Vec<(String, u64)>, StoreError> {
    sql(
        db,
        "count requests per route",
        &format!("SELECT {ROUTE_COLUMNS} FROM requests GROUP BY route ORDER BY route"),
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("requests", values);
        Ok((r.text(0, "route")?.to_owned(), r.uint(1, "COUNT(*)")?))
    })
    .collect()
}

// `COUNT(… OR NULL)` counts the rows where the comparison holds on both
// databases (PostgreSQL has no `SUM` of a boolean).
const QUALITY_COLUMNS: &str = "provider, model, \
COUNT(quality <= 1 OR NULL), COUNT(quality <= 2 OR NULL), COUNT(quality <= 3 OR NULL), \
COUNT(quality <= 4 OR NULL), COUNT(quality <= 5 OR NULL), COUNT(quality <= 6 OR NULL), \
COUNT(quality <= 7 OR NULL), COUNT(quality <= 8 OR NULL), COUNT(quality <= 9 OR NULL), \
COUNT(quality <= 10 OR NULL), SUM(quality), COUNT(quality)";

/// The cumulative columns of [`QUALITY_COLUMNS`], as named in errors.
const AT_MOST: [&str; 10] = [
    "quality <= 1",
    "quality <= 2",
    "quality <= 3",
    "quality <= 4",
    "quality <= 5",
    "quality <= 6",
    "quality <= 7",
    "quality <= 8",
    "quality <= 9",
    "quality <= 10",
];

/// A quality histogram: provider, model, cumulative counts for quality
/// `<= 1, 2, …, 10`, sum and count.
pub type QualityHistogram = (String, String, [u64; 10], f64, u64);

/// The quality histogram of each provider/model over the scored `requests`.
pub fn quality_histograms(db: &mut impl SqlExecutor) -> Result<Vec<QualityHistogram>, StoreError> {
    sql(
        db,
        "read quality histograms",
        &format!(
            "SELECT {QUALITY_COLUMNS} FROM requests WHERE quality IS NOT NULL \
             GROUP BY provider, model"
        ),
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("requests", values);
        let mut cumulative = [0u64; 10];
        for (i, (c, column)) in cumulative.iter_mut().zip(AT_MOST).enumerate() {
            *c = r.uint(2 + i, column)?;
        }
        Ok((
            r.text(0, "provider")?.to_owned(),
            r.text(1, "model")?.to_owned(),
            cumulative,
            r.real(12, "SUM(quality)")?,
            r.uint(13, "COUNT(quality)")?,
        ))
    })
    .collect()
}

const LATEST_SCAN_COLUMNS: &str = "name, MAX(started_at)";

/// The latest start of each scan (Unix ms), by name.
pub fn latest_scans(db: &mut impl SqlExecutor) -> Result<Vec<(String, i64)>, StoreError> {
    sql(
        db,
        "read latest scans",
        &format!("SELECT {LATEST_SCAN_COLUMNS} FROM scan_runs GROUP BY name ORDER BY name"),
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("scan_runs", values);
        Ok((r.text(0, "name")?.to_owned(), r.int(1, "MAX(started_at)")?))
    })
    .collect()
}

/// The versions recorded in `_dol_migrations`.
pub fn applied_migrations(db: &mut impl SqlExecutor) -> Result<Vec<i64>, StoreError> {
    sql(
        db,
        "read applied migrations",
        "SELECT version FROM _dol_migrations",
        &[],
    )?
    .iter()
    .map(|values| Ok(Row::new("_dol_migrations", values).int(0, "version")?))
    .collect()
}

#[cfg(test)]
#[path = "system_tests.rs"]
mod tests;
