//! What `/api/health`, `/api/metrics` and `/metrics` show: read by
//! `dol_core::observe::system` over this request's storage, for the whole
//! deployment or (`?org=ID`) for one org's keys.

use dol_core::observe::system;
use dol_core::observe::usage::{HealthBody, MetricsInput, Overview, Window};

use crate::checks::Storage;
use dol_core::orgs::store as orgs;
use dol_spin_platform::{self as platform, SpinSql, now_ms, open_db};

/// Everything `/api/health` shows (the one health score among it), of
/// `org`'s requests when given.
pub fn api_health(org: Option<&str>) -> anyhow::Result<HealthBody> {
    let now = now_ms();
    let mut storage = Storage::check();
    let mut sql = storage.db.as_ref().ok().map(|db| SpinSql(db));
    let (body, warnings) = system::read_api_health(
        sql.as_mut(),
        storage.kv.as_mut().ok(),
        &storage.sqlite.result,
        &storage.key_value.result,
        &mut now_ms,
        now,
        org,
    )?;
    for warning in warnings {
        eprintln!("health: {warning}");
    }
    Ok(body)
}

/// The `/api/metrics` overview of `window` (and the window before it), of
/// `org`'s keys when given.
pub fn overview(window: Window, org: Option<&str>) -> anyhow::Result<Overview> {
    let db = open_db()?;
    Ok(system::read_overview_in(
        &mut SpinSql(&db),
        window,
        now_ms() / 1000,
        org,
    )?)
}

/// Everything `/metrics` shows; its health gauge is `/api/health`'s score
/// (the org's, with the org's usage only, when `org` is given).
pub fn metrics_input(org: Option<&str>) -> anyhow::Result<MetricsInput> {
    let health = api_health(org)?;
    let db = open_db()?;
    let sql = &mut SpinSql(&db);
    Ok(match org {
        Some(org) => system::read_org_metrics(sql, &health, org)?,
        None => system::read_metrics(sql, &health, now_ms())?,
    })
}

/// Whether this request may read `org`'s figures: the admin (token or
/// console session), or an API key of that org with the `read-metrics`
/// role; `dol_core::orgs::store::authorize_org_view` decides (400, 401,
/// 403, 404).
pub fn authorize_org(
    req: &spin_sdk::http::Request,
    org: &str,
) -> Result<(), spin_sdk::http::Response> {
    let fail = |e: &dol_core::error::ApiError| platform::fail("health", e);
    let db = open_db().map_err(|e| fail(&platform::internal(e)))?;
    orgs::authorize_org_view(
        &mut SpinSql(&db),
        platform::header(req, "authorization"),
        platform::header(req, "x-api-key"),
        org,
        || platform::admin_actor("health", platform::admin_request(req)).map(|_| ()),
    )
    .map_err(|e| fail(&e))
}
