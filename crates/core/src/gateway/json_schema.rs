//! A small JSON Schema checker for structured outputs.
//!
//! The quality gate needs to know whether a structured answer matches the
//! schema the caller sent in `response_format.json_schema.schema`. It checks
//! the keywords that decide the shape of an answer — `type` (one or a list),
//! `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
//! `const`, `anyOf`/`oneOf` — and ignores every other keyword (formats,
//! lengths, `$ref`), so an answer is never failed on a keyword DOL does not
//! understand.

use serde_json::Value;

/// The first place where `value` breaks `schema`, as `"path: problem"`;
/// `None` when it matches (as far as the checked keywords go).
pub fn first_violation(value: &Value, schema: &Value) -> Option<String> {
    check(value, schema, "$", 0)
}

/// Schemas nest; a hostile schema must not recurse without end.
const MAX_DEPTH: usize = 32;

fn type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        // Unknown type names are not DOL's to judge.
        _ => true,
    }
}

fn check(value: &Value, schema: &Value, path: &str, depth: usize) -> Option<String> {
    let Value::Object(s) = schema else {
        // `true`/`{}` accept anything; `false` accepts nothing.
        return (schema == &Value::Bool(false)).then(|| format!("{path}: no value is allowed"));
    };
    if depth > MAX_DEPTH {
        return None;
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_matches(value, t) => {
            return Some(format!("{path}: expected {t}"));
        }
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            if !names.is_empty() && !names.iter().any(|t| type_matches(value, t)) {
                return Some(format!("{path}: expected one of {}", names.join(", ")));
            }
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(value)
    {
        return Some(format!("{path}: not one of the enum values"));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Some(format!("{path}: not the const value"));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = s.get(key)
            && !options.is_empty()
            && options
                .iter()
                .all(|o| check(value, o, path, depth + 1).is_some())
        {
            return Some(format!("{path}: matches none of {key}"));
        }
    }
    if let Value::Object(obj) = value {
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Some(format!("{path}: missing required property \"{name}\""));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(sub) => {
                    if let Some(e) = check(v, sub, &format!("{path}.{name}"), depth + 1) {
                        return Some(e);
                    }
                }
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Some(format!("{path}: unexpected property \"{name}\""));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, s.get("items")) {
        for (i, v) in items.iter().enumerate() {
            if let Some(e) = check(v, sub, &format!("{path}[{i}]"), depth + 1) {
                return Some(e);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(value: Value, schema: Value) -> Option<String> {
        first_violation(&value, &schema)
    }

    #[test]
    fn empty_object_matches_an_object_schema_without_required_keys() {
        assert_eq!(v(json!({}), json!({"type": "object"})), None);
        assert_eq!(
            v(
                json!({}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}})
            ),
            None
        );
    }

    #[test]
    fn missing_required_property_is_named() {
        assert_eq!(
            v(json!({}), json!({"type": "object", "required": ["city"]})).as_deref(),
            Some("$: missing required property \"city\"")
        );
    }

    #[test]
    fn wrong_types_are_found_at_their_path() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}
        }});
        assert_eq!(v(json!({"n": 1, "tags": ["a"]}), schema.clone()), None);
        assert_eq!(
            v(json!({"n": "1"}), schema.clone()).as_deref(),
            Some("$.n: expected integer")
        );
        assert_eq!(
            v(json!({"tags": ["a", 2]}), schema).as_deref(),
            Some("$.tags[1]: expected string")
        );
        assert_eq!(
            v(json!([1]), json!({"type": "object"})).as_deref(),
            Some("$: expected object")
        );
    }

    #[test]
    fn enum_const_unions_and_closed_objects() {
        assert!(v(json!("x"), json!({"enum": ["a", "b"]})).is_some());
        assert_eq!(v(json!("a"), json!({"enum": ["a", "b"]})), None);
        assert!(v(json!(1), json!({"const": 2})).is_some());
        assert_eq!(v(json!(null), json!({"type": ["string", "null"]})), None);
        assert!(
            v(
                json!(1),
                json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
            )
            .is_some()
        );
        assert!(
            v(
                json!({"b": 1}),
                json!({"type": "object", "additionalProperties": false})
            )
            .is_some()
        );
        assert!(v(json!(1), json!(false)).is_some());
        assert_eq!(v(json!(1), json!(true)), None);
    }

    #[test]
    fn unknown_keywords_never_fail_an_answer() {
        assert_eq!(
            v(
                json!("x"),
                json!({"type": "string", "format": "email", "minLength": 5})
            ),
            None
        );
        assert_eq!(v(json!(1), json!({"type": "decimal"})), None);
    }
}
