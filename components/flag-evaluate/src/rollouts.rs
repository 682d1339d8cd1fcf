//! The rollout admin API (admin token, checked by `admin::handle`). Plans,
//! decisions and storage are `dol_core::rollouts`; this module routes,
//! stores and publishes.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/rollouts` | every rollout (in progress and finished) |
//! | `GET /admin/flags/{key}/rollout` | one rollout and its audit trail |
//! | `PUT /admin/flags/{key}/rollout` | start a rollout (body: the plan) |
//! | `DELETE /admin/flags/{key}/rollout` | cancel: the flag's targeting is restored |
//! | `POST /admin/flags/{key}/rollout/pause` | hold at the current step |
//! | `POST /admin/flags/{key}/rollout/resume` | resume a paused rollout |
//! | `POST /admin/flags/{key}/rollout/restart` | start a rolled-back one again |

use dol_core::rollouts::store::{self as core, AdminOp, Applied, RolloutError};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform::{self as platform, SpinKv, SpinSql, now_ms, open_db};

/// Audit entries of a flag shown with its rollout.
const TRAIL: i64 = 50;

fn failed(err: &RolloutError) -> Response {
    if err.status() >= 500 {
        eprintln!("flag-evaluate: rollout storage failed: {err}");
    }
    platform::json(err.status(), &err.body())
}

/// Runs a rollout change (which publishes the flag version it writes).
fn change(
    f: impl FnOnce(&mut SpinSql<'_>, &mut SpinKv) -> Result<Applied, RolloutError>,
    status: u16,
) -> anyhow::Result<Response> {
    let db = open_db()?;
    let mut kv = SpinKv::open_default()?;
    Ok(match f(&mut SpinSql(&db), &mut kv) {
        Ok(applied) => platform::json(status, &applied.record.view()),
        Err(err) => failed(&err),
    })
}

/// `GET /admin/rollouts`.
pub fn list(req: &Request) -> anyhow::Result<Response> {
    if *req.method() != Method::Get {
        return Ok(platform::method_not_allowed("GET"));
    }
    let db = open_db()?;
    Ok(match core::list(&mut SpinSql(&db)) {
        Ok(all) => {
            let views: Vec<Value> = all.iter().map(|r| r.view()).collect();
            platform::json(200, &json!({ "rollouts": views }))
        }
        Err(err) => failed(&err),
    })
}

/// `/admin/flags/{key}/rollout[/{op}]`; `op` is what follows `rollout`.
pub fn handle(req: &Request, key: &str, op: Option<&str>, actor: &str) -> anyhow::Result<Response> {
    let method = req.method();
    let now = now_ms();
    match (op, method) {
        (None, Method::Get) => view(key),
        (None, Method::Put) => {
            let body: Value = match serde_json::from_slice(req.body()) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(platform::error(
                        400,
                        "invalid-json",
                        &format!("the body is not JSON: {e}"),
                    ));
                }
            };
            change(|db, kv| core::start(db, kv, key, &body, actor, now), 201)
        }
        (None, Method::Delete) => change(
            |db, kv| core::admin(db, kv, key, AdminOp::Cancel, actor, now),
            200,
        ),
        (None, _) => Ok(platform::method_not_allowed("GET, PUT, DELETE")),
        (Some(name), Method::Post) => {
            let op = match name {
                "pause" => AdminOp::Pause,
                "resume" => AdminOp::Resume,
                "restart" => AdminOp::Restart,
                _ => return Ok(not_found()),
            };
            change(|db, kv| core::admin(db, kv, key, op, actor, now), 200)
        }
        (Some("pause" | "resume" | "restart"), _) => Ok(platform::method_not_allowed("POST")),
        (Some(_), _) => Ok(not_found()),
    }
}

fn not_found() -> Response {
    platform::error(
        404,
        "not-found",
        "no such route: /admin/flags/{key}/rollout[/pause|/resume|/restart]",
    )
}

fn view(key: &str) -> anyhow::Result<Response> {
    let db = open_db()?;
    let mut sql = SpinSql(&db);
    let record = match core::get(&mut sql, key) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(failed(&RolloutError::NotFound(key.to_owned()))),
        Err(err) => return Ok(failed(&err)),
    };
    let trail: Vec<Value> = dol_core::flags::store::audit(&mut sql, Some(key), TRAIL)?
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("rollout-"))
        })
        .collect();
    let mut body = record.view();
    body["audit"] = Value::Array(trail);
    Ok(platform::json(200, &body))
}
