//! Operator routes (admin token required): alert rules, alert actions,
//! silences and the emergency-mode override. Parsing, validation and
//! storage are `dol_core::observe::{admin, store}`; this module maps HTTP
//! onto them.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/alerts/rules` | the rules in force and where they come from |
//! | `PUT /admin/alerts/rules` | replace the whole set (stored, wins over file/variable) |
//! | `DELETE /admin/alerts/rules` | drop the stored set: file/variable again |
//! | `GET/PUT/DELETE /admin/alerts/rules/{name}` | one rule |
//! | `GET /admin/alerts/{id}` | one alert |
//! | `POST /admin/alerts/{id}/ack`, `/resolve` | acknowledge / resolve |
//! | `GET/POST /admin/silences`, `GET/DELETE /admin/silences/{id}` | silences |
//! | `GET/PUT /admin/emergency` | emergency mode: state, and `{"mode": "on"\|"off"\|"auto"}` |

use dol_core::observe::admin::{self, AdminError};
use dol_core::observe::store;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::sqlite::Connection;

use crate::config::var;
use dol_core::error::Code;
use dol_spin_platform::{self as platform, SpinSql};

/// Whether `path` is one of the routes here.
pub fn owns(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p.starts_with("/admin/alerts/")
        || p == "/admin/silences"
        || p.starts_with("/admin/silences/")
        || p == "/admin/emergency"
}

/// The error response: `{"error": {"code", "message", "field"?}}`; storage
/// internals are logged, not sent.
fn fail(e: &AdminError) -> Response {
    if !e.is_public() {
        eprintln!("scans: admin action failed: {e}");
        return platform::error(Code::Internal, "internal error");
    }
    let mut err = json!({ "code": e.code(), "message": e.to_string() });
    if let Some(f) = e.field() {
        err["field"] = json!(f);
    }
    platform::json(e.status(), &json!({ "error": err }))
}

fn internal(e: &anyhow::Error) -> Response {
    eprintln!("scans: admin action failed: {e:#}");
    platform::error(Code::Internal, "internal error")
}

fn body(req: &Request) -> Result<&str, Response> {
    std::str::from_utf8(req.body()).map_err(|_| {
        fail(&AdminError::Invalid {
            field: "(body)".into(),
            reason: "not UTF-8".into(),
        })
    })
}

fn segment(s: &str) -> Result<String, Response> {
    platform::percent_decode(s)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| platform::error(Code::InvalidRequest, "bad path segment"))
}

/// Handles a route [`owns`] names, for the admin `actor`.
pub fn handle(req: &Request, actor: &str) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return internal(&e),
    };
    let now = platform::now_ms();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match parts.as_slice() {
        ["admin", "alerts", "rules"] => rules(req, &db, actor, now),
        ["admin", "alerts", "rules", name] => match segment(name) {
            Ok(name) => rule(req, &db, &name, actor, now),
            Err(r) => return r,
        },
        ["admin", "alerts", id] => match segment(id) {
            Ok(id) => alert(req, &db, &id),
            Err(r) => return r,
        },
        ["admin", "alerts", id, action @ ("ack" | "resolve")] => match segment(id) {
            Ok(id) => alert_action(req, &db, &id, action, actor, now),
            Err(r) => return r,
        },
        ["admin", "silences"] => silences(req, &db, actor, now),
        ["admin", "silences", id] => match segment(id) {
            Ok(id) => silence(req, &db, &id, now),
            Err(r) => return r,
        },
        ["admin", "emergency"] => emergency(req, &db, actor, now),
        _ => return platform::error(Code::NotFound, "no such route"),
    };
    result.unwrap_or_else(|r| r)
}

type Answer = Result<Response, Response>;

fn rule_set(db: &Connection) -> Result<admin::RuleSet, Response> {
    admin::load_rules(&mut SpinSql(db), &var("alert_rules")).map_err(|e| fail(&e))
}

fn rules(req: &Request, db: &Connection, actor: &str, now: i64) -> Answer {
    match req.method() {
        Method::Get => {}
        Method::Put => {
            let rules = admin::parse_rule_set(body(req)?).map_err(|e| fail(&e))?;
            admin::save_rules(&mut SpinSql(db), &rules, actor, now).map_err(|e| fail(&e))?;
        }
        Method::Delete => {
            admin::reset_rules(&mut SpinSql(db), &var("alert_rules")).map_err(|e| fail(&e))?;
        }
        _ => return Ok(platform::method_not_allowed("GET, PUT, DELETE")),
    }
    Ok(platform::json(200, &rule_set(db)?.to_json()))
}

fn rule(req: &Request, db: &Connection, name: &str, actor: &str, now: i64) -> Answer {
    let variable = var("alert_rules");
    match req.method() {
        Method::Get => {
            let set = rule_set(db)?;
            match set.rules.iter().find(|r| r.name == name) {
                Some(r) => Ok(platform::json(
                    200,
                    &json!({ "source": set.source, "rule": admin::rule_json(r) }),
                )),
                None => Err(fail(&AdminError::NotFound(format!(
                    "no alert rule `{name}`"
                )))),
            }
        }
        Method::Put => {
            let rule = admin::parse_one_rule(name, body(req)?).map_err(|e| fail(&e))?;
            let shown = admin::rule_json(&rule);
            let created = admin::put_rule(&mut SpinSql(db), &variable, rule, actor, now)
                .map_err(|e| fail(&e))?;
            Ok(platform::json(
                if created { 201 } else { 200 },
                &json!({ "rule": shown, "created": created }),
            ))
        }
        Method::Delete => {
            admin::delete_rule(&mut SpinSql(db), &variable, name, actor, now)
                .map_err(|e| fail(&e))?;
            Ok(platform::json(200, &json!({ "deleted": name })))
        }
        _ => Ok(platform::method_not_allowed("GET, PUT, DELETE")),
    }
}

fn alert(req: &Request, db: &Connection, id: &str) -> Answer {
    if *req.method() != Method::Get {
        return Ok(platform::method_not_allowed("GET"));
    }
    match store::get_alert(&mut SpinSql(db), id) {
        Ok(Some(a)) => Ok(platform::json(200, &json!({ "alert": a }))),
        Ok(None) => Err(fail(&AdminError::Store(store::StoreError::Refused(
            dol_core::observe::alerts::ActionError::NotFound(id.to_owned()),
        )))),
        Err(e) => Err(fail(&AdminError::Store(e))),
    }
}

fn alert_action(
    req: &Request,
    db: &Connection,
    id: &str,
    action: &str,
    actor: &str,
    now: i64,
) -> Answer {
    if *req.method() != Method::Post {
        return Ok(platform::method_not_allowed("POST"));
    }
    let mut sql = SpinSql(db);
    let outcome = if action == "ack" {
        store::acknowledge_alert(&mut sql, id, actor, now)
    } else {
        store::resolve_alert(&mut sql, id, actor, now)
    }
    .map_err(|e| fail(&AdminError::Store(e)))?;
    Ok(platform::json(
        200,
        &json!({ "alert": outcome.alert, "queued_notification": outcome.queued }),
    ))
}

fn silences(req: &Request, db: &Connection, actor: &str, now: i64) -> Answer {
    match req.method() {
        Method::Get => {
            let list =
                store::list_silences(&mut SpinSql(db)).map_err(|e| fail(&AdminError::Store(e)))?;
            let shown: Vec<Value> = list.iter().map(|s| admin::silence_json(s, now)).collect();
            Ok(platform::json(200, &json!({ "silences": shown })))
        }
        Method::Post => {
            let s = admin::parse_silence(body(req)?, actor, now).map_err(|e| fail(&e))?;
            store::create_silence(&mut SpinSql(db), &s, now)
                .map_err(|e| fail(&AdminError::Store(e)))?;
            Ok(platform::json(
                201,
                &json!({ "silence": admin::silence_json(&s, now) }),
            ))
        }
        _ => Ok(platform::method_not_allowed("GET, POST")),
    }
}

fn silence(req: &Request, db: &Connection, id: &str, now: i64) -> Answer {
    let not_found = || fail(&AdminError::NotFound(format!("no silence `{id}`")));
    let mut sql = SpinSql(db);
    match req.method() {
        Method::Get => match store::get_silence(&mut sql, id) {
            Ok(Some(s)) => Ok(platform::json(
                200,
                &json!({ "silence": admin::silence_json(&s, now) }),
            )),
            Ok(None) => Err(not_found()),
            Err(e) => Err(fail(&AdminError::Store(e))),
        },
        Method::Delete => match store::delete_silence(&mut sql, id) {
            Ok(true) => Ok(platform::json(200, &json!({ "deleted": id }))),
            Ok(false) => Err(not_found()),
            Err(e) => Err(fail(&AdminError::Store(e))),
        },
        _ => Ok(platform::method_not_allowed("GET, DELETE")),
    }
}

fn emergency(req: &Request, db: &Connection, actor: &str, now: i64) -> Answer {
    match req.method() {
        Method::Get => {}
        Method::Put => {
            let mode = admin::parse_emergency_mode(body(req)?).map_err(|e| fail(&e))?;
            admin::set_emergency(&mut SpinSql(db), mode, actor, now).map_err(|e| fail(&e))?;
        }
        _ => return Ok(platform::method_not_allowed("GET, PUT")),
    }
    let status = admin::emergency_status(&mut SpinSql(db)).map_err(|e| fail(&e))?;
    Ok(platform::json(200, &status))
}
