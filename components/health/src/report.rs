//! Reads what `/api/health`, `/api/metrics` and `/metrics` show, and hands
//! it to `dol_core::observe::usage`.

use std::time::Instant;

use anyhow::Context as _;
use dol_core::gateway::engine::RoutingState;
use dol_core::health::CheckResult;
use dol_core::observe::flag_counts;
use dol_core::observe::score::{ActiveAlert, EmergencyState, Override};
use dol_core::observe::store::{self, AlertQuery, EMERGENCY_AUTO_KEY, EmergencyOverride};
use dol_core::observe::usage::{
    self, Breaker, HealthBody, HealthInputs, MetricsInput, Overview, UsageRow, Window,
};
use dol_core::storage::{SqlExecutor, SqlValue};
use spin_sdk::key_value::Store;

use crate::checks;
use dol_spin_platform::{self as platform, SpinSql, now_ms};

/// The key-value key the gateway keeps its routing state under.
const ROUTING_KEY: &str = "gw:routing";

fn elapsed(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn usage_since(db: &mut impl SqlExecutor, from_s: i64) -> anyhow::Result<Vec<UsageRow>> {
    let rows = platform::exec(db, usage::USAGE_SINCE_SQL, &[SqlValue::Integer(from_s)])?;
    Ok(rows.iter().filter_map(|r| UsageRow::from_row(r)).collect())
}

fn breakers(now: i64) -> anyhow::Result<Vec<Breaker>> {
    let store = Store::open_default().context("open key-value")?;
    let state: RoutingState = store
        .get_json(ROUTING_KEY)
        .context("read routing state")?
        .unwrap_or_default();
    Ok(usage::breakers(&state, u64::try_from(now).unwrap_or(0)))
}

fn scans(db: &mut impl SqlExecutor) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = platform::exec(db, usage::SCAN_LATEST_SQL, &[])?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name = r.first()?.as_str()?.to_owned();
            Some((name, r.get(1)?.as_i64()?))
        })
        .collect())
}

fn emergency(db: &mut impl SqlExecutor) -> anyhow::Result<(EmergencyState, Option<String>)> {
    let auto = store::get_control(db, EMERGENCY_AUTO_KEY)?;
    let mut state: EmergencyState = auto
        .as_ref()
        .and_then(|c| serde_json::from_value(c.value.clone()).ok())
        .unwrap_or_default();
    if let Some(active) = auto
        .as_ref()
        .and_then(|c| c.value.get("active"))
        .and_then(serde_json::Value::as_bool)
    {
        state.active = active;
    }
    match store::emergency_override(db)? {
        Some((mode, c)) => {
            state.override_mode = match mode {
                EmergencyOverride::On => Override::ForceOn,
                EmergencyOverride::Off => Override::ForceOff,
            };
            state.active = mode == EmergencyOverride::On;
            Ok((state, Some(c.updated_by)))
        }
        None => {
            state.override_mode = Override::Auto;
            Ok((state, None))
        }
    }
}

/// Everything `/api/health` shows.
pub fn api_health() -> anyhow::Result<HealthBody> {
    let now = now_ms();
    let (kv, _) = checks::key_value();
    let (sql, _) = checks::sqlite();
    let storage = vec![
        CheckResult {
            name: "database".to_owned(),
            ..sql.clone()
        },
        kv.clone(),
    ];
    let start = Instant::now();
    let routing = breakers(now);
    let routing_latency_ms = elapsed(start);
    let breakers = routing.unwrap_or_else(|err| {
        eprintln!("health: routing state: {err:#}");
        Vec::new()
    });
    let mut inputs = HealthInputs {
        storage,
        rows: Vec::new(),
        usage_latency_ms: 0,
        usage_failed: true,
        breakers,
        routing_latency_ms,
        scans: Vec::new(),
        scans_latency_ms: 0,
        alerts: Vec::new(),
        emergency: EmergencyState::default(),
        override_by: None,
        now_ms: now,
    };
    if sql.ok {
        let db = platform::open_db()?;
        let mut db = SpinSql(&db);
        let start = Instant::now();
        match usage_since(&mut db, usage::window_start(now / 1000, 86_400)) {
            Ok(rows) => {
                inputs.rows = rows;
                inputs.usage_failed = false;
            }
            Err(err) => eprintln!("health: usage: {err:#}"),
        }
        inputs.usage_latency_ms = elapsed(start);
        let start = Instant::now();
        inputs.scans = scans(&mut db)?;
        inputs.scans_latency_ms = elapsed(start);
        inputs.alerts = store::active_alerts(&mut db)?
            .iter()
            .map(|a| ActiveAlert::from(&a.state))
            .collect();
        let (state, by) = emergency(&mut db)?;
        inputs.emergency = state;
        inputs.override_by = by;
    }
    Ok(usage::assemble_health(inputs))
}

/// The `/api/metrics` overview of `window` (and the window before it).
pub fn overview(window: Window) -> anyhow::Result<Overview> {
    let now_s = now_ms() / 1000;
    let db = platform::open_db()?;
    let from = usage::window_start(now_s, window.seconds()) - window.seconds();
    let rows = usage_since(&mut SpinSql(&db), from)?;
    Ok(usage::overview(&rows, window, now_s))
}

/// Everything `/metrics` shows.
pub fn metrics_input() -> anyhow::Result<MetricsInput> {
    let health = api_health()?;
    let now = now_ms();
    let db = platform::open_db()?;
    let mut db = SpinSql(&db);
    let usage = platform::exec(&mut db, usage::USAGE_TOTALS_SQL, &[])?
        .iter()
        .filter_map(|r| UsageRow::from_row(r))
        .collect();
    let routes = platform::exec(&mut db, usage::ROUTE_COUNTS_SQL, &[])?
        .iter()
        .filter_map(|r| {
            let route = r.first()?.as_str()?.to_owned();
            Some((route, u64::try_from(r.get(1)?.as_i64()?).unwrap_or(0)))
        })
        .collect();
    let quality = platform::exec(&mut db, usage::QUALITY_HISTOGRAM_SQL, &[])?
        .iter()
        .filter_map(|r| {
            let provider = r.first()?.as_str()?.to_owned();
            let model = r.get(1)?.as_str()?.to_owned();
            let mut cum = [0u64; 10];
            for (i, c) in cum.iter_mut().enumerate() {
                *c = u64::try_from(r.get(2 + i)?.as_i64()?).unwrap_or(0);
            }
            let sum = match r.get(12)? {
                SqlValue::Real(x) => *x,
                SqlValue::Integer(x) => *x as f64,
                _ => 0.0,
            };
            let count = u64::try_from(r.get(13)?.as_i64()?).unwrap_or(0);
            Some((provider, model, cum, sum, count))
        })
        .collect();
    let alerts = store::list_alerts(&mut db, &AlertQuery::default())?
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
    let scans = scans(&mut db)?
        .into_iter()
        .map(|(n, t)| (n, now.saturating_sub(t).max(0) as f64 / 1000.0))
        .collect();
    let flag_evaluations =
        flag_counts::totals_from_rows(&platform::exec(&mut db, flag_counts::TOTALS_SQL, &[])?);
    Ok(MetricsInput {
        flag_evaluations,
        usage,
        routes,
        quality,
        breakers: health.providers,
        alerts,
        scans,
        health_score: health.health.system_health.score,
        emergency: health.emergency_mode.active,
    })
}
