//! `POST /v1/completions`, OpenAI's legacy text completions, as an entry
//! point (issue 15): the request becomes a chat request with the prompt as
//! its one user message, served by the chat pipeline on any chat-capable
//! provider; [`CompletionsClient`] rewrites the chat completion into a
//! `text_completion` and each streamed `chat.completion.chunk` into a
//! `text_completion` chunk. Errors keep OpenAI's shape.
//!
//! Supported: `model`, `prompt` (a string, or an array holding one string),
//! `max_tokens`, `temperature`, `top_p`, `stop`, `stream`, `stream_options`,
//! `presence_penalty`, `frequency_penalty`, `seed`, `user`, `n` = 1,
//! `best_of` = 1, `echo` = false, `logprobs` = null. Refused with a 400
//! naming the parameter: several prompts or token-id prompts, `suffix`,
//! `echo: true`, `logprobs`, `n` or `best_of` above 1, `logit_bias`, and
//! unknown fields. Unlike OpenAI (16), an absent `max_tokens` takes the
//! chat route's default.

use serde_json::{Map, Value, json};

use super::engine::Downstream;
use super::openai::{ChatRequest, ErrorBody, ErrorType};
use super::pipeline::Client;
use super::providers::SseParser;

fn bad(message: impl Into<String>, param: &str) -> ErrorBody {
    ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    )
}

/// Fields handed to the chat request unchanged (validated there).
const FORWARDED: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
];

/// Fields accepted only at the value that changes nothing.
const NEUTRAL: &[&str] = &["n", "best_of", "echo", "logprobs"];

/// Fields DOL cannot honour on a chat model.
const UNSUPPORTED: &[&str] = &["suffix", "logit_bias"];

fn is_neutral(name: &str, v: &Value) -> bool {
    match name {
        "n" | "best_of" => v.is_null() || v.as_u64() == Some(1),
        "echo" => v.is_null() || v == &Value::Bool(false),
        _ => v.is_null(),
    }
}

/// Parses a completions body into the chat request the pipeline serves.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, ErrorBody> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("body must be a JSON object", "body"));
    };
    for (k, v) in &f {
        if UNSUPPORTED.contains(&k.as_str()) && !v.is_null() {
            return Err(bad(
                format!("`{k}` is not supported by DOL's completions API"),
                k,
            ));
        }
        if NEUTRAL.contains(&k.as_str()) && !is_neutral(k, v) {
            return Err(bad(
                format!("`{k}` is supported only at its default by DOL's completions API"),
                k,
            ));
        }
        if ![FORWARDED, NEUTRAL, UNSUPPORTED, &["prompt"]]
            .iter()
            .any(|list| list.contains(&k.as_str()))
        {
            return Err(bad(
                format!("Unrecognized request argument supplied: {k}"),
                k,
            ));
        }
    }
    if !matches!(f.get("model"), Some(Value::String(m)) if !m.is_empty()) {
        return Err(bad("`model` is required", "model"));
    }
    let prompt = match f.get("prompt") {
        None | Some(Value::Null) => return Err(bad("`prompt` is required", "prompt")),
        Some(Value::String(p)) => p.clone(),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(p)] => p.clone(),
            [] => return Err(bad("`prompt` must not be empty", "prompt")),
            [Value::String(_), ..] => {
                return Err(bad(
                    "DOL serves one prompt per completions request; send several prompts as several requests",
                    "prompt",
                ));
            }
            _ => {
                return Err(bad(
                    "`prompt` must be a string (token-id prompts are not supported)",
                    "prompt",
                ));
            }
        },
        Some(_) => return Err(bad("`prompt` must be a string", "prompt")),
    };
    if prompt.is_empty() {
        return Err(bad("`prompt` must not be empty", "prompt"));
    }
    let mut chat: Map<String, Value> = f
        .iter()
        .filter(|(k, _)| FORWARDED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    chat.insert(
        "messages".to_owned(),
        json!([{"role": "user", "content": prompt}]),
    );
    ChatRequest::from_value(&Value::Object(chat)).map_err(|e| e.to_error_body())
}

/// One chat choice as a completion choice.
fn choice(c: &Value, text: &Value) -> Value {
    json!({
        "text": text,
        "index": c.get("index").cloned().unwrap_or(json!(0)),
        "logprobs": null,
        "finish_reason": c.get("finish_reason").cloned().unwrap_or(Value::Null),
    })
}

/// A chat completion (or chunk) rewritten as a `text_completion`: the same
/// id, created, model, usage and `dol`, each choice's text.
pub fn from_chat(c: &Value) -> Value {
    let mut out = c.clone();
    out["object"] = json!("text_completion");
    if let Some(id) = c["id"].as_str() {
        out["id"] = json!(format!(
            "cmpl-{}",
            id.strip_prefix("chatcmpl-").unwrap_or(id)
        ));
    }
    let choices: Vec<Value> = c["choices"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|ch| {
                    let msg = ch.get("message").or_else(|| ch.get("delta"));
                    let text = msg
                        .and_then(|m| m.get("content"))
                        .filter(|t| t.is_string())
                        .cloned()
                        .unwrap_or(json!(""));
                    choice(ch, &text)
                })
                .collect()
        })
        .unwrap_or_default();
    out["choices"] = Value::Array(choices);
    if let Some(o) = out.as_object_mut() {
        o.remove("system_fingerprint");
    }
    out
}

/// Wraps the request's HTTP client: completions and chunks leave as
/// `text_completion`s; error bodies and frames, and `[DONE]`, unchanged.
pub struct CompletionsClient<'a, D> {
    inner: &'a mut D,
    parser: SseParser,
}

impl<'a, D: Client> CompletionsClient<'a, D> {
    /// Wraps the HTTP client of the request.
    pub fn new(inner: &'a mut D) -> Self {
        Self {
            inner,
            parser: SseParser::new(),
        }
    }
}

/// The SSE frames of `events` with chat chunks rewritten.
fn translate(events: Vec<super::providers::SseEvent>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        let data = match serde_json::from_str::<Value>(&e.data) {
            Ok(v) if v["object"] == "chat.completion.chunk" => from_chat(&v).to_string(),
            _ => e.data,
        };
        out.extend(format!("data: {data}\n\n").into_bytes());
    }
    out
}

impl<D: Client> Downstream for CompletionsClient<'_, D> {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.inner.start(headers).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        let out = translate(self.parser.feed(&bytes));
        if out.is_empty() {
            return true;
        }
        self.inner.send(out).await
    }
}

impl<D: Client> Client for CompletionsClient<'_, D> {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        let body = if (200..300).contains(&status) {
            from_chat(&body)
        } else {
            body
        };
        self.inner.complete(status, headers, body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(v: Value) -> String {
        let e = parse_request(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
        e.error.param.unwrap_or_default()
    }

    #[test]
    fn a_prompt_becomes_one_user_message_with_the_limits() {
        for prompt in [json!("Say hi"), json!(["Say hi"])] {
            let r = parse_request(
                json!({"model": "auto", "prompt": prompt, "max_tokens": 7, "stream": true,
                    "stop": ["\n"], "temperature": 0.5, "n": 1, "echo": false, "logprobs": null})
                .to_string()
                .as_bytes(),
            )
            .unwrap();
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(
                v["messages"],
                json!([{"role": "user", "content": "Say hi"}])
            );
            assert_eq!(v["max_tokens"], 7);
            assert_eq!(v["stream"], true);
        }
    }

    #[test]
    fn each_bad_input_names_its_parameter() {
        assert_eq!(param(json!([1])), "body");
        assert_eq!(param(json!({"prompt": "p"})), "model");
        assert_eq!(param(json!({"model": "auto"})), "prompt");
        assert_eq!(param(json!({"model": "auto", "prompt": ""})), "prompt");
        assert_eq!(param(json!({"model": "auto", "prompt": []})), "prompt");
        assert_eq!(
            param(json!({"model": "auto", "prompt": ["a", "b"]})),
            "prompt"
        );
        assert_eq!(param(json!({"model": "auto", "prompt": [1, 2]})), "prompt");
        assert_eq!(param(json!({"model": "auto", "prompt": 3})), "prompt");
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "suffix": "s"})),
            "suffix"
        );
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "echo": true})),
            "echo"
        );
        assert_eq!(param(json!({"model": "auto", "prompt": "p", "n": 2})), "n");
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "best_of": 3})),
            "best_of"
        );
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "logprobs": 2})),
            "logprobs"
        );
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "logit_bias": {"1": 2}})),
            "logit_bias"
        );
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "tools": []})),
            "tools"
        );
        assert_eq!(
            param(json!({"model": "auto", "prompt": "p", "max_tokens": 0})),
            "max_tokens"
        );
    }

    #[test]
    fn completions_and_chunks_become_text_completions() {
        let c = json!({"id": "chatcmpl-abc", "object": "chat.completion", "created": 5, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}, "dol": {"tier": "basic"}});
        let t = from_chat(&c);
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["id"], "cmpl-abc");
        assert_eq!(
            t["choices"][0],
            json!({"text": "Hello", "index": 0, "logprobs": null, "finish_reason": "stop"})
        );
        assert_eq!(t["usage"]["total_tokens"], 3);
        assert_eq!(t["dol"]["tier"], "basic");
        let chunk = json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "He"}, "finish_reason": null}]});
        let frames = translate(
            SseParser::new().feed(format!("data: {chunk}\n\ndata: [DONE]\n\n").as_bytes()),
        );
        let text = String::from_utf8(frames).unwrap();
        assert!(text.contains("\"object\":\"text_completion\""), "{text}");
        assert!(text.contains("\"text\":\"He\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
}
