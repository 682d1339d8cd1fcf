//! Parsing, compiling and evaluating a flagd flag set.

use std::collections::BTreeMap;

use datalogic_rs::{DataValue, Engine, Logic, bumpalo::Bump};
use serde_json::{Map, Value};

use super::jsstr::js_string;
use super::ops::{self, FLAGD_KEY, Op, TARGETING_KEY};
use super::{
    DefinitionError, ErrorCode, Evaluation, EvaluationContext, FlagType, Reason, TargetingProblem,
};

/// Internal name `cat` is compiled to: datalogic-rs's built-in `cat` cannot
/// be overridden and renders values differently from flagd-core.
const JS_CAT: &str = "$dol_js_cat";

/// `$ref` chains deeper than this are treated as cycles.
const MAX_REF_DEPTH: usize = 32;

/// An immutable, compiled flagd flag set. Cheap to share behind an `Arc`;
/// evaluation takes `&self`.
pub struct FlagSet {
    engine: Engine,
    flags: BTreeMap<String, CompiledFlag>,
    metadata: Map<String, Value>,
    problems: Vec<TargetingProblem>,
}

impl std::fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSet")
            .field("flags", &self.flags.keys().collect::<Vec<_>>())
            .field("metadata", &self.metadata)
            .field("problems", &self.problems)
            .finish()
    }
}

struct CompiledFlag {
    enabled: bool,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    targeting: Targeting,
    metadata: Map<String, Value>,
}

enum Targeting {
    /// Absent, null or `{}`.
    None,
    Compiled(Box<Logic>),
    /// The rule could not be compiled; evaluation yields PARSE_ERROR.
    Invalid(String),
}

/// Where a node of a targeting rule sits, spelled out only when a problem
/// names it: walking a rule builds one of these per node on the stack, where
/// formatting a path string per node was a large share of compiling a flag
/// (which a fresh instance does on every evaluation).
#[derive(Clone, Copy)]
enum RulePath<'a> {
    /// A flag's `targeting` member (`flags.<key>.targeting`).
    Targeting(&'a str),
    /// A shared rule a `$ref` names (`$evaluators.<name>`).
    Evaluator(&'a str),
    /// A member of an object.
    Key(&'a RulePath<'a>, &'a str),
    /// An element of an array.
    Index(&'a RulePath<'a>, usize),
}

impl std::fmt::Display for RulePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RulePath::Targeting(flag_path) => write!(f, "{flag_path}.targeting"),
            RulePath::Evaluator(name) => write!(f, "$evaluators.{name}"),
            RulePath::Key(parent, key) => write!(f, "{parent}.{key}"),
            RulePath::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The JsonLogic engine with flagd's custom operators. `optimize` runs
/// datalogic-rs's optimizer (constant folding, common subexpressions) on
/// each compiled rule: worth it for a set that evaluates many times, not for
/// a one-flag set compiled for a single evaluation, where the passes were
/// most of the compile.
fn engine(optimize: bool) -> Engine {
    Engine::builder()
        .with_constant_folding(optimize)
        .add_operator("fractional", Op(ops::fractional))
        .add_operator(JS_CAT, Op(ops::cat))
        .add_operator("sem_ver", Op(ops::sem_ver))
        .add_operator("starts_with", Op(ops::starts_with))
        .add_operator("ends_with", Op(ops::ends_with))
        .build()
}

impl FlagSet {
    /// Parse and compile a flagd document.
    ///
    /// Structural problems (missing or mistyped members, an unknown state, a
    /// `defaultVariant` not among the variants, mixed variant types,
    /// non-scalar metadata) reject the document with the JSON path of the
    /// problem. A targeting rule that does not compile (unknown operator,
    /// `$ref` to an undefined evaluator) only breaks its own flag, which then
    /// evaluates to PARSE_ERROR like in flagd; see [`FlagSet::problems`].
    pub fn parse(json: &str) -> Result<FlagSet, DefinitionError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| DefinitionError::Json(e.to_string()))?;
        Self::from_value(&doc)
    }

    /// Like [`FlagSet::parse`], from an already-parsed JSON value.
    pub fn from_value(doc: &Value) -> Result<FlagSet, DefinitionError> {
        Self::build(doc, None)
    }

    /// Like [`FlagSet::from_value`], compiling only the flag `key` (the set
    /// then knows no other flag). For one evaluation against a published
    /// document, which was validated whole when it was written: compiling
    /// the one flag gives the same answer at a fraction of the cost.
    pub fn from_value_for(doc: &Value, key: &str) -> Result<FlagSet, DefinitionError> {
        Self::build(doc, Some(key))
    }

    fn build(doc: &Value, only: Option<&str>) -> Result<FlagSet, DefinitionError> {
        let root = doc
            .as_object()
            .ok_or_else(|| invalid("$", "the document must be a JSON object"))?;
        let metadata = match root.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(m) => scalar_map(m, "metadata")?,
        };
        let evaluators = match root.get("$evaluators") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid("$evaluators", "must be an object")),
        };
        let flags_json = match root.get("flags") {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid("flags", "must be an object")),
            None => return Err(invalid("flags", "is required")),
        };
        let engine = engine(only.is_none());
        let mut flags = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, def) in flags_json {
            if only.is_some_and(|only| only != key) {
                continue;
            }
            let path = format!("flags.{key}");
            let flag = compile_flag(&engine, &path, def, &evaluators, &metadata, &mut problems)?;
            flags.insert(key.clone(), flag);
        }
        Ok(FlagSet {
            engine,
            flags,
            metadata,
            problems,
        })
    }

    /// Targeting rules that failed to compile (their flags evaluate to
    /// PARSE_ERROR). Empty for a fully valid document.
    pub fn problems(&self) -> &[TargetingProblem] {
        &self.problems
    }

    /// Flag keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// The variant names `key` declares (in the document's order), or
    /// `None` when there is no such flag.
    pub fn variants(&self, key: &str) -> Option<Vec<String>> {
        self.flags
            .get(key)
            .map(|flag| flag.variants.keys().cloned().collect())
    }

    /// Flag-set level metadata.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Evaluate one flag. `now_unix_secs` is exposed to rules as
    /// `$flagd.timestamp`.
    pub fn evaluate(&self, key: &str, ctx: &EvaluationContext, now_unix_secs: u64) -> Evaluation {
        let Some(flag) = self.flags.get(key) else {
            return Evaluation::error(
                ErrorCode::FlagNotFound,
                format!("flag '{key}' not found"),
                self.metadata.clone(),
            );
        };
        self.evaluate_flag(key, flag, ctx, now_unix_secs)
    }

    /// Evaluate one flag and check that its value has the expected type;
    /// a value of another type becomes TYPE_MISMATCH.
    pub fn evaluate_typed(
        &self,
        key: &str,
        expected: FlagType,
        ctx: &EvaluationContext,
        now_unix_secs: u64,
    ) -> Evaluation {
        let eval = self.evaluate(key, ctx, now_unix_secs);
        match &eval.value {
            Some(v) if !expected.matches(v) => Evaluation::error(
                ErrorCode::TypeMismatch,
                format!("flag '{key}' resolved to {v}, which is not of type {expected:?}"),
                eval.metadata,
            ),
            _ => eval,
        }
    }

    /// Evaluate every enabled flag (disabled flags are left out, as flagd's
    /// bulk evaluation does); results are keyed and sorted by flag key.
    pub fn evaluate_all(
        &self,
        ctx: &EvaluationContext,
        now_unix_secs: u64,
    ) -> BTreeMap<String, Evaluation> {
        self.flags
            .iter()
            .filter(|(_, f)| f.enabled)
            .map(|(k, f)| (k.clone(), self.evaluate_flag(k, f, ctx, now_unix_secs)))
            .collect()
    }

    fn evaluate_flag(
        &self,
        key: &str,
        flag: &CompiledFlag,
        ctx: &EvaluationContext,
        now: u64,
    ) -> Evaluation {
        let meta = || flag.metadata.clone();
        if !flag.enabled {
            return Evaluation {
                value: None,
                variant: None,
                reason: Reason::Disabled,
                error: None,
                metadata: meta(),
            };
        }
        let (variant, reason) = match &flag.targeting {
            Targeting::Invalid(msg) => {
                return Evaluation::error(ErrorCode::ParseError, msg.clone(), meta());
            }
            Targeting::None => (flag.default_variant.clone(), Reason::Static),
            Targeting::Compiled(logic) => match self.run(logic, key, ctx, now) {
                Err(msg) => {
                    return Evaluation::error(
                        ErrorCode::General,
                        format!("error evaluating targeting rule for flag '{key}': {msg}"),
                        meta(),
                    );
                }
                Ok(Value::Null) => (flag.default_variant.clone(), Reason::Default),
                // flagd names the variant with JavaScript's toString, so
                // `true` selects variant "true" and 1 selects "1".
                Ok(v) => (Some(js_string(&v)), Reason::TargetingMatch),
            },
        };
        let Some(variant) = variant else {
            // No decision and no default variant: the caller's default.
            return Evaluation {
                value: None,
                variant: None,
                reason: Reason::Default,
                error: None,
                metadata: meta(),
            };
        };
        match flag.variants.get(&variant) {
            Some(value) => Evaluation {
                value: Some(value.clone()),
                variant: Some(variant),
                reason,
                error: None,
                metadata: meta(),
            },
            None => Evaluation::error(
                ErrorCode::General,
                format!("variant '{variant}' not found in flag with key '{key}'"),
                meta(),
            ),
        }
    }

    fn run(
        &self,
        logic: &Logic,
        key: &str,
        ctx: &EvaluationContext,
        now: u64,
    ) -> Result<Value, String> {
        ARENA.with_borrow_mut(|arena| {
            // Reusing one arena per thread and resetting it keeps evaluation
            // free of a fresh chunk allocation every call.
            arena.reset();
            let data = context_data(arena, key, ctx, now);
            self.engine
                .evaluate(logic, data, arena)
                .map(|v| v.to_serde_value())
                .map_err(|e| e.to_string())
        })
    }
}

thread_local! {
    /// Scratch arena for targeting evaluation (reset before each use).
    static ARENA: std::cell::RefCell<Bump> = std::cell::RefCell::new(Bump::new());
}

/// The data a rule sees, built straight into the arena from the borrowed
/// context (no clone of the caller's attributes): the attributes, then
/// `targetingKey`, then `$flagd`. flagd overwrites caller-supplied
/// `$flagd` (and `targetingKey` when the context has one), so those
/// attributes are left out.
fn context_data<'a>(
    arena: &'a Bump,
    key: &'a str,
    ctx: &'a EvaluationContext,
    now: u64,
) -> &'a DataValue<'a> {
    let overridden =
        |name: &str| name == FLAGD_KEY || (name == TARGETING_KEY && ctx.targeting_key.is_some());
    let flagd: &[(&str, DataValue<'_>)] = arena.alloc_slice_copy(&[
        ("flagKey", DataValue::String(key)),
        (
            "timestamp",
            DataValue::from_serde_value_in(&Value::from(now), arena),
        ),
    ]);
    let mut fields: Vec<(&str, DataValue<'_>)> = ctx
        .attributes
        .iter()
        .filter(|(name, _)| !overridden(name))
        .map(|(name, value)| (name.as_str(), DataValue::from_serde_value_in(value, arena)))
        .collect();
    if let Some(targeting_key) = &ctx.targeting_key {
        fields.push((TARGETING_KEY, DataValue::String(targeting_key)));
    }
    fields.push((FLAGD_KEY, DataValue::Object(flagd)));
    arena.alloc(DataValue::Object(arena.alloc_slice_copy(&fields)))
}

fn scalar_map(v: &Value, path: &str) -> Result<Map<String, Value>, DefinitionError> {
    let m = v
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object"))?;
    for (k, val) in m {
        if !(val.is_string() || val.is_number() || val.is_boolean()) {
            return Err(invalid(
                format!("{path}.{k}"),
                "metadata values must be strings, numbers or booleans",
            ));
        }
    }
    Ok(m.clone())
}

fn compile_flag(
    engine: &Engine,
    path: &str,
    def: &Value,
    evaluators: &Map<String, Value>,
    set_metadata: &Map<String, Value>,
    problems: &mut Vec<TargetingProblem>,
) -> Result<CompiledFlag, DefinitionError> {
    let def = def
        .as_object()
        .ok_or_else(|| invalid(path, "a flag must be an object"))?;
    let enabled = match def.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => true,
        Some(Value::String(s)) if s == "DISABLED" => false,
        Some(other) => {
            return Err(invalid(
                format!("{path}.state"),
                format!("must be \"ENABLED\" or \"DISABLED\", got {other}"),
            ));
        }
        None => return Err(invalid(format!("{path}.state"), "is required")),
    };
    let variants = match def.get("variants") {
        Some(Value::Object(m)) if !m.is_empty() => m.clone(),
        Some(Value::Object(_)) => {
            return Err(invalid(
                format!("{path}.variants"),
                "must define at least one variant",
            ));
        }
        Some(_) => return Err(invalid(format!("{path}.variants"), "must be an object")),
        None => return Err(invalid(format!("{path}.variants"), "is required")),
    };
    check_variant_types(path, &variants)?;
    let default_variant = match def.get("defaultVariant") {
        // flagd treats an empty name like a missing one.
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if variants.contains_key(s) => Some(s.clone()),
        Some(Value::String(s)) => {
            return Err(invalid(
                format!("{path}.defaultVariant"),
                format!("variant \"{s}\" is not defined in variants"),
            ));
        }
        Some(_) => {
            return Err(invalid(
                format!("{path}.defaultVariant"),
                "must be a string or null",
            ));
        }
    };
    let mut metadata = set_metadata.clone();
    match def.get("metadata") {
        None | Some(Value::Null) => {}
        Some(m) => metadata.extend(scalar_map(m, &format!("{path}.metadata"))?),
    }
    let tpath = RulePath::Targeting(path);
    let targeting = match def.get("targeting") {
        None | Some(Value::Null) => Targeting::None,
        Some(Value::Object(m)) if m.is_empty() => Targeting::None,
        Some(rule @ Value::Object(_)) => {
            let prepare = PrepareRule {
                engine,
                evaluators,
                unknown_operator: None,
            };
            match prepare.run(rule, &tpath).and_then(|prepared| {
                engine.compile(&prepared).map_err(|e| TargetingProblem {
                    path: tpath.to_string(),
                    message: e.to_string(),
                })
            }) {
                Ok(logic) => Targeting::Compiled(Box::new(logic)),
                Err(problem) => {
                    let msg = format!("{}: {}", problem.path, problem.message);
                    problems.push(problem);
                    Targeting::Invalid(msg)
                }
            }
        }
        Some(_) => return Err(invalid(tpath.to_string(), "must be a JsonLogic object")),
    };
    Ok(CompiledFlag {
        enabled,
        variants,
        default_variant,
        targeting,
        metadata,
    })
}

/// flagd's schema allows one variant type per flag: all booleans, all
/// strings, all numbers or all objects.
fn check_variant_types(path: &str, variants: &Map<String, Value>) -> Result<(), DefinitionError> {
    let kind = |v: &Value| match v {
        Value::Bool(_) => Some("boolean"),
        Value::String(_) => Some("string"),
        Value::Number(_) => Some("number"),
        Value::Object(_) => Some("object"),
        Value::Null | Value::Array(_) => None,
    };
    let mut first: Option<(&str, &str)> = None;
    let vpath = |name: &str| format!("{path}.variants.{name}");
    for (name, value) in variants {
        let Some(k) = kind(value) else {
            return Err(invalid(
                vpath(name),
                "must be a boolean, string, number or object",
            ));
        };
        match first {
            None => first = Some((name, k)),
            Some((other, fk)) if fk != k => {
                return Err(invalid(
                    vpath(name),
                    format!(
                        "is a {k} but variant \"{other}\" is a {fk}; all variants must share one type"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// One pass over a targeting rule before it is compiled: every
/// `{"$ref": name}` replaced by the named `$evaluators` rule, every `cat`
/// routed to the JavaScript-faithful implementation, and the operators
/// checked. flagd rejects rules that name an operator it does not know, so
/// each operator object (single-key object) is checked against the engine's
/// operators and an unknown one is a PARSE_ERROR rather than silently
/// treated as data. One walk instead of three (resolve, check, rename) was
/// a large share of compiling a flag, which a fresh instance does on every
/// evaluation.
struct PrepareRule<'a> {
    engine: &'a Engine,
    evaluators: &'a Map<String, Value>,
    /// The first unknown operator met (in the order a check of the resolved
    /// rule meets them). A `$ref` problem is reported before it.
    unknown_operator: Option<TargetingProblem>,
}

impl PrepareRule<'_> {
    /// The rule ready to compile, or its first problem.
    fn run(mut self, rule: &Value, path: &RulePath<'_>) -> Result<Value, TargetingProblem> {
        let prepared = self.node(rule, path, Some(path), 0)?;
        match self.unknown_operator {
            Some(problem) => Err(problem),
            None => Ok(prepared),
        }
    }

    /// `ref_path` names the node where it is written (inside a shared rule
    /// after a `$ref`); `check_path` where it sits once resolved, or `None`
    /// where the operator check does not look (past the first member of an
    /// object with several).
    fn node(
        &mut self,
        rule: &Value,
        ref_path: &RulePath<'_>,
        check_path: Option<&RulePath<'_>>,
        depth: usize,
    ) -> Result<Value, TargetingProblem> {
        if depth > MAX_REF_DEPTH {
            return Err(TargetingProblem {
                path: ref_path.to_string(),
                message: "$ref chain too deep (cyclic $evaluators?)".to_owned(),
            });
        }
        match rule {
            Value::Object(m) => {
                if m.len() == 1
                    && let Some(Value::String(name)) = m.get("$ref")
                {
                    let target = self.evaluators.get(name).ok_or_else(|| TargetingProblem {
                        path: ref_path.to_string(),
                        message: format!("$ref \"{name}\" is not defined in $evaluators"),
                    })?;
                    return self.node(target, &RulePath::Evaluator(name), check_path, depth + 1);
                }
                let single = m.len() == 1;
                if let (Some(at), Some((op, _))) = (check_path, m.iter().next())
                    && single
                    && self.unknown_operator.is_none()
                    && !self.engine.has_custom_operator(op)
                    && !self.engine.builtin_operator_names().any(|b| b == op)
                {
                    self.unknown_operator = Some(TargetingProblem {
                        path: at.to_string(),
                        message: format!("unknown operator \"{op}\""),
                    });
                }
                let mut out = Map::new();
                for (i, (k, v)) in m.iter().enumerate() {
                    let child_check = check_path.filter(|_| i == 0).map(|p| RulePath::Key(p, k));
                    let prepared =
                        self.node(v, &RulePath::Key(ref_path, k), child_check.as_ref(), depth)?;
                    let k = if single && k == "cat" {
                        JS_CAT.to_owned()
                    } else {
                        k.clone()
                    };
                    out.insert(k, prepared);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let child_check = check_path.map(|p| RulePath::Index(p, i));
                    self.node(
                        v,
                        &RulePath::Index(ref_path, i),
                        child_check.as_ref(),
                        depth,
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::admin::SEED_DOCUMENT;
    use crate::flags::ofrep::parse_context;

    #[test]
    fn a_rule_problem_names_the_json_path_of_the_node_at_fault() {
        let doc = r#"{
          "$evaluators": {"shared": {"and": [true, {"$ref": "missing"}]}},
          "flags": {
            "op": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                   "targeting": {"if": [{"in": ["x", {"nope": [1]}]}, "a", null]}},
            "ref": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                    "targeting": {"or": [false, {"$ref": "shared"}]}},
            "zboth": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                      "targeting": {"and": [{"nope": 1}, {"$ref": "missing"}]}}
          }
        }"#;
        let set = FlagSet::parse(doc).unwrap();
        let problems: Vec<(&str, &str)> = set
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "flags.op.targeting.if[0].in[1]",
                    "unknown operator \"nope\""
                ),
                (
                    "$evaluators.shared.and[1]",
                    "$ref \"missing\" is not defined in $evaluators"
                ),
                // A rule with both problems names the `$ref`.
                (
                    "flags.zboth.targeting.and[1]",
                    "$ref \"missing\" is not defined in $evaluators"
                ),
            ]
        );
    }

    #[test]
    fn compiling_one_flag_gives_the_whole_sets_answers() {
        let doc: Value = serde_json::from_str(SEED_DOCUMENT).unwrap();
        let whole = FlagSet::from_value(&doc).unwrap();
        let contexts = [
            r#"{"targetingKey":"user-1"}"#,
            r#"{"targetingKey":"user-2","keyId":"k1","model":"gpt-4o","email":"a@example.com"}"#,
            r#"{"targetingKey":"someone-else","tier":"pro","version":"2.1.0"}"#,
        ];
        let keys: Vec<String> = whole.keys().map(str::to_owned).collect();
        assert!(!keys.is_empty());
        for key in &keys {
            let one = FlagSet::from_value_for(&doc, key).unwrap();
            assert_eq!(one.keys().collect::<Vec<_>>(), [key.as_str()]);
            for context in contexts {
                let ctx = parse_context(context).unwrap();
                assert_eq!(
                    one.evaluate(key, &ctx, 1_800_000_000),
                    whole.evaluate(key, &ctx, 1_800_000_000),
                    "{key} with {context}"
                );
            }
        }
        // A flag the document lacks is not found either way.
        let ctx = parse_context(r#"{"targetingKey":"u"}"#).unwrap();
        let missing = FlagSet::from_value_for(&doc, "no-such-flag").unwrap();
        assert_eq!(
            missing.evaluate("no-such-flag", &ctx, 0),
            whole.evaluate("no-such-flag", &ctx, 0)
        );
    }
}
