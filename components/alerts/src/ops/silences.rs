//! `/admin/silences[/{id}]` and `/admin/emergency`: silences and the
//! emergency-mode override (`dol_core::observe::{admin, store}`).

use dol_core::observe::admin::{self, AdminError};
use dol_core::observe::store;
use dol_spin_platform::Db;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request};

use super::{Answer, body, fail};
use dol_spin_platform::{self as platform, SpinSql};

pub(super) fn silences(req: &Request, db: &Db, actor: &str, now: i64) -> Answer {
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

pub(super) fn silence(req: &Request, db: &Db, id: &str, now: i64) -> Answer {
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

pub(super) fn emergency(req: &Request, db: &Db, actor: &str, now: i64) -> Answer {
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
