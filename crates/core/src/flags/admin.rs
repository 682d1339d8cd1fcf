//! The admin side of flags: the stored state (flagd document + kill
//! switches), validated edits, the document evaluations run against, and the
//! audit entries each edit produces.
//!
//! Every edit is a pure function from the current [`FlagState`] to a new one
//! plus its [`AuditEntry`]s, or an [`AdminError`] that leaves nothing changed;
//! the component stores the result as a new version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{DefinitionError, FlagSet};

/// The seed flag set (`flags/seed.json`), loaded when storage is empty.
pub const SEED_DOCUMENT: &str = include_str!("../../../../flags/seed.json");

/// Flag metadata key set on killed flags in the evaluated document.
pub const KILLED_METADATA: &str = "dolKilled";

/// A kill switch on one flag: everyone gets `variant` (the flag's default
/// variant when it was killed, or the one named), or the caller's code
/// default when that is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    /// The variant served to everyone; `None` = the caller's code default.
    pub variant: Option<String>,
    /// When (Unix epoch milliseconds).
    pub at: i64,
    /// Who.
    pub actor: String,
}

/// Everything stored for one version: the document as imported and edited,
/// and the kill switches by flag key.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagState {
    /// The flagd document (a JSON object with `flags`).
    pub document: Value,
    /// Kill switches by flag key.
    pub kills: BTreeMap<String, Kill>,
}

/// One append-only audit record (without id, time, actor and version,
/// which the component adds when it stores it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// `import`, `put`, `delete`, `kill`, `unkill` or `seed`.
    pub action: &'static str,
    /// The flag concerned; `None` for document-level changes (metadata,
    /// `$evaluators`).
    pub flag_key: Option<String>,
    /// State before (flag definition, kill, or document-level members).
    pub before: Option<Value>,
    /// State after.
    pub after: Option<Value>,
}

/// Why an admin edit was refused. Nothing is stored when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The request body is not JSON (or not the expected shape).
    Json(String),
    /// The definition is not valid flagd; `path` locates the problem.
    Invalid {
        /// Dotted JSON path, e.g. `flags.x.defaultVariant`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No flag with that key.
    NotFound(String),
    /// The edit conflicts with the current state (e.g. unkill of a flag
    /// that is not killed).
    Conflict(String),
}

impl AdminError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            AdminError::Json(_) | AdminError::Invalid { .. } => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
        }
    }

    /// The JSON error body `{"error": {"code", "message", "field"?}}`
    /// ([`crate::error::ApiError::to_dol`]; `field` is the JSON path).
    pub fn body(&self) -> Value {
        crate::error::ApiError::from(self.clone()).to_dol()
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl From<DefinitionError> for AdminError {
    fn from(err: DefinitionError) -> Self {
        match err {
            DefinitionError::Json(m) => AdminError::Json(m),
            DefinitionError::Invalid { path, message } => AdminError::Invalid { path, message },
        }
    }
}

/// Parses a request body as JSON.
pub fn parse_body(body: &[u8]) -> Result<Value, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::Json(format!("body is not JSON: {e}")))
}

/// Checks that `doc` is a complete, valid flagd document: structure, and
/// every targeting rule compiles (a rule that would evaluate to PARSE_ERROR
/// is refused here rather than stored).
pub fn validate_document(doc: &Value) -> Result<FlagSet, AdminError> {
    let set = FlagSet::from_value(doc)?;
    if let Some(p) = set.problems().first() {
        return Err(invalid(p.path.clone(), p.message.clone()));
    }
    Ok(set)
}

fn flags_of(doc: &Value) -> Map<String, Value> {
    doc.get("flags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Document-level members other than `flags` (metadata, `$evaluators`, …).
fn header_of(doc: &Value) -> Value {
    let mut m = doc.as_object().cloned().unwrap_or_default();
    m.remove("flags");
    Value::Object(m)
}

/// Refuses a flag key the per-flag routes could not name (`path` is where
/// the key was given: `key` for a route's path, `flags.<key>` in an import).
fn check_key(key: &str, path: impl FnOnce() -> String) -> Result<(), AdminError> {
    if key.is_empty() || key.len() > 256 || key.chars().any(|c| c.is_control() || c == '/') {
        return Err(invalid(
            path(),
            "flag keys are 1-256 characters without '/' or control characters",
        ));
    }
    Ok(())
}

/// Refuses a flag whose `fractional` targeting names, as a literal bucket, a
/// variant the flag does not have: it was stored, and every user hashed into
/// that bucket then got an evaluation error instead of a variant. Checked
/// where flags are written (a single PUT, an import), not where a stored
/// document is compiled, so a set stored before keeps publishing.
fn check_fractional_variants(key: &str, def: &Value) -> Result<(), AdminError> {
    let (Some(variants), Some(targeting)) = (
        def.get("variants").and_then(Value::as_object),
        def.get("targeting"),
    ) else {
        return Ok(());
    };
    fractional_buckets_known(targeting, &format!("flags.{key}.targeting"), variants)
}

fn fractional_buckets_known(
    node: &Value,
    path: &str,
    variants: &Map<String, Value>,
) -> Result<(), AdminError> {
    match node {
        Value::Object(members) => {
            for (name, value) in members {
                let here = format!("{path}.{name}");
                if let (true, Value::Array(args)) = (name == "fractional", value) {
                    for (index, bucket) in args.iter().enumerate() {
                        let Some(Value::String(variant)) =
                            bucket.as_array().and_then(|b| b.first())
                        else {
                            continue;
                        };
                        if !variants.contains_key(variant) {
                            let known: Vec<&str> = variants.keys().map(String::as_str).collect();
                            return Err(invalid(
                                format!("{here}[{index}][0]"),
                                format!(
                                    "fractional bucket {variant:?} is not a variant of the flag (variants: {})",
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                }
                fractional_buckets_known(value, &here, variants)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            fractional_buckets_known(item, &format!("{path}[{index}]"), variants)
        }),
        _ => Ok(()),
    }
}

impl FlagState {
    /// The seed state (`flags/seed.json`, nothing killed).
    pub fn seed() -> Result<FlagState, AdminError> {
        let document = parse_body(SEED_DOCUMENT.as_bytes())?;
        validate_document(&document)?;
        Ok(FlagState {
            document,
            kills: BTreeMap::new(),
        })
    }

    /// Rebuilds a state from its stored columns (document and kills JSON).
    pub fn from_stored(document: &str, kills: &str) -> Result<FlagState, AdminError> {
        let document = parse_body(document.as_bytes())?;
        let kills = serde_json::from_str(kills)
            .map_err(|e| AdminError::Json(format!("stored kills: {e}")))?;
        Ok(FlagState { document, kills })
    }

    /// The kills column as JSON text.
    pub fn kills_json(&self) -> String {
        serde_json::to_value(&self.kills)
            .unwrap_or_else(|_| json!({}))
            .to_string()
    }

    /// The document evaluations run against: each killed flag loses its
    /// targeting, serves its kill variant as default variant, and carries
    /// `dolKilled: true` in its metadata.
    pub fn effective_document(&self) -> Value {
        let mut doc = self.document.clone();
        if let Some(flags) = doc.get_mut("flags").and_then(Value::as_object_mut) {
            for (key, kill) in &self.kills {
                let Some(flag) = flags.get_mut(key).and_then(Value::as_object_mut) else {
                    continue;
                };
                flag.remove("targeting");
                flag.insert(
                    "defaultVariant".to_owned(),
                    kill.variant.clone().map_or(Value::Null, Value::String),
                );
                let meta = flag
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(KILLED_METADATA.to_owned(), Value::Bool(true));
                }
            }
        }
        doc
    }

    /// Compiles the effective document.
    pub fn compile(&self) -> Result<FlagSet, AdminError> {
        validate_document(&self.effective_document())
    }

    /// One flag's definition, or `None`.
    pub fn flag(&self, key: &str) -> Option<&Value> {
        self.document.get("flags")?.get(key)
    }

    /// The admin view of one flag: `{"key", "flag", "killed"}`.
    pub fn flag_view(&self, key: &str) -> Result<Value, AdminError> {
        let flag = self
            .flag(key)
            .ok_or_else(|| AdminError::NotFound(key.to_owned()))?;
        Ok(json!({ "key": key, "flag": flag, "killed": self.kills.get(key) }))
    }

    /// Replaces the whole document (import). Kills of flags that still exist
    /// are kept; audit entries name each added, changed or removed flag and
    /// any document-level change.
    pub fn import(&self, doc: Value) -> Result<(FlagState, Vec<AuditEntry>), AdminError> {
        validate_document(&doc)?;
        let new_flags = flags_of(&doc);
        // The same keys a single-flag PUT takes: a flag stored under any
        // other could be changed or deleted only by importing the whole set.
        for (key, def) in &new_flags {
            check_key(key, || format!("flags.{}", key.escape_debug()))?;
            check_fractional_variants(key, def)?;
        }
        let kills: BTreeMap<String, Kill> = self
            .kills
            .iter()
            .filter(|(k, _)| new_flags.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let next = FlagState {
            document: doc,
            kills,
        };
        next.check_kills()?;
        let mut audit = Vec::new();
        let (old_header, new_header) = (header_of(&self.document), header_of(&next.document));
        if old_header != new_header {
            audit.push(AuditEntry {
                action: "import",
                flag_key: None,
                before: Some(old_header),
                after: Some(new_header),
            });
        }
        let old_flags = flags_of(&self.document);
        let mut keys: Vec<&String> = old_flags.keys().chain(new_flags.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (before, after) = (old_flags.get(key), new_flags.get(key));
            if before != after {
                audit.push(AuditEntry {
                    action: "import",
                    flag_key: Some(key.clone()),
                    before: before.cloned(),
                    after: after.cloned(),
                });
            }
        }
        Ok((next, audit))
    }

    /// Creates or replaces one flag. A kill on it stays in force.
    pub fn put_flag(&self, key: &str, def: Value) -> Result<(FlagState, AuditEntry), AdminError> {
        check_key(key, || "key".to_owned())?;
        check_fractional_variants(key, &def)?;
        let mut doc = self.document.clone();
        let Some(flags) = doc.get_mut("flags").and_then(Value::as_object_mut) else {
            return Err(invalid("flags", "the stored document has no flags object"));
        };
        flags.insert(key.to_owned(), def.clone());
        // Validate the flag alone first so paths name it even when another
        // stored flag would also fail.
        validate_document(
            &json!({ "flags": { key: def }, "$evaluators": self.document.get("$evaluators").cloned().unwrap_or(Value::Null) }),
        )?;
        validate_document(&doc)?;
        let next = FlagState {
            document: doc,
            kills: self.kills.clone(),
        };
        next.check_kills()?;
        let entry = AuditEntry {
            action: "put",
            flag_key: Some(key.to_owned()),
            before: self.flag(key).cloned(),
            after: Some(def),
        };
        Ok((next, entry))
    }

    /// Deletes one flag (and its kill).
    pub fn delete_flag(&self, key: &str) -> Result<(FlagState, AuditEntry), AdminError> {
        let before = self
            .flag(key)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(key.to_owned()))?;
        let mut doc = self.document.clone();
        if let Some(flags) = doc.get_mut("flags").and_then(Value::as_object_mut) {
            flags.remove(key);
        }
        let mut kills = self.kills.clone();
        kills.remove(key);
        let next = FlagState {
            document: doc,
            kills,
        };
        let entry = AuditEntry {
            action: "delete",
            flag_key: Some(key.to_owned()),
            before: Some(before),
            after: None,
        };
        Ok((next, entry))
    }

    /// Kills a flag: everyone gets `variant`, or the flag's default variant
    /// when `None` (or the caller's code default when it has none).
    pub fn kill(
        &self,
        key: &str,
        variant: Option<String>,
        at: i64,
        actor: &str,
    ) -> Result<(FlagState, AuditEntry), AdminError> {
        let flag = self
            .flag(key)
            .ok_or_else(|| AdminError::NotFound(key.to_owned()))?;
        let variant = match variant {
            Some(v) => {
                if flag.get("variants").and_then(|vs| vs.get(&v)).is_none() {
                    return Err(invalid(
                        "variant",
                        format!("flag '{key}' has no variant '{v}'"),
                    ));
                }
                Some(v)
            }
            None => flag
                .get("defaultVariant")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        };
        let kill = Kill {
            variant,
            at,
            actor: actor.to_owned(),
        };
        let mut kills = self.kills.clone();
        let before = kills.insert(key.to_owned(), kill.clone());
        let next = FlagState {
            document: self.document.clone(),
            kills,
        };
        next.compile()?;
        let entry = AuditEntry {
            action: "kill",
            flag_key: Some(key.to_owned()),
            before: before.map(|k| json!({ "killed": k })),
            after: Some(json!({ "killed": kill })),
        };
        Ok((next, entry))
    }

    /// Lifts a flag's kill switch.
    pub fn unkill(&self, key: &str) -> Result<(FlagState, AuditEntry), AdminError> {
        if self.flag(key).is_none() {
            return Err(AdminError::NotFound(key.to_owned()));
        }
        let mut kills = self.kills.clone();
        let Some(before) = kills.remove(key) else {
            return Err(AdminError::Conflict(format!("flag '{key}' is not killed")));
        };
        let next = FlagState {
            document: self.document.clone(),
            kills,
        };
        let entry = AuditEntry {
            action: "unkill",
            flag_key: Some(key.to_owned()),
            before: Some(json!({ "killed": before })),
            after: Some(json!({ "killed": null })),
        };
        Ok((next, entry))
    }

    /// Every kill must name a variant its flag still defines.
    fn check_kills(&self) -> Result<(), AdminError> {
        for (key, kill) in &self.kills {
            if let Some(v) = &kill.variant
                && self
                    .flag(key)
                    .and_then(|f| f.get("variants"))
                    .and_then(|vs| vs.get(v))
                    .is_none()
            {
                return Err(invalid(
                    format!("flags.{key}.variants"),
                    format!(
                        "the flag is killed to variant '{v}', which must stay defined (unkill it first)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Parses the optional kill request body `{"variant": "off"}` (empty body =
/// the flag's default variant).
pub fn parse_kill_body(body: &[u8]) -> Result<Option<String>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match parse_body(body)? {
        Value::Object(m) => match m.get("variant") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid("variant", "must be a string")),
        },
        _ => Err(AdminError::Json(
            "body must be a JSON object like {\"variant\": \"off\"}".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::flags::{EvaluationContext, Reason};

    fn seed() -> FlagState {
        FlagState::seed().unwrap()
    }

    #[test]
    fn seed_models_the_rollouts() {
        let state = seed();
        let set = state.compile().unwrap();
        let keys: Vec<&str> = set.keys().collect();
        assert_eq!(
            keys,
            [
                "beta_features",
                "complete_context",
                "comprehensive_engines",
                "generation_experiment",
                "generation_pipeline",
                "genre_engines"
            ]
        );
        let (mut genre, mut comprehensive, mut treatment, mut eligible) = (0, 0, 0, 0);
        for i in 0..10_000 {
            let ctx = EvaluationContext::new()
                .with_targeting_key(format!("user-{i}"))
                .with("maturityPhase", ["crawl", "walk", "run", "fly"][i % 4])
                .with("orgId", format!("org-{}", i % 50));
            if set.evaluate("genre_engines", &ctx, 0).value == Some(json!(true)) {
                genre += 1;
            }
            if set.evaluate("comprehensive_engines", &ctx, 0).value == Some(json!(true)) {
                comprehensive += 1;
            }
            let beta = set.evaluate("beta_features", &ctx, 0);
            assert_eq!(beta.reason, Reason::Disabled);
            let ab = set.evaluate("generation_experiment", &ctx, 0);
            if i % 4 == 0 {
                assert_eq!(ab.reason, Reason::Default, "crawl is not targeted");
                assert_eq!(ab.value, Some(json!("control")));
            } else {
                eligible += 1;
                if ab.value == Some(json!("treatment")) {
                    treatment += 1;
                }
            }
        }
        assert_eq!(comprehensive, 10_000);
        assert!((8_800..9_200).contains(&genre), "{genre}");
        let share = f64::from(treatment) / f64::from(eligible);
        assert!((0.08..0.12).contains(&share), "{share}");
        // Excluded orgs always get control, whatever their bucket.
        for i in 0..500 {
            let ctx = EvaluationContext::new()
                .with_targeting_key(format!("user-{i}"))
                .with("maturityPhase", "run")
                .with("orgId", "org-legal-hold");
            let ab = set.evaluate("generation_experiment", &ctx, 0);
            assert_eq!(ab.value, Some(json!("control")));
            assert_eq!(ab.reason, Reason::TargetingMatch);
        }
    }

    #[test]
    fn kill_serves_the_default_variant_and_survives_put() {
        let state = seed();
        let (killed, entry) = state.kill("genre_engines", None, 5, "alice").unwrap();
        assert_eq!(entry.action, "kill");
        let set = killed.compile().unwrap();
        for i in 0..200 {
            let ctx = EvaluationContext::new().with_targeting_key(format!("u{i}"));
            let e = set.evaluate("genre_engines", &ctx, 0);
            assert_eq!(e.value, Some(json!(false)));
            assert_eq!(e.reason, Reason::Static);
            assert_eq!(e.metadata[KILLED_METADATA], true);
        }
        // A PUT of the flag keeps the kill.
        let def = killed.flag("genre_engines").unwrap().clone();
        let (put, _) = killed.put_flag("genre_engines", def).unwrap();
        assert!(put.kills.contains_key("genre_engines"));
        assert_eq!(
            put.flag_view("genre_engines").unwrap()["killed"]["actor"],
            "alice"
        );
        // A PUT that drops the kill variant is refused, naming the path.
        let bad = json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
        match put.put_flag("genre_engines", bad) {
            Err(AdminError::Invalid { path, .. }) => {
                assert_eq!(path, "flags.genre_engines.variants");
            }
            other => panic!("{other:?}"),
        }
        let (back, entry) = put.unkill("genre_engines").unwrap();
        assert_eq!(entry.action, "unkill");
        assert!(back.kills.is_empty());
        assert_eq!(back.document, state.document);
        assert!(matches!(
            back.unkill("genre_engines"),
            Err(AdminError::Conflict(_))
        ));
        assert!(matches!(
            back.kill("nope", None, 0, "a"),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            back.kill("genre_engines", Some("zzz".into()), 0, "a"),
            Err(AdminError::Invalid { .. })
        ));
        // Kill to a named variant.
        let (on, _) = back
            .kill("genre_engines", Some("on".into()), 0, "a")
            .unwrap();
        let e = on
            .compile()
            .unwrap()
            .evaluate("genre_engines", &EvaluationContext::new(), 0);
        assert_eq!(e.value, Some(json!(true)));
    }

    #[test]
    fn edits_validate_and_name_paths() {
        let state = seed();
        let bad = json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"});
        match state.put_flag("x", bad) {
            Err(AdminError::Invalid { path, .. }) => assert_eq!(path, "flags.x.defaultVariant"),
            other => panic!("{other:?}"),
        }
        let broken = json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                            "targeting": {"no_such_op": []}});
        match state.put_flag("x", broken) {
            Err(AdminError::Invalid { path, .. }) => assert!(path.starts_with("flags.x"), "{path}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            state.import(json!({"flags": 3})),
            Err(AdminError::Invalid { .. })
        ));
        assert!(matches!(
            state.delete_flag("nope"),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            state.put_flag("a/b", json!({})),
            Err(AdminError::Invalid { .. })
        ));
        assert_eq!(AdminError::NotFound("k".into()).status(), 404);
        assert_eq!(
            AdminError::Invalid {
                path: "p".into(),
                message: "m".into()
            }
            .body()["error"]["field"],
            "p"
        );
    }

    #[test]
    fn import_diffs_per_flag() {
        let state = seed();
        let (killed, _) = state.kill("genre_engines", None, 1, "a").unwrap();
        let mut doc = state.document.clone();
        let flags = doc["flags"].as_object_mut().unwrap();
        flags.remove("beta_features");
        flags.insert(
            "new_flag".into(),
            json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}),
        );
        doc["metadata"]["version"] = json!("seed-2");
        let (next, audit) = killed.import(doc).unwrap();
        let summary: Vec<(Option<&str>, bool, bool)> = audit
            .iter()
            .map(|e| (e.flag_key.as_deref(), e.before.is_some(), e.after.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                (None, true, true),
                (Some("beta_features"), true, false),
                (Some("new_flag"), false, true)
            ]
        );
        assert!(
            next.kills.contains_key("genre_engines"),
            "kills survive import"
        );
        let (same, audit) = next.import(next.document.clone()).unwrap();
        assert!(audit.is_empty());
        assert_eq!(same, next);
        let (deleted, _) = next.delete_flag("genre_engines").unwrap();
        assert!(deleted.kills.is_empty());
    }

    #[test]
    fn import_refuses_the_keys_a_single_flag_put_refuses() {
        let flag = json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"});
        for (key, path) in [
            ("", "flags."),
            ("a b/c", "flags.a b/c"),
            ("x\u{0}", "flags.x\\0"),
            (&"k".repeat(257), ""),
        ] {
            let mut doc = seed().document.clone();
            doc["flags"][key] = flag.clone();
            let err = seed().import(doc).unwrap_err();
            let AdminError::Invalid { path: got, message } = &err else {
                panic!("{key:?}: {err:?}");
            };
            if !path.is_empty() {
                assert_eq!(got, path);
            }
            assert!(
                message.contains("flag keys are 1-256 characters"),
                "{message}"
            );
            assert!(seed().put_flag(key, flag.clone()).is_err(), "{key:?}");
        }
    }

    #[test]
    fn a_fractional_bucket_must_name_a_variant_of_the_flag() {
        let flag = |buckets: Value| {
            json!({"state": "ENABLED", "variants": {"on": true, "off": false},
                   "defaultVariant": "off",
                   "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]},
                                        {"fractional": buckets}, null]}})
        };
        let err = seed()
            .put_flag("f", flag(json!([["-1", 50], ["off", 50]])))
            .unwrap_err();
        let AdminError::Invalid { path, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, "flags.f.targeting.if[1].fractional[0][0]");
        assert!(
            message.contains("\"-1\" is not a variant of the flag (variants: off, on)"),
            "{message}"
        );
        // The same in an import.
        let mut doc = seed().document.clone();
        doc["flags"]["f"] = flag(json!([["on", 50], ["of", 50]]));
        assert!(
            matches!(seed().import(doc), Err(AdminError::Invalid { path, .. })
            if path == "flags.f.targeting.if[1].fractional[1][0]")
        );
        // Known names, a bucketing expression first and one-element buckets pass.
        seed()
            .put_flag("f", flag(json!([{"var": "email"}, ["on", 50], ["off"]])))
            .unwrap();
    }

    #[test]
    fn stored_round_trip_and_kill_bodies() {
        let (state, _) = seed().kill("genre_engines", None, 7, "a").unwrap();
        let back =
            FlagState::from_stored(&state.document.to_string(), &state.kills_json()).unwrap();
        assert_eq!(back, state);
        assert_eq!(parse_kill_body(b"").unwrap(), None);
        assert_eq!(
            parse_kill_body(br#"{"variant":"on"}"#).unwrap(),
            Some("on".into())
        );
        assert!(parse_kill_body(b"[").is_err());
        assert!(parse_kill_body(br#"{"variant":1}"#).is_err());
    }
}
