//! Named, versioned prompt templates for `POST /v1/generate`.
//!
//! A template is a list of chat messages whose text may contain `{{name}}`
//! placeholders, plus the variables it declares (each required or with a
//! default). Rendering substitutes the caller's values; an undeclared
//! placeholder, a missing required variable, an unknown variable or a
//! non-scalar value is an error naming it. Every change creates a new version;
//! old versions stay renderable, so callers can pin one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::openai::{Message, Role};

/// Most messages in a template.
pub const MAX_MESSAGES: usize = 32;
/// Most characters in one template message.
pub const MAX_TEXT: usize = 32_768;

/// A declared variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Used when the caller gives no value; `None` = required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One template message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text with `{{variable}}` placeholders.
    pub content: String,
}

/// A template definition, as sent to `POST /admin/templates/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The messages.
    pub messages: Vec<TemplateMessage>,
    /// Declared variables.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// Default request parameters (`model`, `temperature`, `max_tokens`, `response_format`, …)
    /// merged under the caller's.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// What the template does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Why a template or a rendering was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template name is not a slug.
    #[error("template name must be 1–64 characters of a-z, 0-9, - and _")]
    Name,
    /// The definition is not valid.
    #[error("invalid template: {0}")]
    Invalid(String),
    /// A required variable has no value.
    #[error("missing variable `{0}`")]
    Missing(String),
    /// The caller gave a variable the template does not declare.
    #[error("unknown variable `{0}` (declared: {1})")]
    Unknown(String, String),
    /// A variable's value is not a string, number or boolean.
    #[error("variable `{0}` must be a string, number or boolean")]
    NotScalar(String),
}

/// Whether `name` is a valid template name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The placeholders in `text`, in order (names trimmed).
pub fn placeholders(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Invalid("unclosed `{{`".to_owned()))?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(TemplateError::Invalid(format!(
                "placeholder `{{{{{}}}}}` is not a variable name",
                &after[..end]
            )));
        }
        out.push(name.to_owned());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Validates a template definition.
pub fn validate(spec: &TemplateSpec) -> Result<(), TemplateError> {
    if spec.messages.is_empty() || spec.messages.len() > MAX_MESSAGES {
        return Err(TemplateError::Invalid(format!(
            "messages must hold 1–{MAX_MESSAGES} messages"
        )));
    }
    for (i, m) in spec.messages.iter().enumerate() {
        if Role::parse(&m.role)
            .is_none_or(|r| !matches!(r, Role::System | Role::User | Role::Assistant))
        {
            return Err(TemplateError::Invalid(format!(
                "messages[{i}].role must be system, user or assistant"
            )));
        }
        if m.content.chars().count() > MAX_TEXT {
            return Err(TemplateError::Invalid(format!(
                "messages[{i}].content is longer than {MAX_TEXT} characters"
            )));
        }
        for p in placeholders(&m.content)? {
            if !spec.variables.contains_key(&p) {
                return Err(TemplateError::Invalid(format!(
                    "messages[{i}] uses `{{{{{p}}}}}` but no variable `{p}` is declared"
                )));
            }
        }
    }
    for forbidden in ["messages", "stream", "stream_options"] {
        if spec.defaults.contains_key(forbidden) {
            return Err(TemplateError::Invalid(format!(
                "defaults must not set `{forbidden}`"
            )));
        }
    }
    Ok(())
}

fn scalar(name: &str, v: &Value) -> Result<String, TemplateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(TemplateError::NotScalar(name.to_owned())),
    }
}

/// Renders the template's messages with `values`.
pub fn render(
    spec: &TemplateSpec,
    values: &Map<String, Value>,
) -> Result<Vec<Message>, TemplateError> {
    for k in values.keys() {
        if !spec.variables.contains_key(k) {
            let declared: Vec<&str> = spec.variables.keys().map(String::as_str).collect();
            return Err(TemplateError::Unknown(k.clone(), declared.join(", ")));
        }
    }
    let mut resolved = BTreeMap::new();
    for (name, var) in &spec.variables {
        let value = match (values.get(name), &var.default) {
            (Some(v), _) => scalar(name, v)?,
            (None, Some(d)) => d.clone(),
            (None, None) => return Err(TemplateError::Missing(name.clone())),
        };
        resolved.insert(name.clone(), value);
    }
    spec.messages
        .iter()
        .map(|m| {
            let mut out = String::with_capacity(m.content.len());
            let mut rest = m.content.as_str();
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find("}}")
                    .ok_or_else(|| TemplateError::Invalid("unclosed `{{`".to_owned()))?;
                let name = after[..end].trim();
                let value = resolved
                    .get(name)
                    .ok_or_else(|| TemplateError::Missing(name.to_owned()))?;
                // Substituted values are not re-scanned, so a value containing `{{x}}` stays literal.
                out.push_str(value);
                rest = &after[end + 2..];
            }
            out.push_str(rest);
            let role = Role::parse(&m.role).unwrap_or(Role::User);
            Ok(Message::text(role, &out))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> TemplateSpec {
        serde_json::from_value(json!({
            "messages": [
                {"role": "system", "content": "You write in a {{tone}} tone."},
                {"role": "user", "content": "Summarize: {{ text }}"}
            ],
            "variables": {"tone": {"default": "neutral"}, "text": {}},
            "defaults": {"temperature": 0.2}
        }))
        .unwrap()
    }

    #[test]
    fn renders_with_defaults_and_values() {
        let s = spec();
        validate(&s).unwrap();
        let m = render(
            &s,
            json!({"text": "the {{tone}} report", "tone": 3})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m[0].text_content(), "You write in a 3 tone.");
        assert_eq!(m[1].text_content(), "Summarize: the {{tone}} report");
        let m = render(&s, json!({"text": "x"}).as_object().unwrap()).unwrap();
        assert_eq!(m[0].text_content(), "You write in a neutral tone.");
    }

    #[test]
    fn rendering_errors_name_the_variable() {
        let s = spec();
        assert_eq!(
            render(&s, &Map::new()).unwrap_err(),
            TemplateError::Missing("text".to_owned())
        );
        assert!(matches!(
            render(&s, json!({"text": "x", "txet": "y"}).as_object().unwrap()).unwrap_err(),
            TemplateError::Unknown(name, _) if name == "txet"
        ));
        assert_eq!(
            render(&s, json!({"text": ["x"]}).as_object().unwrap()).unwrap_err(),
            TemplateError::NotScalar("text".to_owned())
        );
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let mut s = spec();
        s.messages[1].content = "{{undeclared}}".to_owned();
        assert!(validate(&s).unwrap_err().to_string().contains("undeclared"));
        let mut s = spec();
        s.messages[0].role = "tool".to_owned();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.messages[0].content = "{{ open".to_owned();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.defaults.insert("stream".to_owned(), json!(true));
        assert!(validate(&s).is_err());
        assert!(valid_name("summarize-v2"));
        assert!(!valid_name("Summarize"));
        assert!(!valid_name(""));
    }
}
