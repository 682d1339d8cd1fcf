//! Embedding requests and responses per provider protocol (issue 15).
//!
//! - **OpenAI-compatible**: `POST {base}/embeddings` with `{model, input,
//!   dimensions?, user?}`, always asking for float vectors (DOL encodes
//!   base64 itself); the answer is `data[].embedding` in `index` order and
//!   `usage.prompt_tokens`. Token-array input is passed through.
//! - **Gemini**: `POST {base}/v1beta/models/{model}:batchEmbedContents` with
//!   `{"requests": [{"model": "models/{model}", "content": {"parts":
//!   [{"text"}]}, "outputDimensionality"?}]}`; the answer is
//!   `embeddings[].values` in request order, without token counts. Gemini
//!   takes text only.
//! - **Anthropic** has no embeddings API: [`embed_request`] refuses it.
//!
//! A request with more inputs than one call takes ([`max_batch`]: 100 for
//! Gemini) is sent in several calls by the pipeline.

use serde_json::{Map, Value, json};

use super::super::embeddings::{EmbedInput, Embedded, EmbeddingRequest};
use super::error::{ProviderFailure, classify_error, embedded_error};
use super::{
    HttpRequestSpec, ProviderConfig, ProviderKind, as_u64, endpoint, gemini, openai_compat, post,
};

/// Most inputs one Gemini `batchEmbedContents` call takes (the API answers
/// 400 "at most 100 requests can be in one batch" beyond it).
pub const GEMINI_MAX_BATCH: usize = 100;

/// Most inputs one call to `kind` carries; larger requests are split.
pub fn max_batch(kind: ProviderKind) -> usize {
    match kind {
        ProviderKind::Gemini => GEMINI_MAX_BATCH,
        _ => super::super::embeddings::MAX_INPUTS,
    }
}

/// Why a provider cannot take an embeddings request at all (a 400 for a
/// pinned model; a skipped candidate for `auto`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// The protocol has no embeddings endpoint.
    #[error("provider `{0}` (Anthropic protocol) has no embeddings API")]
    NoEmbeddings(String),
    /// The protocol takes text only.
    #[error("provider `{0}` (Gemini protocol) takes text input only, not token arrays")]
    TextOnly(String),
}

/// Whether `kind` can embed `req` (checked before any request is built).
pub fn supports(cfg: &ProviderConfig, req: &EmbeddingRequest) -> Result<(), Unsupported> {
    match cfg.kind {
        ProviderKind::Anthropic => Err(Unsupported::NoEmbeddings(cfg.name.clone())),
        ProviderKind::Gemini if req.has_tokens() => Err(Unsupported::TextOnly(cfg.name.clone())),
        _ => Ok(()),
    }
}

/// The embeddings request for `req` by `model` at `cfg`'s provider.
pub fn embed_request(
    cfg: &ProviderConfig,
    req: &EmbeddingRequest,
    model: &str,
) -> Result<HttpRequestSpec, Unsupported> {
    supports(cfg, req)?;
    Ok(match cfg.kind {
        ProviderKind::Gemini => {
            let model = model.strip_prefix("models/").unwrap_or(model);
            let requests: Vec<Value> = req
                .inputs
                .iter()
                .map(|i| {
                    let text = match i {
                        EmbedInput::Text(t) => t.clone(),
                        // Refused by `supports`; kept total without a panic.
                        EmbedInput::Tokens(_) => String::new(),
                    };
                    let mut r = Map::new();
                    r.insert("model".to_owned(), json!(format!("models/{model}")));
                    r.insert("content".to_owned(), json!({"parts": [{"text": text}]}));
                    if let Some(d) = req.dimensions {
                        r.insert("outputDimensionality".to_owned(), json!(d));
                    }
                    Value::Object(r)
                })
                .collect();
            post(
                gemini::url(cfg, &format!("models/{model}:batchEmbedContents")),
                gemini::request_headers(cfg, false),
                &json!({"requests": requests}),
            )
        }
        _ => {
            let input: Vec<Value> = req
                .inputs
                .iter()
                .map(|i| match i {
                    EmbedInput::Text(t) => json!(t),
                    EmbedInput::Tokens(t) => json!(t),
                })
                .collect();
            let mut body = Map::new();
            body.insert("model".to_owned(), json!(model));
            body.insert("input".to_owned(), Value::Array(input));
            body.insert("encoding_format".to_owned(), json!("float"));
            if let Some(d) = req.dimensions {
                body.insert("dimensions".to_owned(), json!(d));
            }
            if let Some(u) = &req.user {
                body.insert("user".to_owned(), json!(u));
            }
            post(
                endpoint(&cfg.base_url, "embeddings"),
                openai_compat::auth_headers(cfg, false),
                &Value::Object(body),
            )
        }
    })
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

/// Interprets an embeddings response to a request of `inputs` items: the
/// vectors for a 2xx body of the right shape and count, otherwise the
/// classified failure.
pub fn parse_embed_response(
    kind: ProviderKind,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    inputs: usize,
    now_unix_s: u64,
) -> Result<Embedded, ProviderFailure> {
    if !(200..=299).contains(&status) {
        return Err(classify_error(kind, status, headers, body, now_unix_s));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderFailure::malformed("response body is not JSON"))?;
    if let Some(failure) = embedded_error(kind, &v, headers, now_unix_s) {
        return Err(failure);
    }
    let parsed = match kind {
        ProviderKind::Gemini => v["embeddings"].as_array().and_then(|items| {
            let vectors = items
                .iter()
                .map(|e| floats(&e["values"]))
                .collect::<Option<Vec<_>>>()?;
            Some(Embedded {
                vectors,
                prompt_tokens: None,
            })
        }),
        _ => v["data"].as_array().and_then(|items| {
            let mut indexed = items
                .iter()
                .enumerate()
                .map(|(pos, e)| {
                    let index = e.get("index").and_then(as_u64).unwrap_or(pos as u64);
                    Some((index, floats(&e["embedding"])?))
                })
                .collect::<Option<Vec<_>>>()?;
            indexed.sort_by_key(|(i, _)| *i);
            Some(Embedded {
                vectors: indexed.into_iter().map(|(_, v)| v).collect(),
                prompt_tokens: v["usage"].get("prompt_tokens").and_then(as_u64),
            })
        }),
    };
    match parsed {
        Some(e) if e.vectors.len() == inputs && e.vectors.iter().all(|v| !v.is_empty()) => Ok(e),
        Some(_) => Err(ProviderFailure::malformed(
            "embeddings response has the wrong number of vectors",
        )),
        None => Err(ProviderFailure::malformed(
            "embeddings response has no vectors where expected",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{body, cfg};
    use super::*;

    fn req(v: Value) -> EmbeddingRequest {
        EmbeddingRequest::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn openai_request_passes_input_dimensions_and_user() {
        let c = cfg(ProviderKind::OpenAiCompatible, "http://h/v1");
        let r = req(
            json!({"model": "auto", "input": ["a", "b"], "dimensions": 8, "user": "u", "encoding_format": "base64"}),
        );
        let spec = embed_request(&c, &r, "text-embedding-3-small").unwrap();
        assert_eq!(spec.url, "http://h/v1/embeddings");
        let b = body(&spec);
        assert_eq!(b["model"], "text-embedding-3-small");
        assert_eq!(b["input"], json!(["a", "b"]));
        assert_eq!(b["dimensions"], 8);
        assert_eq!(b["user"], "u");
        assert_eq!(b["encoding_format"], "float");
        let tokens = embed_request(&c, &req(json!({"model": "m", "input": [1, 2]})), "m").unwrap();
        assert_eq!(body(&tokens)["input"], json!([[1, 2]]));
    }

    #[test]
    fn gemini_request_is_a_batch_with_model_per_item() {
        let c = cfg(ProviderKind::Gemini, "http://g");
        let r = req(json!({"model": "m", "input": ["a", "b"], "dimensions": 4}));
        let spec = embed_request(&c, &r, "gemini-embedding-001").unwrap();
        assert_eq!(
            spec.url,
            "http://g/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        let b = body(&spec);
        assert_eq!(b["requests"][1]["model"], "models/gemini-embedding-001");
        assert_eq!(b["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(b["requests"][0]["outputDimensionality"], 4);
    }

    #[test]
    fn batch_limits() {
        assert_eq!(max_batch(ProviderKind::Gemini), 100);
        assert_eq!(max_batch(ProviderKind::OpenAiCompatible), 2048);
    }

    #[test]
    fn refusals() {
        let r = req(json!({"model": "m", "input": [1, 2]}));
        let a = cfg(ProviderKind::Anthropic, "http://a");
        assert!(matches!(
            embed_request(&a, &r, "m"),
            Err(Unsupported::NoEmbeddings(_))
        ));
        let g = cfg(ProviderKind::Gemini, "http://g");
        assert!(matches!(
            embed_request(&g, &r, "m"),
            Err(Unsupported::TextOnly(_))
        ));
    }

    #[test]
    fn parses_both_responses_in_order() {
        let openai = json!({"object": "list", "data": [
            {"object": "embedding", "index": 1, "embedding": [0.5]},
            {"object": "embedding", "index": 0, "embedding": [0.25]}],
            "usage": {"prompt_tokens": 7, "total_tokens": 7}});
        let e = parse_embed_response(
            ProviderKind::OpenAiCompatible,
            200,
            &[],
            openai.to_string().as_bytes(),
            2,
            0,
        )
        .unwrap();
        assert_eq!(e.vectors, vec![vec![0.25], vec![0.5]]);
        assert_eq!(e.prompt_tokens, Some(7));
        let gemini = json!({"embeddings": [{"values": [1.0, 2.0]}]});
        let g = parse_embed_response(
            ProviderKind::Gemini,
            200,
            &[],
            gemini.to_string().as_bytes(),
            1,
            0,
        )
        .unwrap();
        assert_eq!(g.vectors, vec![vec![1.0, 2.0]]);
        assert_eq!(g.prompt_tokens, None);
    }

    #[test]
    fn wrong_shapes_and_statuses_are_failures() {
        let k = ProviderKind::OpenAiCompatible;
        let bad = parse_embed_response(k, 200, &[], b"{\"data\": []}", 1, 0).unwrap_err();
        assert!(!bad.is_retryable());
        let not_json = parse_embed_response(k, 200, &[], b"nope", 1, 0).unwrap_err();
        assert_eq!(not_json.failure, None);
        let e503 = parse_embed_response(k, 503, &[], b"{}", 1, 0).unwrap_err();
        assert!(e503.is_retryable());
    }
}
