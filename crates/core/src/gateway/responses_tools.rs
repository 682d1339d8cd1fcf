//! Function tools on the Responses entry point (issue 15): the Responses
//! API's flat function tools, `tool_choice`, and `function_call` /
//! `function_call_output` input items mapped onto OpenAI chat terms (which
//! every provider mapping speaks), and a completion's `tool_calls` back into
//! `function_call` output items.

use serde_json::{Map, Value, json};

use super::openai::{ErrorBody, ErrorType};

fn bad(message: impl Into<String>, param: &str) -> ErrorBody {
    ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    )
}

/// Responses function tools (`{type: "function", name, description?,
/// parameters?, strict?}`) as chat tools.
pub fn tools(v: &Value) -> Result<Value, ErrorBody> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("`tools` must be an array", "tools"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        if t["type"].as_str() != Some("function") {
            return Err(bad(
                "only function tools are supported (type \"function\")",
                &format!("tools[{i}].type"),
            ));
        }
        let mut f = Map::new();
        for k in ["name", "description", "parameters", "strict"] {
            if let Some(x) = t.get(k).filter(|x| !x.is_null()) {
                f.insert(k.to_owned(), x.clone());
            }
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

/// Responses `tool_choice` as the chat one (`{type: "function", name}` →
/// `{type: "function", function: {name}}`; strings unchanged).
pub fn tool_choice(v: &Value) -> Result<Value, ErrorBody> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`tool_choice.name` is required", "tool_choice.name"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(bad(
            "`tool_choice` must be none, auto, required or {\"type\": \"function\", \"name\"}",
            "tool_choice",
        )),
    }
}

fn text_field<'a>(item: &'a Value, key: &str, param: &str) -> Result<&'a str, ErrorBody> {
    item[key]
        .as_str()
        .ok_or_else(|| bad(format!("`{key}` is required"), &format!("{param}.{key}")))
}

/// A `function_call` input item as an assistant message with one tool
/// call, or a `function_call_output` as a tool message; `None` for other
/// item types.
pub fn item_message(item: &Value, param: &str) -> Option<Result<Value, ErrorBody>> {
    let message = match item["type"].as_str()? {
        "function_call" => (|| {
            let call_id = text_field(item, "call_id", param)?;
            let name = text_field(item, "name", param)?;
            let arguments = text_field(item, "arguments", param)?;
            Ok(
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": call_id,
                "type": "function", "function": {"name": name, "arguments": arguments}}]}),
            )
        })(),
        "function_call_output" => (|| {
            let call_id = text_field(item, "call_id", param)?;
            let output = text_field(item, "output", param)?;
            Ok(json!({"role": "tool", "tool_call_id": call_id, "content": output}))
        })(),
        _ => return None,
    };
    Some(message)
}

/// Merges consecutive assistant tool-call messages into one (a model's
/// parallel calls arrive as several `function_call` items; chat wants them
/// in one assistant message before their results).
pub fn merge_calls(messages: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len());
    for m in messages {
        let calls = m.get("tool_calls").and_then(Value::as_array).cloned();
        if let (Some(calls), Some(last)) = (&calls, out.last_mut())
            && last.get("tool_calls").is_some()
            && m["content"].is_null()
            && let Some(list) = last["tool_calls"].as_array_mut()
        {
            list.extend(calls.iter().cloned());
            continue;
        }
        out.push(m);
    }
    out
}

/// A completion message's tool calls as `function_call` output items.
pub fn output_items(message: &Value, status: &str) -> Vec<Value> {
    message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let call_id = c["id"].as_str().unwrap_or_default();
                    json!({"type": "function_call", "id": format!("fc_{call_id}"),
                        "call_id": call_id, "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"], "status": status})
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_and_choices_map_to_chat_terms() {
        let t = tools(&json!([{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": true}])).unwrap();
        assert_eq!(
            t,
            json!([{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(
            tools(&json!([{"type": "web_search"}]))
                .unwrap_err()
                .error
                .param
                .as_deref(),
            Some("tools[0].type")
        );
        assert_eq!(tool_choice(&json!("required")).unwrap(), json!("required"));
        assert_eq!(
            tool_choice(&json!({"type": "function", "name": "w"})).unwrap(),
            json!({"type": "function", "function": {"name": "w"}})
        );
        assert!(tool_choice(&json!({"type": "function"})).is_err());
        assert!(tool_choice(&json!(3)).is_err());
    }

    #[test]
    fn items_become_calls_and_results_and_calls_merge() {
        let call = |id: &str| json!({"type": "function_call", "call_id": id, "name": "w", "arguments": "{}"});
        let a = item_message(&call("c1"), "input[1]").unwrap().unwrap();
        let b = item_message(&call("c2"), "input[2]").unwrap().unwrap();
        let out = item_message(
            &json!({"type": "function_call_output", "call_id": "c1", "output": "18C"}),
            "input[3]",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            out,
            json!({"role": "tool", "tool_call_id": "c1", "content": "18C"})
        );
        let merged = merge_calls(vec![json!({"role": "user", "content": "q"}), a, b, out]);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert!(item_message(&json!({"type": "message"}), "input[0]").is_none());
        let missing = item_message(&json!({"type": "function_call", "name": "w"}), "input[0]")
            .unwrap()
            .unwrap_err();
        assert_eq!(missing.error.param.as_deref(), Some("input[0].call_id"));
    }

    #[test]
    fn calls_become_function_call_items() {
        let m = json!({"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]});
        assert_eq!(
            output_items(&m, "completed"),
            vec![
                json!({"type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "w",
                "arguments": "{\"a\":1}", "status": "completed"})
            ]
        );
        assert!(output_items(&json!({"content": "hi"}), "completed").is_empty());
    }
}
