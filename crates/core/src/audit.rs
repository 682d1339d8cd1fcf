//! The one append-only audit log (`audit_log`, migrations 0002 and 0015).
//!
//! Flag and rollout changes write their rows through `flags::store`
//! (`kind` `flag`, with their flag-set version); every other admin action
//! (keys, models, templates, experiments, alert rules, silences,
//! acknowledgements, emergency mode, scans run by hand, settings, subject
//! deletions) appends here with [`append`]. Nothing updates or deletes rows
//! except the retention scan for the `audit` data class. Before/after values
//! pass through [`redact`] so a secret never reaches the log.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::storage::{SqlExecutor, SqlValue, in_transaction};

/// The kinds of audited things, for the `kind` filter's validation.
pub const KINDS: &[&str] = &[
    "flag",
    "rollout",
    "key",
    "model",
    "template",
    "experiment",
    "alert_rule",
    "silence",
    "alert",
    "emergency",
    "scan",
    "settings",
    "subject",
    "org",
    "credential",
    "recommendation",
];

/// Members whose values are secrets: replaced by `"[redacted]"` in the log.
const SECRET_MEMBERS: &[&str] = &[
    "key",
    "key_hash",
    "secret",
    "token",
    "password",
    "api_key",
    "credential",
    "credentials",
    "authorization",
];

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused the statement.
    #[error("audit log: {0}")]
    Storage(String),
}

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> Self {
        ApiError::internal(error.to_string())
    }
}

/// One admin action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What was changed: one of [`KINDS`].
    pub kind: &'static str,
    /// What was done (`create`, `revoke`, `put`, `delete`, `ack`, `run` …).
    pub action: &'static str,
    /// Which one (key id, `provider/model`, scan name, subject …).
    pub target: Option<String>,
    /// The org concerned (`''`: the default org).
    pub org_id: String,
    /// State before (`None`: it did not exist).
    pub before: Option<Value>,
    /// State after (`None`: it no longer exists).
    pub after: Option<Value>,
}

impl Record {
    /// A record of the default org.
    pub fn new(kind: &'static str, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            kind,
            action,
            target: Some(target.into()),
            org_id: String::new(),
            before: None,
            after: None,
        }
    }

    /// Sets the before state.
    pub fn before(mut self, value: Value) -> Self {
        self.before = Some(value);
        self
    }

    /// Sets the after state.
    pub fn after(mut self, value: Value) -> Self {
        self.after = Some(value);
        self
    }
}

/// `value` with every member named like a secret replaced (recursively).
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if SECRET_MEMBERS.contains(&k.to_ascii_lowercase().as_str()) && !v.is_null() {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

fn opt_json(v: Option<Value>) -> SqlValue {
    v.map_or(SqlValue::Null, |v| SqlValue::Text(redact(v).to_string()))
}

/// Applies an admin change and appends its audit entry in one
/// transaction (`BEGIN IMMEDIATE`): `change` runs inside it and returns its
/// result and the entry; if the change or the audit write fails, both are
/// rolled back, so no change is ever left unaudited. `change` must not open
/// a transaction of its own (stores offer `…_in` variants for this).
pub fn audited<E: SqlExecutor, T>(
    db: &mut E,
    actor: &str,
    at_ms: i64,
    change: impl FnOnce(&mut E) -> Result<(T, Record), ApiError>,
) -> Result<T, ApiError> {
    in_transaction(db, |tx| {
        let (value, record) = change(tx)?;
        append(tx, actor, at_ms, record)?;
        Ok(value)
    })
}

/// Appends `record` by `actor` at `at_ms`.
pub fn append(
    db: &mut impl SqlExecutor,
    actor: &str,
    at_ms: i64,
    record: Record,
) -> Result<(), AuditError> {
    db.execute(
        "INSERT INTO audit_log (at, actor, action, flag_key, version, before, after, kind, target, org_id) \
         VALUES (?, ?, ?, NULL, 0, ?, ?, ?, ?, ?)",
        &[
            SqlValue::Integer(at_ms),
            SqlValue::Text(actor.to_owned()),
            SqlValue::Text(record.action.to_owned()),
            opt_json(record.before),
            opt_json(record.after),
            SqlValue::Text(record.kind.to_owned()),
            record.target.map_or(SqlValue::Null, SqlValue::Text),
            SqlValue::Text(record.org_id),
        ],
    )
    .map(drop)
    .map_err(|e| AuditError::Storage(e.to_string()))
}

/// What `GET /admin/audit` asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this actor (exact, or the part before ` (token:…)`).
    pub actor: Option<String>,
    /// Only this flag.
    pub flag: Option<String>,
    /// From this time, inclusive (Unix ms).
    pub from_ms: Option<i64>,
    /// Before this time, exclusive (Unix ms).
    pub to_ms: Option<i64>,
    /// Most entries (1–1000, default 100).
    pub limit: i64,
}

impl Filter {
    /// Parses the query parameters `kind`, `actor`, `flag`, `from`, `to`
    /// (Unix ms) and `limit` through `param` (which refuses a value it
    /// cannot read); each bad value is its own 400.
    pub fn parse(
        param: impl Fn(&str) -> Result<Option<String>, ApiError>,
    ) -> Result<Self, ApiError> {
        let time = |name: &str| -> Result<Option<i64>, ApiError> {
            param(name)?
                .map(|s| {
                    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::invalid(
                            name,
                            format!("{name} must be a time in Unix milliseconds"),
                        )
                    })
                })
                .transpose()
        };
        let limit = match param("limit")? {
            None => 100,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", "limit must be an integer from 1 to 1000")
                })?,
        };
        let kind = param("kind")?;
        if let Some(kind) = kind.as_ref().filter(|k| !KINDS.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                "kind",
                format!("unknown kind {kind:?}; one of {}", KINDS.join(", ")),
            ));
        }
        let actor = param("actor")?;
        if actor.as_deref() == Some("") {
            return Err(ApiError::invalid("actor", "actor must not be empty"));
        }
        let (from_ms, to_ms) = (time("from")?, time("to")?);
        if let (Some(from), Some(to)) = (from_ms, to_ms)
            && from >= to
        {
            return Err(ApiError::invalid("to", "to must be after from"));
        }
        Ok(Self {
            kind,
            actor,
            flag: param("flag")?,
            from_ms,
            to_ms,
            limit,
        })
    }
}

/// Entries matching `filter`, newest first.
pub fn query(db: &mut impl SqlExecutor, filter: &Filter) -> Result<Vec<Value>, AuditError> {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    if let Some(kind) = &filter.kind {
        clauses.push("kind = ?");
        params.push(SqlValue::Text(kind.clone()));
    }
    if let Some(actor) = &filter.actor {
        // Actors are stored as `name (token:…)` or `name (session)`; the
        // filter names the person.
        clauses.push("(actor = ? OR actor LIKE ? ESCAPE '\\')");
        params.push(SqlValue::Text(actor.clone()));
        let escaped = actor
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        params.push(SqlValue::Text(format!("{escaped} (%")));
    }
    if let Some(flag) = &filter.flag {
        clauses.push("flag_key = ?");
        params.push(SqlValue::Text(flag.clone()));
    }
    if let Some(from) = filter.from_ms {
        clauses.push("at >= ?");
        params.push(SqlValue::Integer(from));
    }
    if let Some(to) = filter.to_ms {
        clauses.push("at < ?");
        params.push(SqlValue::Integer(to));
    }
    let mut sql =
        "SELECT id, at, actor, action, flag_key, version, before, after, kind, target, org_id \
                   FROM audit_log"
            .to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push(SqlValue::Integer(filter.limit));
    let rows = db
        .execute(&sql, &params)
        .map_err(|e| AuditError::Storage(e.to_string()))?;
    Ok(rows.iter().map(|row| entry_json(row)).collect())
}

fn entry_json(row: &[SqlValue]) -> Value {
    let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
    let text = |i: usize| row.get(i).and_then(SqlValue::as_str);
    let parsed = |i: usize| {
        text(i)
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    let kind = text(8).unwrap_or("flag");
    json!({
        "id": int(0),
        "at": int(1),
        "actor": text(2),
        "action": text(3),
        "kind": kind,
        "target": text(9).or(text(4)),
        "org_id": text(10).unwrap_or(""),
        "flag_key": text(4),
        "version": int(5),
        "before": parsed(6),
        "after": parsed(7),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::test_db::db as test_db;

    /// A change and its audit entry commit together: when the audit insert
    /// fails, the key it would have recorded is not created either.
    #[test]
    fn a_failed_audit_write_rolls_the_change_back() {
        use crate::gateway::admin::NewKey;
        use crate::gateway::keys::KeyLimits;
        use crate::gateway::store::{create_key, get_key};
        let mut db = test_db();
        let new = NewKey {
            name: "k".into(),
            limits: KeyLimits::default(),
            org: None,
            roles: None,
        };
        let create = |db: &mut crate::test_db::TestDb, id: &str| {
            audited(db, "alice", 1, |tx| {
                let row = create_key(tx, id, &format!("dol_sk_{id}"), &new, 1)?;
                Ok((
                    row.clone(),
                    Record::new("key", "create", id).after(row.to_json()),
                ))
            })
        };
        db.fail_on = Some("INSERT INTO audit_log");
        let err = create(&mut db, "key_a").unwrap_err();
        assert_eq!(err.status(), 500, "{err:?}");
        db.fail_on = None;
        assert!(get_key(&mut db, "key_a").unwrap().is_none(), "rolled back");
        // The same change with a working audit log commits both.
        create(&mut db, "key_b").unwrap();
        assert!(get_key(&mut db, "key_b").unwrap().is_some());
        let rows = db
            .execute(
                "SELECT action, target FROM audit_log WHERE kind = 'key'",
                &[],
            )
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                SqlValue::Text("create".into()),
                SqlValue::Text("key_b".into())
            ]]
        );
        // A refused change writes no entry.
        let refused: Result<(), ApiError> = audited(&mut db, "alice", 2, |_| {
            Err(ApiError::new(crate::error::Code::NotFound, "no key"))
        });
        assert_eq!(refused.unwrap_err().status(), 404);
        assert_eq!(
            db.execute("SELECT COUNT(*) FROM audit_log WHERE kind = 'key'", &[])
                .unwrap()[0][0],
            SqlValue::Integer(1)
        );
    }

    fn params(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, ApiError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            Ok(pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()))
        }
    }

    #[test]
    fn append_then_filter_by_kind_actor_and_time() {
        let mut db = test_db();
        append(
            &mut db,
            "ann (token:ab12)",
            1_000,
            Record::new("key", "create", "key_1")
                .after(json!({"name": "web", "key": "dol_sk_secret"})),
        )
        .unwrap();
        append(
            &mut db,
            "bob (session)",
            2_000,
            Record::new("scan", "run", "report"),
        )
        .unwrap();
        append(
            &mut db,
            "ann (token:ab12)",
            3_000,
            Record::new("key", "revoke", "key_1"),
        )
        .unwrap();
        let all = query(&mut db, &Filter::parse(params(&[])).unwrap()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2]["after"], json!({"name": "web", "key": "[redacted]"}));
        assert!(!all[2].to_string().contains("dol_sk_secret"));
        let keys = query(&mut db, &Filter::parse(params(&[("kind", "key")])).unwrap()).unwrap();
        assert_eq!(
            keys.iter()
                .map(|e| e["action"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["revoke", "create"]
        );
        let bob = query(
            &mut db,
            &Filter::parse(params(&[("actor", "bob")])).unwrap(),
        )
        .unwrap();
        assert_eq!(bob.len(), 1);
        assert_eq!(bob[0]["target"], "report");
        let window = Filter::parse(params(&[("from", "1500"), ("to", "3000")])).unwrap();
        let between = query(&mut db, &window).unwrap();
        assert_eq!(between.len(), 1);
        assert_eq!(between[0]["kind"], "scan");
    }

    #[test]
    fn an_actor_filter_with_wildcards_matches_literally() {
        let mut db = test_db();
        append(&mut db, "a_b (session)", 1, Record::new("scan", "run", "x")).unwrap();
        append(&mut db, "axb (session)", 2, Record::new("scan", "run", "y")).unwrap();
        let found = query(
            &mut db,
            &Filter::parse(params(&[("actor", "a_b")])).unwrap(),
        )
        .unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn each_bad_filter_is_its_own_error() {
        for (pairs, field) in [
            (vec![("kind", "nope")], "kind"),
            (vec![("actor", "")], "actor"),
            (vec![("from", "soon")], "from"),
            (vec![("to", "-5")], "to"),
            (vec![("from", "10"), ("to", "10")], "to"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "1001")], "limit"),
        ] {
            let error = Filter::parse(params(&pairs)).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{pairs:?}");
        }
    }

    #[test]
    fn redact_reaches_nested_members() {
        let v = redact(json!({"a": [{"token": "t"}], "Secret": "s", "key": null, "name": "n"}));
        assert_eq!(
            v,
            json!({"a": [{"token": "[redacted]"}], "Secret": "[redacted]", "key": null, "name": "n"})
        );
    }
}
