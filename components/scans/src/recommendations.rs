//! Recommendations (`dol_core::optimize::recommend_store`): the daily
//! `recommendations` scan, and the admin routes
//! `GET /admin/recommendations[?status=active|all]` (recomputed on demand),
//! `POST /admin/recommendations/{id}/apply` and `.../dismiss` (admin token
//! or an admin console session; a viewer session only reads).

use anyhow::Context as _;
use dol_core::error::{ApiError, Code};
use dol_core::gateway::pipeline::Settings;
use dol_core::optimize::auto_entry;
use dol_core::optimize::recommend_store::{self as store, Config, ListFilter};
use dol_spin_platform::{self as platform, Db, SpinKv, SpinSql};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

const COMPONENT: &str = "scans";

/// The recommender's settings and the tier flag, from the gateway's variables.
fn settings() -> Result<(Config, String), ApiError> {
    let s = Settings::from_variables(platform::var)?;
    let config = Config {
        quality_threshold: s.quality.threshold,
        cache_ttl_secs: s.cache_ttl_secs,
    };
    let flag = if s.tier_flag.is_empty() {
        "generation_pipeline".to_owned()
    } else {
        s.tier_flag
    };
    Ok((config, flag))
}

/// The scan at `now_ms`: stores the findings, queues the new ones and
/// delivers them at once.
pub fn scan(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let (config, _) = settings().map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let summary = store::scan(&mut SpinSql(db), now_ms, &config).context("recommendations")?;
    let delivery = if summary.new.is_empty() {
        Value::Null
    } else {
        crate::deliver::due(db, now_ms)?
    };
    Ok(json!({ "computed": summary.computed, "new": summary.new, "delivery": delivery }))
}

/// The auto entry tier's learned table and whether the tier flag serves
/// `auto` (`dol_core::optimize::auto_entry::view`); a storage failure shows
/// as its `error`, never fails the list.
fn selection(sql: &mut SpinSql<'_>, config: &Config, flag: &str) -> Value {
    let flags = dol_core::flags::store::select_latest(sql);
    let document = flags
        .as_ref()
        .ok()
        .and_then(|f| f.as_ref())
        .map(|(_, s)| &s.document);
    match SpinKv::open_default() {
        Ok(mut kv) => auto_entry::view(&mut kv, config.quality_threshold, flag, document),
        Err(e) => json!({ "flag": flag, "error": format!("{e:#}") }),
    }
}

/// Routes `/admin/recommendations...`.
pub fn handle(req: &Request) -> Response {
    match route(req) {
        Ok(body) => platform::json(200, &body),
        Err(err) => platform::fail(COMPONENT, &err),
    }
}

fn route(req: &Request) -> Result<Value, ApiError> {
    let path = req.path().trim_end_matches('/');
    let rest = path
        .strip_prefix("/admin/recommendations")
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such route"))?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (id, action) = match parts.as_slice() {
        [] => (None, None),
        [id, action @ ("apply" | "dismiss")] => (Some(*id), Some(*action)),
        _ => return Err(ApiError::new(Code::NotFound, "no such route")),
    };
    let actor = platform::admin_actor(COMPONENT, platform::admin_request(req))?;
    let (config, flag) = settings()?;
    let db = platform::open_db().map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let sql = &mut SpinSql(&db);
    let now = platform::now_ms();
    match (id, action) {
        (None, _) => {
            if *req.method() != Method::Get {
                return Err(ApiError::method_not_allowed("GET"));
            }
            let status = platform::query_param(req.query(), "status")?;
            let filter = ListFilter::parse(status.as_deref())?;
            let mut body = store::list(sql, now, &config, filter)?;
            body["selection"] = selection(sql, &config, &flag);
            Ok(body)
        }
        (Some(id), Some(action)) => {
            if *req.method() != Method::Post {
                return Err(ApiError::method_not_allowed("POST"));
            }
            let reason = store::parse_body(req.body())?;
            if action == "dismiss" {
                return store::dismiss(sql, id, reason.as_deref(), &actor, now, &config);
            }
            let mut kv =
                SpinKv::open_default().map_err(|e| ApiError::internal(format!("{e:#}")))?;
            store::apply(sql, &mut kv, id, &flag, &actor, now, &config)
        }
        (Some(_), None) => Err(ApiError::new(Code::NotFound, "no such route")),
    }
}
