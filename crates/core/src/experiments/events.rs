//! `POST /v1/events` bodies: parsing and limits. Variants are resolved in
//! [`super::attribution`].
//!
//! Convention: a client sends an event named [`EXPOSURE_EVENT`] when it shows
//! a flag's variant to a user; any event for the flag makes its targeting key
//! a unit of the experiments on that flag, so exposure is what counts a user
//! who never converts.

use serde_json::{Map, Value};
use thiserror::Error;

use super::definition::MAX_NAME_LEN;

/// Name of the event a client sends when it shows a variant.
pub const EXPOSURE_EVENT: &str = "exposure";
/// Most events in one request.
pub const MAX_EVENTS: usize = 1_000;
/// Longest targeting key, in bytes.
pub const MAX_TARGETING_KEY_LEN: usize = 256;
/// Largest `context` object, in bytes of JSON.
pub const MAX_CONTEXT_BYTES: usize = 4_096;
/// Largest magnitude of an event's `value`: a mean metric sums values and
/// their squares, and one square past `f64::MAX` would make the variant's
/// report unreadable for the rest of the experiment.
pub const MAX_VALUE: f64 = 1e12;

/// A bad events body; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    /// The named field is missing, of the wrong type or too long.
    #[error("{field}: {problem}")]
    Field {
        /// JSON path of the field, e.g. `events[2].targetingKey`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

impl EventError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::Field { field, .. } => field,
        }
    }
}

/// One parsed event, before its variant is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    /// The OFREP targeting key of the unit (user) the event is about.
    pub targeting_key: String,
    /// The flag the event is attributed to.
    pub flag: String,
    /// Event name (`exposure`, `purchase`, …).
    pub name: String,
    /// Optional numeric value (for mean metrics).
    pub value: Option<f64>,
    /// The variant the client saw, if it says.
    pub variant: Option<String>,
    /// Extra evaluation context (used only to evaluate the flag when the
    /// variant is not given).
    pub context: Map<String, Value>,
}

/// An event ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Received at (Unix ms, server clock).
    pub at: i64,
    /// API key id that sent it.
    pub key_id: String,
    /// Targeting key.
    pub targeting_key: String,
    /// Flag key.
    pub flag: String,
    /// Resolved variant.
    pub variant: String,
    /// Event name.
    pub name: String,
    /// Optional value.
    pub value: Option<f64>,
}

fn text(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, EventError> {
    let field = format!("{path}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) if required => Err(EventError::new(field, "is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(EventError::new(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => Err(EventError::new(
            field,
            format!("must be at most {max} bytes"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(EventError::new(
            field,
            "must not contain control characters",
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::new(field, "must be a string")),
    }
}

fn parse_one(v: &Value, path: &str) -> Result<EventInput, EventError> {
    let Some(obj) = v.as_object() else {
        return Err(EventError::new(path, "must be a JSON object"));
    };
    const KNOWN: [&str; 6] = [
        "targetingKey",
        "flag",
        "name",
        "value",
        "variant",
        "context",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(EventError::new(
            format!("{path}.{k}"),
            format!("unknown field (known: {})", KNOWN.join(", ")),
        ));
    }
    let missing = || EventError::new(path, "internal: required field absent");
    let targeting_key =
        text(obj, "targetingKey", path, MAX_TARGETING_KEY_LEN, true)?.ok_or_else(missing)?;
    let flag = text(obj, "flag", path, MAX_NAME_LEN, true)?.ok_or_else(missing)?;
    let name = text(obj, "name", path, MAX_NAME_LEN, true)?.ok_or_else(missing)?;
    let variant = text(obj, "variant", path, MAX_NAME_LEN, false)?;
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x.abs() <= MAX_VALUE => Some(x),
            _ => {
                return Err(EventError::new(
                    format!("{path}.value"),
                    format!("must be a number between -{MAX_VALUE:e} and {MAX_VALUE:e}"),
                ));
            }
        },
    };
    let context = match obj.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m))
            if Value::Object(m.clone()).to_string().len() > MAX_CONTEXT_BYTES =>
        {
            return Err(EventError::new(
                format!("{path}.context"),
                format!("must be at most {MAX_CONTEXT_BYTES} bytes of JSON"),
            ));
        }
        Some(Value::Object(m)) => {
            if m.contains_key("targetingKey") {
                return Err(EventError::new(
                    format!("{path}.context.targetingKey"),
                    "set the targeting key at the event's top level only",
                ));
            }
            m.clone()
        }
        Some(_) => {
            return Err(EventError::new(
                format!("{path}.context"),
                "must be a JSON object (OpenFeature evaluation context)",
            ));
        }
    };
    Ok(EventInput {
        targeting_key,
        flag,
        name,
        value,
        variant,
        context,
    })
}

/// Parses `{"events": [ … ]}` or a single event object.
pub fn parse(body: &Value) -> Result<Vec<EventInput>, EventError> {
    let Some(obj) = body.as_object() else {
        return Err(EventError::new(
            "body",
            "must be a JSON object: {\"events\": [...]} or one event",
        ));
    };
    let Some(events) = obj.get("events") else {
        return Ok(vec![parse_one(body, "event")?]);
    };
    if let Some(k) = obj.keys().find(|k| *k != "events") {
        return Err(EventError::new(
            k.clone(),
            "unknown field next to events (send {\"events\": [...]} only)",
        ));
    }
    let Value::Array(items) = events else {
        return Err(EventError::new("events", "must be an array"));
    };
    if items.is_empty() {
        return Err(EventError::new("events", "must not be empty"));
    }
    if items.len() > MAX_EVENTS {
        return Err(EventError::new(
            "events",
            format!(
                "at most {MAX_EVENTS} events per request, got {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_one(v, &format!("events[{i}]")))
        .collect()
}
