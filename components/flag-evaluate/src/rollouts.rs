//! The rollout admin API (admin token, checked by `admin::handle`). Plans,
//! decisions and storage are `dol_core::rollouts`; this module routes,
//! stores and publishes.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/rollouts` | every rollout (in progress and finished) |
//! | `GET /admin/flags/{key}/rollout` | one rollout, its guards' readings now and its audit trail |
//! | `PUT /admin/flags/{key}/rollout` | start a rollout (body: the plan) |
//! | `DELETE /admin/flags/{key}/rollout` | cancel: the flag's targeting is restored |
//! | `POST /admin/flags/{key}/rollout/pause` | hold at the current step |
//! | `POST /admin/flags/{key}/rollout/resume` | resume a paused rollout |
//! | `POST /admin/flags/{key}/rollout/restart` | start a rolled-back one again |

use dol_core::error::{ApiError, Code};
use dol_core::rollouts::store::{self as core, AdminOp, Applied, RolloutError};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform::{self as platform, SpinKv, SpinSql, now_ms, open_db};

/// Audit entries of a flag shown with its rollout.
const TRAIL: i64 = 50;

/// Runs a rollout change (which publishes the flag version it writes).
fn change(
    f: impl FnOnce(&mut SpinSql<'_>, &mut SpinKv) -> Result<Applied, RolloutError>,
    status: u16,
) -> Result<Response, ApiError> {
    let db = open_db().map_err(platform::internal)?;
    let mut kv = SpinKv::open_default().map_err(platform::internal)?;
    let applied = f(&mut SpinSql(&db), &mut kv)?;
    Ok(platform::json(status, &applied.record.view()))
}

/// `GET /admin/rollouts`.
pub fn list(req: &Request) -> Result<Response, ApiError> {
    if *req.method() != Method::Get {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let db = open_db().map_err(platform::internal)?;
    let views: Vec<Value> = core::list(&mut SpinSql(&db))?
        .iter()
        .map(|r| r.view())
        .collect();
    Ok(platform::json(200, &json!({ "rollouts": views })))
}

/// `/admin/flags/{key}/rollout[/{op}]`; `op` is what follows `rollout`.
pub fn handle(
    req: &Request,
    key: &str,
    op: Option<&str>,
    actor: &str,
) -> Result<Response, ApiError> {
    let now = now_ms();
    match (op, req.method()) {
        (None, Method::Get) => view(key),
        (None, Method::Put) => {
            let body: Value = serde_json::from_slice(req.body()).map_err(|e| {
                ApiError::new(Code::InvalidJson, format!("the body is not JSON: {e}"))
            })?;
            change(|db, kv| core::start(db, kv, key, &body, actor, now), 201)
        }
        (None, Method::Delete) => change(
            |db, kv| core::admin(db, kv, key, AdminOp::Cancel, actor, now),
            200,
        ),
        (None, _) => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
        (Some(name), Method::Post) => {
            let op = match name {
                "pause" => AdminOp::Pause,
                "resume" => AdminOp::Resume,
                "restart" => AdminOp::Restart,
                _ => return Err(not_found()),
            };
            change(|db, kv| core::admin(db, kv, key, op, actor, now), 200)
        }
        (Some("pause" | "resume" | "restart"), _) => Err(ApiError::method_not_allowed("POST")),
        (Some(_), _) => Err(not_found()),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        Code::NotFound,
        "no such route: /admin/flags/{key}/rollout[/pause|/resume|/restart]",
    )
}

fn view(key: &str) -> Result<Response, ApiError> {
    let db = open_db().map_err(platform::internal)?;
    let mut sql = SpinSql(&db);
    let record = core::get(&mut sql, key)?.ok_or_else(|| RolloutError::NotFound(key.to_owned()))?;
    let trail: Vec<Value> = dol_core::flags::store::audit(&mut sql, Some(key), TRAIL)?
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("rollout-"))
        })
        .collect();
    let guards = core::guards_now(&mut sql, &record, now_ms())?;
    let mut body = record.view();
    body["audit"] = Value::Array(trail);
    body["guards"] = json!(guards);
    Ok(platform::json(200, &body))
}
