//! The alert routes: the list with incident response times, one alert,
//! and acknowledge / resolve (`dol_core::observe::store`).

use dol_core::observe::admin::AdminError;
use dol_core::observe::store::{self, AlertQuery};
use dol_spin_platform::Db;
use serde_json::json;
use spin_sdk::http::{Method, Request};

use super::{Answer, fail};
use dol_spin_platform::{self as platform, SpinSql};

/// `GET /admin/alerts`: the alert states, most severe first, and the
/// incident response times of the last 7 and 30 days.
pub(super) fn list(req: &Request, db: &Db, now: i64) -> Answer {
    if *req.method() != Method::Get {
        return Ok(platform::method_not_allowed("GET"));
    }
    let mut sql = SpinSql(db);
    let records = store::list_alerts(&mut sql, &AlertQuery::default())
        .map_err(|e| fail(&AdminError::Store(e)))?;
    let incidents =
        store::incident_windows(&mut sql, now).map_err(|e| fail(&AdminError::Store(e)))?;
    Ok(platform::json(
        200,
        &json!({ "alerts": records, "incidents": incidents }),
    ))
}

/// `GET /admin/alerts/{id}`: one alert.
pub(super) fn one(req: &Request, db: &Db, id: &str) -> Answer {
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

/// `POST /admin/alerts/{id}/ack` or `/resolve`.
pub(super) fn action(
    req: &Request,
    db: &Db,
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
