//! Operator actions of the admin HTTP API, over any [`SqlExecutor`]: the
//! alert rule set, silences and the emergency-mode override. The scans
//! component parses the request, checks the admin token and calls these;
//! every input check is here, so a refused request changes nothing.
//!
//! # Where the alert rules come from
//!
//! Until an admin writes rules, the rules in force are the `alert_rules`
//! Spin variable when it is set, else the shipped `alerts/rules.json`
//! ([`super::scans::DEFAULT_RULES`]). The first write through the API
//! (`PUT` of the whole set, or of one rule, which starts from the rules in
//! force) stores a complete set in the `control` table under [`RULES_KEY`],
//! and from then on the **stored set wins** over the file and the
//! variable: an operator's edit must not be undone by a redeploy.
//! [`reset_rules`] (`DELETE /admin/alerts/rules`) drops the stored set and
//! returns to the file/variable.
//!
//! Stored rules are kept in the file format (durations as `"5m"`), so
//! `GET /admin/alerts/rules` output can be fed back to `PUT` or into
//! `alerts/rules.json` unchanged.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::alerts::{
    AlertRule, AlertSource, AlertState, MatchOp, Matcher, RuleError, Silence, parse_duration_secs,
    parse_rules,
};
use super::prometheus::valid_label_name;
use super::scans::{DEFAULT_RULES, METRICS};
use super::store::{
    self, AlertQuery, ControlValue, EMERGENCY_AUTO_KEY, EmergencyOverride, StoreError,
};
use crate::storage::{SqlExecutor, in_transaction};

/// Control key of the stored alert rule set (a JSON array in the file format).
pub const RULES_KEY: &str = "alert_rules";

/// Control key of the last emergency-mode change made through the admin API
/// (`{"mode": "on" | "off" | "auto"}`, with who and when).
pub const EMERGENCY_CHANGE_KEY: &str = "emergency_last_change";

/// Why an admin action was refused or failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AdminError {
    /// The request is malformed; `field` is the JSON path of the problem.
    /// Nothing was stored.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path, e.g. `rules[2].threshold` or `ends_at`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No rule or silence has this name or id.
    #[error("{0}")]
    NotFound(String),
    /// The `alert_rules` variable does not parse (an operator's
    /// configuration error, not the client's).
    #[error("the alert_rules variable is invalid: {0}")]
    Config(RuleError),
    /// Storage failed, or refused the action (statuses: `From<&AdminError> for ApiError`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Alert rules

/// Where the rules in force come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RulesSource {
    /// Written through the admin API (stored in SQLite).
    Stored,
    /// The `alert_rules` Spin variable.
    Variable,
    /// The shipped `alerts/rules.json`.
    File,
}

/// The rules in force and where they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    /// Where they come from.
    pub source: RulesSource,
    /// The rules.
    pub rules: Vec<AlertRule>,
    /// Who stored them (stored sets only).
    pub updated_by: Option<String>,
    /// When, Unix ms (stored sets only).
    pub updated_at_ms: Option<i64>,
}

impl RuleSet {
    /// The body of `GET /admin/alerts/rules`.
    pub fn to_json(&self) -> Value {
        json!({
            "source": self.source,
            "updated_by": self.updated_by,
            "updated_at_ms": self.updated_at_ms,
            "rules": rules_json(&self.rules),
        })
    }
}

/// A duration in the file format: `"1h30m"`, `"5m"`, `"90s"` → `"1m30s"`;
/// 0 is `0`.
pub fn format_duration(secs: u64) -> Value {
    if secs == 0 {
        return json!(0);
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    Value::String(out)
}

/// One rule in the file format ([`parse_rules`] reads it back).
pub fn rule_json(r: &AlertRule) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(r.name));
    o.insert("metric".into(), json!(r.metric));
    o.insert("comparison".into(), json!(r.comparison.symbol()));
    o.insert("threshold".into(), json!(r.threshold));
    o.insert("window".into(), format_duration(r.window_secs));
    o.insert("for".into(), format_duration(r.for_secs));
    o.insert("severity".into(), json!(r.severity.as_str()));
    if !r.labels.is_empty() {
        o.insert("labels".into(), json!(r.labels));
    }
    if let Some(d) = &r.description {
        o.insert("description".into(), json!(d));
    }
    Value::Object(o)
}

/// Rules in the file format.
pub fn rules_json(rules: &[AlertRule]) -> Value {
    Value::Array(rules.iter().map(rule_json).collect())
}

/// The field path of a [`RuleError`]; `prefix` is `rules[i].` for a set and
/// empty for a single rule.
fn rule_error(e: RuleError, single: bool) -> AdminError {
    let at = |index: usize, field: &str| {
        if single {
            field.to_owned()
        } else {
            format!("rules[{index}].{field}")
        }
    };
    match e {
        RuleError::Json(m) => AdminError::invalid("(body)", format!("not JSON: {m}")),
        RuleError::Shape => {
            AdminError::invalid("(body)", "expected an array of rules or {\"rules\": [...]}")
        }
        RuleError::Missing { index, field } => AdminError::invalid(&at(index, field), "missing"),
        RuleError::Invalid {
            index,
            field,
            reason,
        } => AdminError::invalid(&at(index, &field), reason),
        RuleError::Duplicate { index, name } => {
            AdminError::invalid(&at(index, "name"), format!("duplicate rule name `{name}`"))
        }
    }
}

/// Refuses metrics nothing computes (the file path only logs them; an
/// admin gets told at once).
fn check_metrics(rules: &[AlertRule], single: bool) -> Result<(), AdminError> {
    for (i, r) in rules.iter().enumerate() {
        if !METRICS.contains(&r.metric.as_str()) {
            let field = if single {
                "metric".to_owned()
            } else {
                format!("rules[{i}].metric")
            };
            return Err(AdminError::invalid(
                &field,
                format!(
                    "unknown metric `{}`; metrics: {}",
                    r.metric,
                    METRICS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a whole rule set (the body of `PUT /admin/alerts/rules`): the
/// file format, metrics known. Errors name the field as `rules[i].field`.
pub fn parse_rule_set(body: &str) -> Result<Vec<AlertRule>, AdminError> {
    let rules = parse_rules(body).map_err(|e| rule_error(e, false))?;
    check_metrics(&rules, false)?;
    Ok(rules)
}

/// Parses one rule (the body of `PUT /admin/alerts/rules/{name}`): a rule
/// object whose `name`, when given, must be `name`.
pub fn parse_one_rule(name: &str, body: &str) -> Result<AlertRule, AdminError> {
    let mut v: Value = serde_json::from_str(body)
        .map_err(|e| AdminError::invalid("(body)", format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(AdminError::invalid("(body)", "expected a rule object"));
    };
    match obj.get("name") {
        None => {
            obj.insert("name".into(), json!(name));
        }
        Some(Value::String(n)) if n == name => {}
        Some(_) => {
            return Err(AdminError::invalid(
                "name",
                format!("must be `{name}`, the name in the path (or left out)"),
            ));
        }
    }
    let rules = parse_rules(&Value::Array(vec![v]).to_string()).map_err(|e| rule_error(e, true))?;
    check_metrics(&rules, true)?;
    rules
        .into_iter()
        .next()
        .ok_or_else(|| AdminError::invalid("(body)", "expected a rule object"))
}

/// The rules in force: the stored set, else the `alert_rules` variable
/// (`variable`, empty when unset), else the shipped file.
pub fn load_rules(db: &mut impl SqlExecutor, variable: &str) -> Result<RuleSet, AdminError> {
    if let Some(c) = store::get_control(db, RULES_KEY)? {
        // A stored set passed validation when written: failing now is corruption.
        let rules = parse_rules(&c.value.to_string()).map_err(|e| StoreError::Corrupt {
            table: "control",
            reason: format!("{RULES_KEY}: {e}"),
        })?;
        return Ok(RuleSet {
            source: RulesSource::Stored,
            rules,
            updated_by: Some(c.updated_by),
            updated_at_ms: Some(c.updated_at_ms),
        });
    }
    let (source, text) = if variable.trim().is_empty() {
        (RulesSource::File, DEFAULT_RULES)
    } else {
        (RulesSource::Variable, variable)
    };
    Ok(RuleSet {
        source,
        rules: parse_rules(text).map_err(AdminError::Config)?,
        updated_by: None,
        updated_at_ms: None,
    })
}

/// Deletes the stored states of rule alerts that no rule in `rules` owns
/// any more (a removed or relabelled rule), so they stop showing as active.
fn drop_orphans(db: &mut impl SqlExecutor, rules: &[AlertRule]) -> Result<usize, StoreError> {
    let owned: BTreeSet<String> = rules
        .iter()
        .map(|r| AlertState::for_rule(r).fingerprint)
        .collect();
    let stored = store::list_alerts(
        db,
        &AlertQuery {
            source: Some(AlertSource::Rule),
            ..AlertQuery::default()
        },
    )?;
    let mut dropped = 0;
    for a in stored {
        if !owned.contains(&a.state.fingerprint) && store::delete_alert(db, &a.state.fingerprint)? {
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Stores `rules` as the set in force, recording who and when, and drops
/// the alert states of rules no longer present, in one transaction.
pub fn save_rules(
    db: &mut impl SqlExecutor,
    rules: &[AlertRule],
    by: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    in_transaction(db, |db| {
        store::set_control(db, RULES_KEY, &rules_json(rules), by, now_ms)?;
        drop_orphans(db, rules)?;
        Ok::<_, StoreError>(())
    })?;
    Ok(())
}

/// Adds or replaces the rule `rule.name` in the rules in force and stores
/// the result; returns whether the rule is new.
pub fn put_rule(
    db: &mut impl SqlExecutor,
    variable: &str,
    rule: AlertRule,
    by: &str,
    now_ms: i64,
) -> Result<bool, AdminError> {
    let mut rules = load_rules(db, variable)?.rules;
    let created = match rules.iter_mut().find(|r| r.name == rule.name) {
        Some(slot) => {
            *slot = rule;
            false
        }
        None => {
            rules.push(rule);
            true
        }
    };
    save_rules(db, &rules, by, now_ms)?;
    Ok(created)
}

/// Removes the rule `name` from the rules in force and stores the result
/// (its alert state goes too); [`AdminError::NotFound`] when no rule has
/// that name.
pub fn delete_rule(
    db: &mut impl SqlExecutor,
    variable: &str,
    name: &str,
    by: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let mut rules = load_rules(db, variable)?.rules;
    let before = rules.len();
    rules.retain(|r| r.name != name);
    if rules.len() == before {
        return Err(AdminError::NotFound(format!("no alert rule `{name}`")));
    }
    save_rules(db, &rules, by, now_ms)
}

/// Drops the stored set: the variable or the file is in force again.
/// Returns whether a set was stored.
pub fn reset_rules(db: &mut impl SqlExecutor, variable: &str) -> Result<bool, AdminError> {
    let existed = store::get_control(db, RULES_KEY)?.is_some();
    let defaults = {
        let text = if variable.trim().is_empty() {
            DEFAULT_RULES
        } else {
            variable
        };
        parse_rules(text).map_err(AdminError::Config)?
    };
    in_transaction(db, |db| {
        store::delete_control(db, RULES_KEY)?;
        drop_orphans(db, &defaults)?;
        Ok::<_, StoreError>(())
    })?;
    Ok(existed)
}

// ---------------------------------------------------------------------------
// Silences

fn int_field(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, AdminError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|t| *t >= 0)
            .map(Some)
            .ok_or_else(|| AdminError::invalid(field, "expected Unix time in milliseconds")),
    }
}

fn parse_matcher(i: usize, v: &Value) -> Result<Matcher, AdminError> {
    let at = |f: &str| format!("matchers[{i}].{f}");
    let obj = v
        .as_object()
        .ok_or_else(|| AdminError::invalid(&format!("matchers[{i}]"), "expected an object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "name" | "value" | "op") {
            return Err(AdminError::invalid(&at(k), "unknown field"));
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_label_name(n))
        .ok_or_else(|| AdminError::invalid(&at("name"), "expected a label name"))?;
    let value = obj
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| AdminError::invalid(&at("value"), "expected a string"))?;
    let op = match obj.get("op").map(|o| o.as_str()) {
        None | Some(Some("equal" | "=")) => MatchOp::Equal,
        Some(Some("not_equal" | "!=")) => MatchOp::NotEqual,
        Some(_) => {
            return Err(AdminError::invalid(
                &at("op"),
                "expected \"equal\" (=) or \"not_equal\" (!=)",
            ));
        }
    };
    Ok(Matcher {
        name: name.to_owned(),
        value: value.to_owned(),
        op,
    })
}

/// Parses the body of `POST /admin/silences` into a silence created by
/// `created_by` at `now_ms`:
///
/// * `matchers`: `[{"name", "value", "op": "equal" | "not_equal"}]` and/or
///   `labels`: `{"name": "value"}` (equality matchers); at least one;
/// * `starts_at` (Unix ms, default now, to the whole second) and either `ends_at` (Unix ms,
///   after `starts_at` and in the future) or `duration` (`"2h"`, seconds);
/// * `comment` (optional string).
///
/// The id is derived from the content, the creator and the time.
pub fn parse_silence(body: &str, created_by: &str, now_ms: i64) -> Result<Silence, AdminError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| AdminError::invalid("(body)", format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| AdminError::invalid("(body)", "expected an object"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "matchers" | "labels" | "starts_at" | "ends_at" | "duration" | "comment"
        ) {
            return Err(AdminError::invalid(k, "unknown field"));
        }
    }
    let mut matchers = Vec::new();
    if let Some(m) = obj.get("matchers") {
        let arr = m
            .as_array()
            .ok_or_else(|| AdminError::invalid("matchers", "expected an array"))?;
        for (i, m) in arr.iter().enumerate() {
            matchers.push(parse_matcher(i, m)?);
        }
    }
    if let Some(l) = obj.get("labels") {
        let l = l
            .as_object()
            .ok_or_else(|| AdminError::invalid("labels", "expected an object of strings"))?;
        for (k, v) in l {
            let field = format!("labels.{k}");
            if !valid_label_name(k) {
                return Err(AdminError::invalid(&field, "invalid label name"));
            }
            let v = v
                .as_str()
                .ok_or_else(|| AdminError::invalid(&field, "expected a string"))?;
            matchers.push(Matcher::eq(k, v));
        }
    }
    if matchers.is_empty() {
        return Err(AdminError::invalid(
            "matchers",
            "at least one matcher (or label) is required: a silence without one would mute nothing",
        ));
    }
    // "Now" is taken to the whole second: scans (cron ticks, and the HTTP
    // route) evaluate at whole seconds, and a silence created a few ms into
    // a second must already hold for a scan run in that same second.
    let starts_at_ms = int_field(obj, "starts_at")?.unwrap_or(now_ms - now_ms.rem_euclid(1_000));
    let ends_at_ms = match (int_field(obj, "ends_at")?, obj.get("duration")) {
        (Some(_), Some(_)) => {
            return Err(AdminError::invalid(
                "duration",
                "give ends_at or duration, not both",
            ));
        }
        (Some(end), None) => end,
        (None, Some(d)) => {
            let secs = parse_duration_secs(d).filter(|s| *s > 0).ok_or_else(|| {
                AdminError::invalid("duration", "expected a positive duration like \"2h\"")
            })?;
            starts_at_ms
                .saturating_add(i64::try_from(secs.saturating_mul(1_000)).unwrap_or(i64::MAX))
        }
        (None, None) => {
            return Err(AdminError::invalid(
                "ends_at",
                "missing: give ends_at (Unix ms) or duration",
            ));
        }
    };
    if ends_at_ms <= starts_at_ms {
        return Err(AdminError::invalid("ends_at", "must be after starts_at"));
    }
    if ends_at_ms <= now_ms {
        return Err(AdminError::invalid("ends_at", "is in the past"));
    }
    let comment = match obj.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(c) => c
            .as_str()
            .ok_or_else(|| AdminError::invalid("comment", "expected a string"))?
            .to_owned(),
    };
    let mut h = Sha256::new();
    h.update(body.as_bytes());
    h.update([0xff]);
    h.update(created_by.as_bytes());
    h.update(now_ms.to_be_bytes());
    let digest = h.finalize();
    let mut id = String::from("sil_");
    crate::hex::encode_into(&mut id, &digest[..8]);
    Ok(Silence {
        id,
        matchers,
        starts_at_ms,
        ends_at_ms,
        created_by: created_by.to_owned(),
        comment,
    })
}

/// A silence as the API shows it: the stored fields plus whether it is in
/// force at `now_ms`.
pub fn silence_json(s: &Silence, now_ms: i64) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": s.starts_at_ms,
        "ends_at": s.ends_at_ms,
        "created_by": s.created_by,
        "comment": s.comment,
        "active": now_ms >= s.starts_at_ms && now_ms < s.ends_at_ms,
    })
}

// ---------------------------------------------------------------------------
// Emergency mode

/// Parses the body of `PUT /admin/emergency`, `{"mode": "on" | "off" |
/// "auto"}`: `Some` forces, `None` returns to automatic.
pub fn parse_emergency_mode(body: &str) -> Result<Option<EmergencyOverride>, AdminError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| AdminError::invalid("(body)", format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        AdminError::invalid("(body)", "expected {\"mode\": \"on\" | \"off\" | \"auto\"}")
    })?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "mode") {
        return Err(AdminError::invalid(k, "unknown field"));
    }
    match obj.get("mode").map(Value::as_str) {
        Some(Some("on")) => Ok(Some(EmergencyOverride::On)),
        Some(Some("off")) => Ok(Some(EmergencyOverride::Off)),
        Some(Some("auto")) => Ok(None),
        None => Err(AdminError::invalid("mode", "missing")),
        Some(_) => Err(AdminError::invalid(
            "mode",
            "expected \"on\", \"off\" or \"auto\"",
        )),
    }
}

/// Forces emergency mode on/off or returns it to automatic, and records the
/// change (who, when) under [`EMERGENCY_CHANGE_KEY`], in one transaction.
pub fn set_emergency(
    db: &mut impl SqlExecutor,
    mode: Option<EmergencyOverride>,
    by: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let label = match mode {
        Some(EmergencyOverride::On) => "on",
        Some(EmergencyOverride::Off) => "off",
        None => "auto",
    };
    in_transaction(db, |db| -> Result<(), StoreError> {
        store::set_emergency_override(db, mode, by, now_ms)?;
        store::set_control(
            db,
            EMERGENCY_CHANGE_KEY,
            &json!({ "mode": label }),
            by,
            now_ms,
        )
    })?;
    Ok(())
}

fn who_when(c: &ControlValue) -> Value {
    json!({ "by": c.updated_by, "at_ms": c.updated_at_ms })
}

/// The body of `GET /admin/emergency`: `override` (`on`/`off`/`null`, with
/// who set it and when), `automatic` (the alerts scan's state: `active`,
/// `since_ms`, `recovering_since_ms`; `null` before the first scan),
/// `effective` (whether emergency mode is in force: the override when set,
/// else the automatic state) and `last_change` (the latest change made
/// through the admin API).
pub fn emergency_status(db: &mut impl SqlExecutor) -> Result<Value, AdminError> {
    let over = store::emergency_override(db)?;
    let auto = store::get_control(db, EMERGENCY_AUTO_KEY)?;
    let last = store::get_control(db, EMERGENCY_CHANGE_KEY)?;
    let effective = store::emergency_active(db)?;
    let auto_json = auto.as_ref().map(|c| {
        let mut v: BTreeMap<&str, Value> = BTreeMap::new();
        for k in ["active", "since_ms", "recovering_since_ms"] {
            v.insert(k, c.value.get(k).cloned().unwrap_or(Value::Null));
        }
        v.insert("updated_at_ms", json!(c.updated_at_ms));
        v
    });
    Ok(json!({
        "override": over.as_ref().map(|(m, _)| m),
        "override_set": over.as_ref().map(|(_, c)| who_when(c)),
        "automatic": auto_json,
        "effective": effective,
        "last_change": last.as_ref().map(|c| json!({
            "mode": c.value.get("mode").cloned().unwrap_or(Value::Null),
            "by": c.updated_by,
            "at_ms": c.updated_at_ms,
        })),
    }))
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
