//! Tools on the Messages entry point (issue 15): Anthropic's `tools`,
//! `tool_choice`, `tool_use` and `tool_result` blocks mapped onto OpenAI's
//! chat terms (which every provider mapping speaks), and a completion's
//! `tool_calls` back into `tool_use` blocks. The inverse of the Anthropic
//! provider mapping (`providers::anthropic`), so a call keeps its id, name
//! and arguments both ways (property-tested).

use serde_json::{Map, Value, json};

/// Anthropic `tools` (`{name, description?, input_schema}`) as OpenAI
/// function tools; `Err` names the field at fault.
pub fn tools(v: &Value) -> Result<Value, String> {
    let list = v.as_array().ok_or("tools: Input should be a valid list")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(format!(
                    "tools.{i}.type: server tools (`{other}`) are not supported by DOL's Messages entry point"
                ));
            }
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("tools.{i}.name: Field required"))?;
        let schema = t
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or(format!(
                "tools.{i}.input_schema: Field required (an object)"
            ))?;
        let mut f = Map::new();
        f.insert("name".to_owned(), json!(name));
        if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
            f.insert("description".to_owned(), d.clone());
        }
        f.insert("parameters".to_owned(), schema.clone());
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

/// Anthropic `tool_choice` as OpenAI's, with `parallel_tool_calls: false`
/// when `disable_parallel_tool_use` is set.
pub fn tool_choice(v: &Value) -> Result<(Value, Option<Value>), String> {
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("tool_choice.name: Field required")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'".to_owned(),
            );
        }
    };
    let parallel = (v.get("disable_parallel_tool_use") == Some(&Value::Bool(true)))
        .then_some(Value::Bool(false));
    Ok((choice, parallel))
}

/// The text of a `tool_result`'s `content` (a string or text blocks).
fn result_text(content: &Value, path: &str) -> Result<String, String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match (b["type"].as_str(), b["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t.to_owned()),
                _ => Err(format!(
                    "{path}.{i}: only text blocks are supported in a tool_result"
                )),
            })
            .collect(),
        _ => Err(format!(
            "{path}: Input should be a string or a list of text blocks"
        )),
    }
}

/// One Anthropic turn as OpenAI chat messages: a user turn's `tool_result`
/// blocks become `tool` messages (first, as OpenAI wants them right after
/// the calls), its text a user message; an assistant turn's `tool_use`
/// blocks become `tool_calls` beside its text.
pub fn turn(role: &str, content: &Value, path: &str) -> Result<Vec<Value>, String> {
    let blocks = match content {
        Value::String(s) => return Ok(vec![json!({"role": role, "content": s})]),
        Value::Array(b) => b,
        _ => {
            return Err(format!(
                "{path}: Input should be a string or a list of content blocks"
            ));
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{path}.{i}");
        match (b["type"].as_str(), role) {
            (Some("text"), _) => {
                text.push_str(
                    b["text"]
                        .as_str()
                        .ok_or(format!("{at}.text: Field required"))?,
                );
            }
            (Some("tool_use"), "assistant") => {
                let id = b["id"].as_str().ok_or(format!("{at}.id: Field required"))?;
                let name = b["name"]
                    .as_str()
                    .ok_or(format!("{at}.name: Field required"))?;
                let input = b
                    .get("input")
                    .filter(|v| v.is_object())
                    .ok_or(format!("{at}.input: Field required (an object)"))?;
                calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            (Some("tool_result"), "user") => {
                let id = b["tool_use_id"]
                    .as_str()
                    .ok_or(format!("{at}.tool_use_id: Field required"))?;
                let mut content = result_text(&b["content"], &format!("{at}.content"))?;
                // OpenAI's tool message has no error flag: say it in the text.
                if b["is_error"] == Value::Bool(true) {
                    content = format!("Error: {content}");
                }
                results.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            (Some(kind @ ("tool_use" | "tool_result")), _) => {
                return Err(format!(
                    "{at}: `{kind}` blocks are not allowed in a {role} turn"
                ));
            }
            (Some(other), _) => {
                return Err(format!(
                    "{at}: content blocks of type `{other}` are not supported by DOL's Messages entry point (text, tool_use, tool_result)"
                ));
            }
            (None, _) => return Err(format!("{at}.type: Field required")),
        }
    }
    let mut out = results;
    if !calls.is_empty() {
        let content = if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
        out.push(json!({"role": role, "content": content, "tool_calls": calls}));
    } else if !text.is_empty() || out.is_empty() {
        out.push(json!({"role": role, "content": text}));
    }
    Ok(out)
}

/// An OpenAI call's `arguments` text as a `tool_use` input object (an
/// unparsable or non-object text is kept under `_raw`, never dropped).
pub fn input_of(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"_raw": arguments}),
    }
}

/// A completion message's content as Anthropic blocks: its text (when
/// there is some, or nothing else), then a `tool_use` block per call.
pub fn content_blocks(message: &Value) -> Vec<Value> {
    let text = message["content"].as_str().unwrap_or_default();
    let calls = message["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    if !text.is_empty() || calls.is_empty() {
        out.push(json!({"type": "text", "text": text}));
    }
    for c in &calls {
        out.push(json!({
            "type": "tool_use",
            "id": c["id"],
            "name": c["function"]["name"],
            "input": input_of(c["function"]["arguments"].as_str().unwrap_or_default()),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_and_choices_map_to_openai_terms() {
        let t =
            tools(&json!([{"name": "w", "description": "d", "input_schema": {"type": "object"}}]))
                .unwrap();
        assert_eq!(
            t,
            json!([{"type": "function", "function": {"name": "w", "description": "d", "parameters": {"type": "object"}}}])
        );
        assert!(
            tools(&json!([{"type": "web_search_20250305", "name": "s"}]))
                .unwrap_err()
                .starts_with("tools.0.type")
        );
        assert!(
            tools(&json!([{"name": "w"}]))
                .unwrap_err()
                .starts_with("tools.0.input_schema")
        );
        assert!(tools(&json!({})).is_err());
        assert_eq!(
            tool_choice(&json!({"type": "any"})).unwrap().0,
            json!("required")
        );
        assert_eq!(
            tool_choice(&json!({"type": "none"})).unwrap().0,
            json!("none")
        );
        let (named, parallel) =
            tool_choice(&json!({"type": "tool", "name": "w", "disable_parallel_tool_use": true}))
                .unwrap();
        assert_eq!(
            named,
            json!({"type": "function", "function": {"name": "w"}})
        );
        assert_eq!(parallel, Some(json!(false)));
        assert!(tool_choice(&json!({"type": "tool"})).is_err());
        assert!(tool_choice(&json!({"type": "maybe"})).is_err());
    }

    #[test]
    fn turns_split_into_calls_and_results() {
        let a = turn(
            "assistant",
            &json!([{"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}]),
            "messages.1.content",
        )
        .unwrap();
        assert_eq!(a[0]["content"], "Let me look.");
        assert_eq!(
            a[0]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        let u = turn(
            "user",
            &json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true},
                {"type": "text", "text": "And?"}]),
            "messages.2.content",
        )
        .unwrap();
        assert_eq!(
            u[0],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(u[1]["content"], "Error: boom");
        assert_eq!(u[2], json!({"role": "user", "content": "And?"}));
        let bad = |role: &str, v: Value| turn(role, &v, "m").unwrap_err();
        assert!(
            bad(
                "user",
                json!([{"type": "tool_use", "id": "x", "name": "n", "input": {}}])
            )
            .contains("not allowed")
        );
        assert!(
            bad(
                "assistant",
                json!([{"type": "tool_result", "tool_use_id": "x"}])
            )
            .contains("not allowed")
        );
        assert!(
            bad(
                "assistant",
                json!([{"type": "tool_use", "id": "x", "name": "n"}])
            )
            .contains("input")
        );
        assert!(bad("user", json!([{"type": "image"}])).contains("image"));
        assert!(
            bad(
                "user",
                json!([{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "image"}]}])
            )
            .contains("text blocks")
        );
    }

    #[test]
    fn calls_become_tool_use_blocks() {
        let m = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "v", "arguments": "not json"}}]});
        let b = content_blocks(&m);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            json!({"type": "tool_use", "id": "call_1", "name": "w", "input": {"a": 1}})
        );
        assert_eq!(b[1]["input"], json!({"_raw": "not json"}));
        assert_eq!(
            content_blocks(&json!({"content": "hi"})),
            vec![json!({"type": "text", "text": "hi"})]
        );
    }
}
