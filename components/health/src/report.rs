//! What `/api/health`, `/api/metrics` and `/metrics` show: read by
//! `dol_core::observe::system` over this request's storage.

use dol_core::observe::system;
use dol_core::observe::usage::{HealthBody, MetricsInput, Overview, Window};

use crate::checks::Storage;
use dol_spin_platform::{SpinSql, now_ms, open_db};

/// Everything `/api/health` shows (the one health score among it).
pub fn api_health() -> anyhow::Result<HealthBody> {
    let now = now_ms();
    let mut storage = Storage::check();
    let mut sql = storage.db.as_ref().ok().map(SpinSql);
    let (body, warnings) = system::read_api_health(
        sql.as_mut(),
        storage.kv.as_mut().ok(),
        &storage.sqlite.result,
        &storage.key_value.result,
        &mut now_ms,
        now,
    )?;
    for warning in warnings {
        eprintln!("health: {warning}");
    }
    Ok(body)
}

/// The `/api/metrics` overview of `window` (and the window before it).
pub fn overview(window: Window) -> anyhow::Result<Overview> {
    let db = open_db()?;
    Ok(system::read_overview(
        &mut SpinSql(&db),
        window,
        now_ms() / 1000,
    )?)
}

/// Everything `/metrics` shows; its health gauge is `/api/health`'s score.
pub fn metrics_input() -> anyhow::Result<MetricsInput> {
    let health = api_health()?;
    let db = open_db()?;
    Ok(system::read_metrics(&mut SpinSql(&db), &health, now_ms())?)
}
