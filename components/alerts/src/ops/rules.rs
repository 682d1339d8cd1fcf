//! `/admin/alerts/rules[/{name}]`: the alert rules in force, stored or from
//! the file/variable (`dol_core::observe::admin`).

use dol_core::observe::admin::{self, AdminError};
use dol_spin_platform::Db;
use serde_json::json;
use spin_sdk::http::{Method, Request, Response};

use super::{Answer, body, fail};
use dol_spin_platform::var;
use dol_spin_platform::{self as platform, SpinSql};

pub(super) fn rule_set(db: &Db) -> Result<admin::RuleSet, Response> {
    admin::load_rules(&mut SpinSql(db), &var("alert_rules")).map_err(|e| fail(&e))
}

pub(super) fn rules(req: &Request, db: &Db, actor: &str, now: i64) -> Answer {
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

pub(super) fn rule(req: &Request, db: &Db, name: &str, actor: &str, now: i64) -> Answer {
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
