//! The storage side of the scans component, over [`SqlExecutor`] and
//! [`KeyValue`]: recording scan runs (their leases are [`super::scan_lease`]), the model catalog as
//! discovery reads and extends it, the daily report and retention, and the
//! `alerts` scan from its inputs to its stored decisions. The component
//! does the network calls (probes, model lists, deliveries) and the
//! key-value listing; the decisions are in [`super::scans`].
//!
//! Times are Unix epoch milliseconds unless a name says otherwise.

use serde::Serialize;

use super::alerts::AlertRule;
use super::scans::{
    self, ALERTS, CatalogModel, ModelDiff, PROBES_KEY, ProbeResult, REPORT, Report, ScanMessage,
    daily_report, diff_models, discovered_entry, discovery_message, enqueue_message,
    parse_retention_days, report_text, retention_cutoff_ms,
};
use super::score::{self, EmergencyReason, SystemHealth};
use super::store::{self, StoreError};
use super::system;
use super::usage;
use crate::gateway::providers::DiscoveredModel;
use crate::gateway::telemetry::latency_column;
use crate::health::{CheckResult, LAST_RUN_KEY, Outcome, ScanRun};
use crate::optimize::{feedback, selection};
use crate::storage::{KeyValue, Row, SqlExecutor, SqlValue, in_transaction};

use system::sql;

fn int(n: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn json_text<T: Serialize>(value: &T) -> Result<SqlValue, StoreError> {
    serde_json::to_string(value)
        .map(SqlValue::Text)
        .map_err(|e| StoreError::Json(e.to_string()))
}

// ---------------------------------------------------------------------------
// Scan runs

const RUN_COLUMNS: &str = "name, started_at, finished_at, duration_ms, outcome, detail";

/// Records `run` in `scan_runs`, then as the last run in key-value
/// ([`LAST_RUN_KEY`], what `GET /health` shows). `kv` is the opened store,
/// or why opening it failed: the run is in the table either way.
pub fn record_run<K: KeyValue>(
    db: &mut impl SqlExecutor,
    kv: Result<&mut K, String>,
    run: &ScanRun,
) -> Result<(), StoreError> {
    sql(
        db,
        "record the scan run",
        &format!("INSERT INTO scan_runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
        &[
            SqlValue::Text(run.scan.clone()),
            SqlValue::Integer(run.started_at),
            SqlValue::Integer(run.finished_at),
            SqlValue::Integer(run.duration_ms),
            SqlValue::Text(run.outcome.as_str().to_owned()),
            SqlValue::Text(run.detail.clone()),
        ],
    )?;
    let kv = kv.map_err(|message| StoreError::KeyValue {
        context: "open the key-value store",
        message,
    })?;
    let bytes = serde_json::to_vec(run).map_err(|e| StoreError::Json(e.to_string()))?;
    kv.set(LAST_RUN_KEY, &bytes)
        .map_err(|message| StoreError::KeyValue {
            context: "write the last-run key",
            message,
        })
}

/// The latest run in `scan_runs` (its `timestamp` is 0: the table does not
/// keep the trigger's time).
pub fn last_run(db: &mut impl SqlExecutor) -> Result<Option<ScanRun>, StoreError> {
    let rows = sql(
        db,
        "read the last scan run",
        &format!("SELECT {RUN_COLUMNS} FROM scan_runs ORDER BY started_at DESC, id DESC LIMIT 1"),
        &[],
    )?;
    rows.first().map(|values| run_from_row(values)).transpose()
}

/// A `scan_runs` row of [`RUN_COLUMNS`] as a [`ScanRun`] (`timestamp` 0).
fn run_from_row(values: &[SqlValue]) -> Result<ScanRun, StoreError> {
    let r = Row::new("scan_runs", values);
    let outcome = match r.text(4, "outcome")? {
        "ok" => Outcome::Ok,
        "error" => Outcome::Error,
        _ => return Err(r.error("outcome", "ok or error").into()),
    };
    Ok(ScanRun {
        scan: r.text(0, "name")?.to_owned(),
        timestamp: 0,
        started_at: r.int(1, "started_at")?,
        finished_at: r.int(2, "finished_at")?,
        duration_ms: r.int(3, "duration_ms")?,
        outcome,
        detail: r.text(5, "detail")?.to_owned(),
    })
}

/// Most runs [`recent_runs`] returns.
pub const MAX_RECENT_RUNS: usize = 100;

/// Runs `GET /admin/scans/{name}` lists without `?limit=`.
pub const DEFAULT_RECENT_RUNS: usize = 20;

/// Parses `?limit=` of `GET /admin/scans/{name}`: 1 to
/// [`MAX_RECENT_RUNS`], [`DEFAULT_RECENT_RUNS`] when absent.
pub fn parse_runs_limit(param: Option<&str>) -> Result<usize, crate::error::ApiError> {
    let Some(text) = param else {
        return Ok(DEFAULT_RECENT_RUNS);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_RECENT_RUNS).contains(n))
        .ok_or_else(|| {
            crate::error::ApiError::invalid(
                "limit",
                format!("limit must be an integer from 1 to {MAX_RECENT_RUNS}"),
            )
        })
}

/// The last `limit` runs of scan `name` (at most [`MAX_RECENT_RUNS`]),
/// newest first: `GET /admin/scans/{name}`. `scan_runs` is bounded by the
/// retention scan, and the read uses its `(name, started_at)` index.
pub fn recent_runs(
    db: &mut impl SqlExecutor,
    name: &str,
    limit: usize,
) -> Result<Vec<ScanRun>, StoreError> {
    let limit = i64::try_from(limit.min(MAX_RECENT_RUNS)).unwrap_or(1);
    sql(
        db,
        "read recent scan runs",
        &format!(
            "SELECT {RUN_COLUMNS} FROM scan_runs WHERE name = ? \
             ORDER BY started_at DESC, id DESC LIMIT ?"
        ),
        &[SqlValue::Text(name.to_owned()), SqlValue::Integer(limit)],
    )?
    .iter()
    .map(|values| run_from_row(values))
    .collect()
}

// ---------------------------------------------------------------------------
// Catalog and discovery

const CATALOG_COLUMNS: &str =
    "provider, model, context_window, capabilities, input_price, output_price, source";

fn price(r: &Row<'_>, i: usize, column: &'static str) -> Result<Option<u64>, StoreError> {
    Ok(r.opt_int(i, column)?.map(|p| p.max(0).unsigned_abs()))
}

/// Every model of the `models` catalog.
pub fn catalog(db: &mut impl SqlExecutor) -> Result<Vec<CatalogModel>, StoreError> {
    sql(
        db,
        "read the catalog",
        &format!("SELECT {CATALOG_COLUMNS} FROM models ORDER BY provider, model"),
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("models", values);
        Ok(CatalogModel {
            provider: r.text(0, "provider")?.to_owned(),
            model: r.text(1, "model")?.to_owned(),
            context_window: u64::try_from(r.int(2, "context_window")?).unwrap_or(0),
            capabilities: r.json(3, "capabilities")?,
            input_price: price(&r, 4, "input_price")?,
            output_price: price(&r, 5, "output_price")?,
            source: r.text(6, "source")?.to_owned(),
        })
    })
    .collect()
}

/// Catalog models with no input or output price (the
/// `models_without_price` metric).
pub fn unpriced_models(db: &mut impl SqlExecutor) -> Result<u64, StoreError> {
    let rows = sql(
        db,
        "count unpriced models",
        "SELECT COUNT(*) FROM models WHERE input_price IS NULL OR output_price IS NULL",
        &[],
    )?;
    match rows.first() {
        Some(values) => Ok(Row::new("models", values).uint(0, "COUNT(*)")?),
        None => Ok(0),
    }
}

/// Records the models `diff` found new ([`discovered_entry`]: tier
/// `basic`, no price, source `discovered`), in one transaction; a model
/// catalogued meanwhile is left as it is.
pub fn record_discovered(
    db: &mut impl SqlExecutor,
    diff: &ModelDiff,
    now_ms: i64,
) -> Result<(), StoreError> {
    if diff.added.is_empty() {
        return Ok(());
    }
    in_transaction(db, |tx| {
        for m in &diff.added {
            let e = discovered_entry(&diff.provider, m);
            sql(
                tx,
                "record a discovered model",
                "INSERT INTO models (provider, model, tier, input_price, output_price, \
                 context_window, capabilities, source, updated_at) \
                 VALUES (?, ?, 'basic', NULL, NULL, ?, ?, ?, ?) \
                 ON CONFLICT (provider, model) DO NOTHING",
                &[
                    SqlValue::Text(e.provider.clone()),
                    SqlValue::Text(e.model.clone()),
                    int(e.context_window),
                    json_text(&e.capabilities)?,
                    SqlValue::Text(e.source.clone()),
                    SqlValue::Integer(now_ms),
                ],
            )?;
        }
        crate::gateway::store::stamp_catalog(tx, now_ms)?;
        Ok(())
    })
}

/// A provider whose model list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveryFailure {
    /// Provider name.
    pub provider: String,
    /// Why (no secrets).
    pub error: String,
}

/// What a discovery run found (the scan's summary).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discovery {
    /// Per provider listed: its difference from the catalog.
    pub providers: Vec<ModelDiff>,
    /// Providers whose list could not be read.
    pub failures: Vec<DiscoveryFailure>,
    /// Outbox id of the message, when one was queued.
    pub queued: Option<i64>,
}

/// One provider's model list as the component fetched it, or why not.
pub type Listing = (String, Result<Vec<DiscoveredModel>, String>);

/// The `discovery` scan at `now_ms` from each enabled provider's model
/// list: diffs each against the catalog, records the new models, and
/// queues a message when a model is new or changed
/// ([`discovery_message`]).
pub fn discover(
    db: &mut impl SqlExecutor,
    listings: &[Listing],
    now_ms: i64,
) -> Result<Discovery, StoreError> {
    let catalog = catalog(db)?;
    let mut providers = Vec::new();
    let mut failures = Vec::new();
    for (provider, listed) in listings {
        match listed {
            Ok(models) => {
                let diff = diff_models(provider, &catalog, models);
                record_discovered(db, &diff, now_ms)?;
                providers.push(diff);
            }
            Err(error) => failures.push(DiscoveryFailure {
                provider: provider.clone(),
                error: error.clone(),
            }),
        }
    }
    finish_discovery(db, providers, failures, now_ms)
}

/// A discovery run's result from its diffs and failures: the message about
/// what is new or changed queued (the chat and the video discovery alike).
pub fn finish_discovery(
    db: &mut impl SqlExecutor,
    providers: Vec<ModelDiff>,
    failures: Vec<DiscoveryFailure>,
    now_ms: i64,
) -> Result<Discovery, StoreError> {
    let queued =
        match discovery_message(&providers, now_ms).map_err(|e| StoreError::Json(e.to_string()))? {
            Some((message, key)) => enqueue_message(db, &message, &key, now_ms)?,
            None => None,
        };
    Ok(Discovery {
        providers,
        failures,
        queued,
    })
}

// ---------------------------------------------------------------------------
// Usage rollups

/// What [`fold_usage`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageFold {
    /// Minutes from here (Unix seconds) …
    pub from: i64,
    /// … up to here (excluded) were folded; `from == until`: nothing new.
    pub until: i64,
    /// `usage_hour` rows written or added to.
    pub hour_rows: usize,
}

/// The `usage_hour` counter columns, in the order `usage_minute`'s are
/// summed by [`fold_usage`].
fn rollup_counters() -> Vec<String> {
    let mut columns: Vec<String> = [
        "requests",
        "errors",
        "fallbacks",
        "cache_hits",
        "latency_sum_ms",
        "quality_sum",
        "quality_n",
        "prompt_tokens",
        "completion_tokens",
        "cost_micros",
        "cost_unknown",
        "baseline_micros",
    ]
    .map(str::to_owned)
    .to_vec();
    columns.extend((0..usage::USAGE_BUCKETS).map(|i| latency_column(i).to_owned()));
    columns
}

/// Folds the `usage_minute` minutes from the watermark up to
/// [`usage::fold_until`] of `now_ms` into `usage_hour` and moves the
/// watermark there, in one transaction (migration 9): each minute is
/// folded exactly once, a failure folds nothing, and a repeated tick finds
/// nothing new. The `alerts` scan calls it every minute.
pub fn fold_usage(db: &mut impl SqlExecutor, now_ms: i64) -> Result<UsageFold, StoreError> {
    let until = usage::fold_until(now_ms.div_euclid(1_000));
    in_transaction(db, |tx| {
        let from = system::folded_until(tx)?;
        if until <= from {
            return Ok(UsageFold {
                from,
                until: from,
                hour_rows: 0,
            });
        }
        let counters = rollup_counters();
        // Fallbacks are capped at requests per minute row, as every reader
        // of usage_minute does, so an hour row reads like its minutes.
        let sums: Vec<String> = counters
            .iter()
            .map(|c| match c.as_str() {
                "fallbacks" => "SUM(MIN(fallbacks, requests))".to_owned(),
                c => format!("SUM({c})"),
            })
            .collect();
        let updates: Vec<String> = counters
            .iter()
            .map(|c| format!("{c} = usage_hour.{c} + excluded.{c}"))
            .collect();
        let hour_rows = sql(
            tx,
            "fold usage minutes into hours",
            &format!(
                "INSERT INTO usage_hour (hour, tier, provider, model, outcome, variant, org_id, {}) \
                 SELECT minute - minute % {hour}, tier, provider, model, outcome, variant, org_id, {} \
                 FROM usage_minute WHERE minute >= ? AND minute < ? \
                 GROUP BY minute - minute % {hour}, tier, provider, model, outcome, variant, org_id \
                 ON CONFLICT (hour, tier, provider, model, outcome, variant, org_id) DO UPDATE SET {} \
                 RETURNING 1",
                counters.join(", "),
                sums.join(", "),
                updates.join(", "),
                hour = usage::HOUR_SECS,
            ),
            &[SqlValue::Integer(from), SqlValue::Integer(until)],
        )?
        .len();
        sql(
            tx,
            "move the usage fold watermark",
            "UPDATE usage_rollup SET folded_until = ?, updated_at = ? WHERE id = 1",
            &[SqlValue::Integer(until), SqlValue::Integer(now_ms)],
        )?;
        Ok(UsageFold {
            from,
            until,
            hour_rows,
        })
    })
}

/// Moves org `org`'s minute and hour aggregates to no org (`org_id` ''),
/// adding them to the no-org rows of the same series and time, then
/// deleting the org's: the deployment's figures are unchanged and no row
/// names the org (a deleted org's telemetry stays, anonymous). Returns the
/// org rows moved. Runs in the caller's transaction.
pub fn anonymize_usage(db: &mut impl SqlExecutor, org: &str) -> Result<usize, StoreError> {
    let counters = rollup_counters();
    let mut moved = 0;
    for (table, time) in [("usage_minute", "minute"), ("usage_hour", "hour")] {
        let updates: Vec<String> = counters
            .iter()
            .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
            .collect();
        let series = format!("{time}, tier, provider, model, outcome, variant");
        sql(
            db,
            "move an org's usage to no org",
            &format!(
                "INSERT INTO {table} ({series}, org_id, {c}) SELECT {series}, '', {c} \
                 FROM {table} WHERE org_id = ? \
                 ON CONFLICT ({series}, org_id) DO UPDATE SET {}",
                updates.join(", "),
                c = counters.join(", "),
            ),
            &[SqlValue::Text(org.to_owned())],
        )?;
        moved += sql(
            db,
            "delete an org's usage",
            &format!("DELETE FROM {table} WHERE org_id = ? RETURNING 1"),
            &[SqlValue::Text(org.to_owned())],
        )?
        .len();
    }
    Ok(moved)
}

// ---------------------------------------------------------------------------
// Report and retention

/// The `report` scan's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRun {
    /// The report.
    pub report: Report,
    /// Outbox id of its message (`None`: queued before for this time).
    pub queued: Option<i64>,
}

/// The `report` scan at `now_ms`: the last 24 hours ([`daily_report`]),
/// queued for the notification channels once per `now`.
pub fn report(db: &mut impl SqlExecutor, now_ms: i64) -> Result<ReportRun, StoreError> {
    let now_secs = now_ms / 1_000;
    let rows = system::usage_since(db, now_secs.saturating_sub(86_400))?;
    let mut report = daily_report(&rows, now_secs);
    let from_ms = now_ms.saturating_sub(86_400_000);
    let pairs = feedback::pairs_since(db, from_ms).map_err(|e| StoreError::Sql {
        context: "read feedback",
        message: e.0,
    })?;
    report.feedback_agreement = feedback::pearson(&pairs, 0.05);
    let served = selection::served_since(db, from_ms).map_err(|message| StoreError::Sql {
        context: "read served requests",
        message,
    })?;
    report.selection_accuracy = selection::observed_accuracy(
        &served,
        crate::gateway::quality::DEFAULT_THRESHOLD,
        selection::SelectionConfig::default().min_samples,
    );
    let message = ScanMessage {
        scan: REPORT.to_owned(),
        title: "DOL daily performance report".to_owned(),
        text: report_text(&report),
        data: serde_json::to_value(&report).map_err(|e| StoreError::Json(e.to_string()))?,
    };
    let queued = enqueue_message(db, &message, &format!("report:{now_secs}"), now_ms)?;
    Ok(ReportRun { report, queued })
}

/// Rows deleted by [`retention`], per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// `requests` rows.
    pub requests: usize,
    /// `usage_minute` rows.
    pub usage_minute: usize,
    /// `usage_hour` rows (kept twice as long, see [`retention`]).
    pub usage_hour: usize,
    /// `scan_runs` rows.
    pub scan_runs: usize,
    /// Delivered `outbox` rows.
    pub outbox: usize,
    /// `rate_windows` rows of windows over for a day (whatever the
    /// retention: a rate window lasts minutes).
    pub rate_windows: usize,
    /// `feedback` rows (they may hold comments), kept as long as requests.
    pub feedback: usize,
}

/// The `retention` scan's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Days kept.
    pub retention_days: u32,
    /// Rows older than this were deleted, ms.
    pub cutoff_ms: i64,
    /// What was deleted.
    pub deleted: Deleted,
}

fn delete_before(
    db: &mut impl SqlExecutor,
    context: &'static str,
    q: &str,
    before: i64,
) -> Result<usize, StoreError> {
    Ok(sql(db, context, q, &[SqlValue::Integer(before)])?.len())
}

/// The `retention` scan at `now_ms`: deletes `requests`, `usage_minute`,
/// `scan_runs` and delivered `outbox` rows older than the days of the
/// `retention_days` variable (`days_variable`, see
/// [`parse_retention_days`]), and `usage_hour` rows older than twice that
/// (so the longest `/api/metrics` window, 30 days, still has the window
/// before it for its trend at the default retention), in one transaction.
/// Undelivered messages are never deleted; `rate_windows` rows of windows
/// over for a day go as well, and `feedback` as old as the requests.
/// Minutes are folded into their hours first ([`fold_usage`], which the
/// `alerts` scan also runs): a minute is deleted only once its hour holds
/// it, even when the alerts scan has not run for longer than the retention.
pub fn retention(
    db: &mut impl SqlExecutor,
    days_variable: &str,
    now_ms: i64,
) -> Result<Retention, StoreError> {
    let days = parse_retention_days(days_variable);
    let cutoff = retention_cutoff_ms(now_ms, days);
    fold_usage(db, now_ms)?;
    let deleted = in_transaction(db, |tx| {
        Ok::<_, StoreError>(Deleted {
            feedback: delete_before(
                tx,
                "delete old feedback",
                "DELETE FROM feedback WHERE ts < ? RETURNING 1",
                cutoff,
            )?,
            requests: delete_before(
                tx,
                "delete old requests",
                "DELETE FROM requests WHERE ts < ? RETURNING 1",
                cutoff,
            )?,
            usage_minute: delete_before(
                tx,
                "delete old usage",
                "DELETE FROM usage_minute WHERE minute < ? RETURNING 1",
                cutoff / 1_000,
            )?,
            usage_hour: delete_before(
                tx,
                "delete old hourly usage",
                "DELETE FROM usage_hour WHERE hour < ? RETURNING 1",
                retention_cutoff_ms(now_ms, days.saturating_mul(2)) / 1_000,
            )?,
            scan_runs: delete_before(
                tx,
                "delete old scan runs",
                "DELETE FROM scan_runs WHERE started_at < ? RETURNING 1",
                cutoff,
            )?,
            outbox: store::purge_delivered(tx, cutoff)?,
            rate_windows: delete_before(
                tx,
                "delete past rate windows",
                "DELETE FROM rate_windows WHERE window_start < ? RETURNING 1",
                now_ms.div_euclid(1_000).saturating_sub(86_400),
            )?,
        })
    })?;
    Ok(Retention {
        retention_days: days,
        cutoff_ms: cutoff,
        deleted,
    })
}

// ---------------------------------------------------------------------------
// The alerts scan

/// The last probe of every enabled provider ([`PROBES_KEY`]); none when
/// no probe ran or the value is unreadable.
pub fn last_probes(kv: &mut impl KeyValue) -> Vec<ProbeResult> {
    kv.get(PROBES_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The emergency decision of an `alerts` scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmergencyDecision {
    /// Whether automatic emergency mode is on.
    pub active: bool,
    /// Why.
    pub reason: EmergencyReason,
}

/// What an `alerts` scan decided.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsRun {
    /// Rules evaluated.
    pub rules: usize,
    /// The health score ([`score::system_score`]), as `/api/health` shows it.
    pub health: SystemHealth,
    /// Automatic emergency mode after this score.
    pub emergency: EmergencyDecision,
    /// Rule alerts firing now.
    pub firing: Vec<String>,
    /// Notifications queued.
    pub queued: usize,
    /// Rules naming a metric nothing computes (a typo), for the log.
    pub unknown_metrics: Vec<String>,
    /// Inputs left out of the score (see [`system::read_score_inputs`]),
    /// for the log.
    pub warnings: Vec<String>,
}

/// The latest runs per scan with `name` counted as run at `now_ms`.
fn with_run(mut scans: Vec<(String, i64)>, name: &str, now_ms: i64) -> Vec<(String, i64)> {
    match scans.iter_mut().find(|(n, _)| n == name) {
        Some((_, at)) => *at = (*at).max(now_ms),
        None => scans.push((name.to_owned(), now_ms)),
    }
    scans
}

/// The `alerts` scan at `now_ms`, given its storage round trips
/// ([`system::key_value_check`] with [`system::SCANS_PROBE_KEY`],
/// [`system::sqlite_check`]):
///
/// 1. reads the health score's inputs with [`system::read_score_inputs`]
///    and the usage of the rules' longest window, counting this scan as
///    run now (it is recorded when it ends, so the score is the one
///    `/api/health` reads right after), and scores them with
///    [`score::system_score`];
/// 2. computes the rule metrics ([`scans::metric_values`], then
///    `models_without_price`, `providers_down` from the last probes,
///    `health_score`, `video_failure_rate` and `video_platforms_unhealthy`);
/// 3. feeds the score to automatic emergency mode
///    ([`store::apply_auto_emergency`]);
/// 4. runs the alert state machine ([`store::evaluate_rule_alerts`]).
///
/// Unreadable usage (or a failed `sqlite` check, which skips the reads)
/// is an error here: rule metrics without usage would resolve alerts
/// wrongly. An unreadable routing state or probe list is left out.
pub fn run_alerts<E: SqlExecutor, K: KeyValue>(
    db: &mut E,
    mut kv: Option<&mut K>,
    rules: &[AlertRule],
    sqlite: &CheckResult,
    key_value: &CheckResult,
    clock: &mut impl FnMut() -> i64,
    now_ms: i64,
) -> Result<AlertsRun, StoreError> {
    let now_secs = now_ms / 1_000;
    let longest = rules.iter().map(|r| r.window_secs).max().unwrap_or(0);
    let from = now_secs.saturating_sub(i64::try_from(longest).unwrap_or(i64::MAX));
    let mut readings = system::read_score_inputs(
        Some(&mut *db),
        kv.as_deref_mut(),
        sqlite,
        key_value,
        from,
        clock,
        now_ms,
    )?;
    // Rule metrics without usage would resolve alerts wrongly: no decision.
    if readings.inputs.usage_failed {
        return Err(readings.usage_error.take().unwrap_or(StoreError::Sql {
            context: "alerts scan",
            message: "the sqlite check failed; nothing decided".to_owned(),
        }));
    }
    readings.inputs.scans = with_run(readings.inputs.scans, ALERTS, now_ms);
    let scored = score::system_score(&readings.inputs);

    let mut values = scans::metric_values(rules, &readings.rows, now_secs);
    // Video models discovery found have no price either.
    let unpriced = unpriced_models(db)? + crate::video::discovery::unpriced_discovered(db)?;
    values.insert("models_without_price", 0, unpriced as f64);
    let probes = kv.map(|kv| last_probes(kv)).unwrap_or_default();
    let down = probes.iter().filter(|p| !p.up).count();
    values.insert("providers_down", 0, down as f64);
    values.insert("health_score", 0, f64::from(scored.health.score));
    let video = &readings.inputs.video;
    let worst = video.iter().map(|p| p.failure_rate()).fold(0.0, f64::max);
    values.insert("video_failure_rate", 0, worst);
    let unhealthy = video.iter().filter(|p| !p.healthy).count();
    values.insert("video_platforms_unhealthy", 0, unhealthy as f64);

    let (emergency, reason) =
        store::apply_auto_emergency(db, scored.health.score, "scans", now_ms)?;
    let evaluation = store::evaluate_rule_alerts(db, rules, &values, now_ms)?;
    Ok(AlertsRun {
        rules: rules.len(),
        health: scored.health,
        emergency: EmergencyDecision {
            active: emergency.active,
            reason,
        },
        firing: evaluation.firing,
        queued: evaluation.queued,
        unknown_metrics: scans::unknown_metrics(rules),
        warnings: readings.warnings,
    })
}

#[cfg(test)]
#[path = "scan_store_tests.rs"]
mod tests;
