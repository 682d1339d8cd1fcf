//! Function calling: the `tools` and `tool_choice` of a chat request,
//! validated once so every provider mapping can rely on their shape.
//!
//! OpenAI-compatible providers receive both unchanged; the Anthropic and
//! Gemini mappings render [`FunctionDef`] and [`ToolChoice`] in their own
//! wire formats. Only `function` tools exist in every format, so other tool
//! types are refused with a 400 naming the field.

use serde_json::{Map, Value};

use super::openai::RequestError;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    /// Its name (`^[a-zA-Z0-9_-]{1,64}$`, the rule all three providers share).
    pub name: String,
    /// What it does, if said.
    pub description: Option<String>,
    /// The JSON Schema of its arguments (`{"type": "object"}` when absent).
    pub parameters: Value,
}

/// Whether and which function the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (`auto`).
    Auto,
    /// No function may be called (`none`).
    None,
    /// Some function must be called (`required`).
    Required,
    /// This function must be called.
    Named(String),
}

fn err(path: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError::new(path, message)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The functions of a request's `tools` (an absent field is none).
pub fn functions(body: &Map<String, Value>) -> Result<Vec<FunctionDef>, RequestError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(tools) = tools else {
        return Err(err("tools", "expected an array of tools"));
    };
    let mut out: Vec<FunctionDef> = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let kind = tool.get("type").and_then(Value::as_str);
        if kind != Some("function") {
            return Err(err(
                format!("{path}.type"),
                "only function tools are supported (type \"function\")",
            ));
        }
        let Some(f) = tool.get("function").and_then(Value::as_object) else {
            return Err(err(format!("{path}.function"), "expected an object"));
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if !valid_name(name) {
            return Err(err(
                format!("{path}.function.name"),
                "expected 1 to 64 letters, digits, underscores or dashes",
            ));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(err(
                format!("{path}.function.name"),
                format!("function \"{name}\" is declared twice"),
            ));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(err(
                    format!("{path}.function.parameters"),
                    "expected a JSON Schema object",
                ));
            }
        };
        out.push(FunctionDef {
            name: name.to_owned(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            parameters,
        });
    }
    Ok(out)
}

/// A request's `tool_choice`, checked against its functions.
pub fn tool_choice(
    body: &Map<String, Value>,
    functions: &[FunctionDef],
) -> Result<Option<ToolChoice>, RequestError> {
    let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if functions.is_empty() {
        return Err(err("tool_choice", "is only allowed when tools are given"));
    }
    let parsed = match choice {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(err(
                    "tool_choice",
                    format!(
                        "unknown value \"{other}\" (expected none, auto, required or a function)"
                    ),
                ));
            }
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !functions.iter().any(|f| f.name == name) {
                return Err(err(
                    "tool_choice.function.name",
                    format!("\"{name}\" is not one of the declared tools"),
                ));
            }
            ToolChoice::Named(name.to_owned())
        }
        _ => {
            return Err(err(
                "tool_choice",
                "expected none, auto, required or {\"type\": \"function\", \"function\": {\"name\"}}",
            ));
        }
    };
    Ok(Some(parsed))
}

/// The arguments JSON text of a call as an object, as Anthropic's `input`
/// and Gemini's `args` need it (text that is not an object becomes `{}`:
/// both APIs reject anything else).
pub fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "description": "d",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    #[test]
    fn function_tools_parse() {
        let f = functions(&obj(json!({"tools": [tool("get_weather"), {"type": "function", "function": {"name": "now"}}]}))).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "get_weather");
        assert_eq!(f[0].description.as_deref(), Some("d"));
        assert_eq!(f[1].parameters["type"], "object");
        assert!(functions(&obj(json!({}))).unwrap().is_empty());
    }

    fn refusal(body: Value) -> String {
        let b = obj(body);
        match functions(&b).and_then(|f| tool_choice(&b, &f)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn tools_that_are_not_an_array_are_refused() {
        assert_eq!(
            refusal(json!({"tools": {}})),
            "tools: expected an array of tools"
        );
    }

    #[test]
    fn non_function_tools_are_refused() {
        assert!(
            refusal(json!({"tools": [{"type": "web_search"}]}))
                .starts_with("tools[0].type: only function tools")
        );
    }

    #[test]
    fn missing_function_object_is_refused() {
        assert_eq!(
            refusal(json!({"tools": [{"type": "function"}]})),
            "tools[0].function: expected an object"
        );
    }

    #[test]
    fn bad_function_names_are_refused() {
        for name in ["", "has space", &"x".repeat(65)] {
            assert!(
                refusal(json!({"tools": [tool(name)]})).starts_with("tools[0].function.name"),
                "{name}"
            );
        }
    }

    #[test]
    fn duplicate_function_names_are_refused() {
        assert!(refusal(json!({"tools": [tool("a"), tool("a")]})).contains("declared twice"));
    }

    #[test]
    fn non_object_parameters_are_refused() {
        let t = json!({"type": "function", "function": {"name": "a", "parameters": "x"}});
        assert!(refusal(json!({"tools": [t]})).starts_with("tools[0].function.parameters"));
    }

    #[test]
    fn tool_choice_values() {
        let b = obj(json!({"tools": [tool("a")], "tool_choice": "required"}));
        assert_eq!(
            tool_choice(&b, &functions(&b).unwrap()).unwrap(),
            Some(ToolChoice::Required)
        );
        let b = obj(
            json!({"tools": [tool("a")], "tool_choice": {"type": "function", "function": {"name": "a"}}}),
        );
        assert_eq!(
            tool_choice(&b, &functions(&b).unwrap()).unwrap(),
            Some(ToolChoice::Named("a".into()))
        );
    }

    #[test]
    fn tool_choice_without_tools_is_refused() {
        assert_eq!(
            refusal(json!({"tool_choice": "auto"})),
            "tool_choice: is only allowed when tools are given"
        );
    }

    #[test]
    fn unknown_tool_choice_is_refused() {
        assert!(
            refusal(json!({"tools": [tool("a")], "tool_choice": "always"}))
                .contains("unknown value \"always\"")
        );
        assert!(
            refusal(json!({"tools": [tool("a")], "tool_choice": 3}))
                .starts_with("tool_choice: expected")
        );
    }

    #[test]
    fn tool_choice_naming_an_undeclared_function_is_refused() {
        let r = refusal(
            json!({"tools": [tool("a")], "tool_choice": {"type": "function", "function": {"name": "b"}}}),
        );
        assert_eq!(
            r,
            "tool_choice.function.name: \"b\" is not one of the declared tools"
        );
    }

    #[test]
    fn arguments_become_objects() {
        assert_eq!(
            arguments_object(r#"{"city":"Paris"}"#),
            json!({"city": "Paris"})
        );
        assert_eq!(arguments_object("[1]"), json!({}));
        assert_eq!(arguments_object("not json"), json!({}));
    }
}
