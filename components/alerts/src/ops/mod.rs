//! Operator routes (admin token required): alerts, alert rules, alert actions,
//! silences and the emergency-mode override. Parsing, validation and
//! storage are `dol_core::observe::{admin, store}`; this module maps HTTP
//! onto them.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/alerts` | the alert states, most severe first |
//! | `GET /admin/alerts/rules` | the rules in force and where they come from |
//! | `PUT /admin/alerts/rules` | replace the whole set (stored, wins over file/variable) |
//! | `DELETE /admin/alerts/rules` | drop the stored set: file/variable again |
//! | `GET/PUT/DELETE /admin/alerts/rules/{name}` | one rule |
//! | `GET /admin/alerts/{id}` | one alert |
//! | `POST /admin/alerts/{id}/ack`, `/resolve` | acknowledge / resolve |
//! | `GET/POST /admin/silences`, `GET/DELETE /admin/silences/{id}` | silences |
//! | `GET/PUT /admin/emergency` | emergency mode: state, and `{"mode": "on"\|"off"\|"auto"}` |

use dol_core::error::{ApiError, Code};
use dol_core::observe::admin::AdminError;
use spin_sdk::http::{Method, Request, Response};

mod alerts;
mod rules;
mod silences;

use dol_spin_platform::{self as platform, SpinSql};

/// Whether `path` is one of the routes here.
pub fn owns(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p == "/admin/alerts"
        || p.starts_with("/admin/alerts/")
        || p == "/admin/silences"
        || p.starts_with("/admin/silences/")
        || p == "/admin/emergency"
}

/// The error response in DOL's JSON shape; storage internals are logged,
/// not sent.
pub(super) fn fail(e: &AdminError) -> Response {
    platform::fail("alerts", &ApiError::from(e))
}

pub(super) fn body(req: &Request) -> Result<&str, Response> {
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

/// Handles a route [`owns`] names, for the admin `actor`; a change that
/// succeeds is appended to the audit log with the state before and after.
pub fn handle(req: &Request, actor: &str) -> Response {
    if matches!(req.method(), Method::Get | Method::Head | Method::Options) {
        return serve(req, actor);
    }
    let path = req.path().trim_end_matches('/').to_owned();
    let Some((kind, action, target, before_path)) = audit_subject(&path, req.method()) else {
        return serve(req, actor);
    };
    // The before state is what a GET of the resource answers now.
    let before = before_path.and_then(|p| {
        let get = Request::builder().method(Method::Get).uri(p).build();
        platform::response_json(&serve(&get, actor))
    });
    let response = serve(req, actor);
    if let Some(after) = platform::response_json(&response) {
        // A new silence is named by the id it was given.
        let target = match after["silence"]["id"].as_str() {
            Some(id) if target == "new" => id.to_owned(),
            _ => target,
        };
        let mut record = dol_core::audit::Record::new(kind, action, target);
        record.before = before;
        record.after = (*req.method() != Method::Delete).then_some(after);
        match platform::open_db() {
            Ok(db) => platform::audit("alerts", &mut SpinSql(&db), actor, record),
            Err(e) => eprintln!("alerts: AUDIT WRITE FAILED: {e:#}"),
        }
    }
    response
}

/// What a change on `path` is in the audit log: kind, action, target and
/// the path whose GET shows its before state.
fn audit_subject(
    path: &str,
    method: &Method,
) -> Option<(&'static str, &'static str, String, Option<String>)> {
    let action = match method {
        Method::Put => "put",
        Method::Post => "create",
        Method::Delete => "delete",
        _ => "change",
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["admin", "alerts", "rules"] => ("alert_rule", action, "*".into(), Some(path.into())),
        ["admin", "alerts", "rules", name] => {
            ("alert_rule", action, (*name).into(), Some(path.into()))
        }
        ["admin", "alerts", id, verb @ ("ack" | "resolve")] => (
            "alert",
            if *verb == "ack" { "ack" } else { "resolve" },
            (*id).into(),
            Some(format!("/admin/alerts/{id}")),
        ),
        ["admin", "silences"] => ("silence", action, "new".into(), None),
        ["admin", "silences", id] => ("silence", action, (*id).into(), Some(path.into())),
        ["admin", "emergency"] => ("emergency", "set", "emergency".into(), Some(path.into())),
        _ => return None,
    })
}

fn serve(req: &Request, actor: &str) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return platform::fail("alerts", &platform::internal(e)),
    };
    let now = platform::now_ms();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match parts.as_slice() {
        ["admin", "alerts"] => alerts::list(req, &db, now),
        ["admin", "alerts", "rules"] => rules::rules(req, &db, actor, now),
        ["admin", "alerts", "rules", name] => match segment(name) {
            Ok(name) => rules::rule(req, &db, &name, actor, now),
            Err(r) => return r,
        },
        ["admin", "alerts", id] => match segment(id) {
            Ok(id) => alerts::one(req, &db, &id),
            Err(r) => return r,
        },
        ["admin", "alerts", id, action @ ("ack" | "resolve")] => match segment(id) {
            Ok(id) => alerts::action(req, &db, &id, action, actor, now),
            Err(r) => return r,
        },
        ["admin", "silences"] => silences::silences(req, &db, actor, now),
        ["admin", "silences", id] => match segment(id) {
            Ok(id) => silences::silence(req, &db, &id, now),
            Err(r) => return r,
        },
        ["admin", "emergency"] => silences::emergency(req, &db, actor, now),
        _ => return platform::error(Code::NotFound, "no such route"),
    };
    result.unwrap_or_else(|r| r)
}

/// A handler's answer; `Err` is the error response to send.
pub(super) type Answer = Result<Response, Response>;
