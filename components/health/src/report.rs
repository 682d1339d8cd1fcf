//! What `/api/health`, `/api/metrics` and `/metrics` show: read by
//! `dol_core::observe::system` over this request's storage.

use dol_core::observe::system;
use dol_core::observe::usage::{HealthBody, MetricsInput, Overview, Window};

use crate::checks::Storage;
use dol_core::orgs::store as orgs;
use dol_spin_platform::{self as platform, SpinSql, now_ms, open_db};

/// Everything `/api/health` shows (the one health score among it).
pub fn api_health() -> anyhow::Result<HealthBody> {
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

/// The `/api/metrics?org=…` overview: for the admin (token or console
/// session), or an API key of that org with the `read-metrics` role
/// (`dol_core::orgs::store::authorize_org_reader` decides).
pub fn org_overview(
    req: &spin_sdk::http::Request,
    org: &str,
    window: Window,
) -> Result<Overview, spin_sdk::http::Response> {
    let fail = |e: &dol_core::error::ApiError| platform::fail("health", e);
    let db = open_db().map_err(|e| fail(&platform::internal(e)))?;
    let sql = &mut SpinSql(&db);
    let bearer = platform::header(req, "authorization");
    let api_key = platform::header(req, "x-api-key");
    let presents_key = api_key.is_some()
        || dol_core::auth::bearer(bearer).is_some_and(dol_core::gateway::keys::is_well_formed);
    if presents_key {
        orgs::authorize_org_reader(sql, bearer, api_key, org).map_err(|e| fail(&e))?;
    } else {
        platform::admin_actor("health", platform::admin_request(req)).map_err(|e| fail(&e))?;
    }
    if orgs::get_org(sql, org)
        .map_err(|e| fail(&e.into()))?
        .is_none()
    {
        let err = dol_core::error::ApiError::new(
            dol_core::error::Code::NotFound,
            format!("no org {org}"),
        )
        .with_field("org");
        return Err(fail(&err));
    }
    orgs::org_overview(sql, org, window, now_ms() / 1000).map_err(|e| fail(&e.into()))
}
