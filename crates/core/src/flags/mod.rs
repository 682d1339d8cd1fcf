//! Feature flags: flagd flag-definition format evaluation.
//!
//! [`FlagSet::parse`] validates and compiles a flagd document (flags,
//! `$evaluators`, metadata) once into an immutable snapshot; evaluation then
//! runs compiled JsonLogic against an [`EvaluationContext`] without touching
//! the definition JSON again. Time comes in as an argument (`now_unix_secs`,
//! exposed to rules as `$flagd.timestamp`), so evaluation is pure.
//!
//! Semantics follow flagd's in-process evaluator (`@openfeature/flagd-core`
//! and the flagd-testbed gherkin suite): reasons STATIC / TARGETING_MATCH /
//! DEFAULT / DISABLED / ERROR, error codes FLAG_NOT_FOUND, PARSE_ERROR,
//! TYPE_MISMATCH and GENERAL, the custom operators `fractional` (v2
//! bucketing), `sem_ver`, `starts_with` and `ends_with`.

pub mod admin;
mod jsstr;
mod murmur;
pub mod ofrep;
mod ops;
mod semver;
mod set;
pub mod store;
#[cfg(test)]
mod store_tests;

use serde_json::{Map, Value};

pub use murmur::murmur3_x86_32;
pub use set::FlagSet;

/// Why an evaluation produced its value (OpenFeature resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The flag has no targeting: its default variant applies.
    Static,
    /// Targeting chose a variant.
    TargetingMatch,
    /// A pseudo-random split chose the variant. flagd reports fractional
    /// results as TARGETING_MATCH, so this evaluator never produces it; it
    /// exists so callers can map every OpenFeature reason.
    Split,
    /// Targeting made no decision (returned null), or there is no default
    /// variant: the default variant or the caller's default applies.
    Default,
    /// The flag is disabled: the caller's default applies.
    Disabled,
    /// Evaluation failed; see [`Evaluation::error`].
    Error,
}

impl Reason {
    /// The OpenFeature spelling, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes an evaluation can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag with that key in the set.
    FlagNotFound,
    /// The flag's targeting rule could not be compiled.
    ParseError,
    /// The resolved value is not of the requested type.
    TypeMismatch,
    /// A targeting key was required but missing (reserved: flagd's
    /// operators return null instead, so this evaluator does not emit it).
    TargetingKeyMissing,
    /// The evaluation context was unusable (reserved, not emitted).
    InvalidContext,
    /// Anything else: the rule failed at run time or chose a variant the
    /// flag does not define.
    General,
}

impl ErrorCode {
    /// The OpenFeature spelling, e.g. `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The value type a caller asks for in [`FlagSet::evaluate_typed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagType {
    /// JSON boolean.
    Boolean,
    /// JSON string.
    String,
    /// A JSON number with no fractional part (`10`, `10.0`).
    Integer,
    /// Any JSON number.
    Float,
    /// A JSON object (arrays are accepted too, as flagd's `typeof` check does).
    Object,
}

impl FlagType {
    /// Whether `value` satisfies this type.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Integer => match value {
                Value::Number(n) => {
                    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                _ => false,
            },
            FlagType::Float => value.is_number(),
            FlagType::Object => value.is_object() || value.is_array(),
        }
    }
}

/// An evaluation failure: code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    /// The OpenFeature error code.
    pub code: ErrorCode,
    /// What went wrong, for logs.
    pub message: String,
}

/// The outcome of evaluating one flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The resolved value; `None` means "use the caller's default" (disabled
    /// flag, no default variant, or an error).
    pub value: Option<Value>,
    /// The chosen variant name, when a variant was chosen.
    pub variant: Option<String>,
    /// Why this value.
    pub reason: Reason,
    /// Set when `reason` is [`Reason::Error`].
    pub error: Option<FlagError>,
    /// Flag metadata merged over flag-set metadata (flag keys win); the
    /// flag-set metadata alone for FLAG_NOT_FOUND.
    pub metadata: Map<String, Value>,
}

impl Evaluation {
    /// An error result carrying no value.
    fn error(code: ErrorCode, message: String, metadata: Map<String, Value>) -> Self {
        Evaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some(FlagError { code, message }),
            metadata,
        }
    }

    /// The resolved value, or `default` when the evaluation produced none.
    pub fn value_or(&self, default: Value) -> Value {
        self.value.clone().unwrap_or(default)
    }
}

/// The attributes targeting rules see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationContext {
    /// The subject's stable identifier (`targetingKey` in rules; the default
    /// bucketing key of `fractional`).
    pub targeting_key: Option<String>,
    /// Other attributes, visible to rules by name (`{"var": "email"}`).
    pub attributes: Map<String, Value>,
}

impl EvaluationContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the targeting key.
    pub fn with_targeting_key(mut self, key: impl Into<String>) -> Self {
        self.targeting_key = Some(key.into());
        self
    }

    /// Add an attribute.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Build from a JSON object in OpenFeature's flat shape: a string
    /// `targetingKey` member becomes the targeting key, everything else an
    /// attribute.
    pub fn from_map(mut attributes: Map<String, Value>) -> Self {
        let targeting_key = match attributes.remove(ops::TARGETING_KEY) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                // A non-string targetingKey is still visible to rules as-is.
                attributes.insert(ops::TARGETING_KEY.to_owned(), other);
                None
            }
            None => None,
        };
        EvaluationContext {
            targeting_key,
            attributes,
        }
    }
}

/// Why a flag document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The text is not JSON at all.
    #[error("flag definition is not valid JSON: {0}")]
    Json(String),
    /// The JSON does not follow the flagd format; `path` locates the problem
    /// (e.g. `flags.my-flag.defaultVariant`).
    #[error("{path}: {message}")]
    Invalid {
        /// Dotted JSON path of the offending member.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A targeting rule that could not be compiled; the flag evaluates to
/// PARSE_ERROR (as flagd does) instead of failing the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetingProblem {
    /// Dotted JSON path of the rule (or the part of it at fault).
    pub path: String,
    /// What is wrong.
    pub message: String,
}
