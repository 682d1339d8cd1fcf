//! `POST /v1/embeddings` in OpenAI's shape (issue 15): the request and its
//! validation, the response (float or base64 vectors), the offline basic
//! provider's deterministic hashed bag-of-words vector, and the cache key by
//! exact input. Provider wire mappings are in
//! [`providers::embed`](super::providers::embed); the request pipeline is
//! [`embedding_pipeline`](super::embedding_pipeline).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::openai::{ErrorBody, ErrorType};
use super::text;

/// The offline provider's embedding model (labelled: not a semantic model).
pub const OFFLINE_MODEL: &str = "dol-basic-embedding";
/// The offline vector's length when the request names no `dimensions`.
pub const OFFLINE_DIMENSIONS: u32 = 256;
/// Largest `dimensions` accepted.
pub const MAX_DIMENSIONS: u32 = 8_192;
/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2_048;
/// The catalog capability naming an embedding model.
pub const CAPABILITY: &str = "embeddings";

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbedInput {
    /// A text.
    Text(String),
    /// Token ids (only OpenAI-compatible providers and the offline provider take these).
    Tokens(Vec<u64>),
}

/// How vectors are sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// JSON numbers.
    #[default]
    Float,
    /// Little-endian float32 bytes, base64.
    Base64,
}

/// A validated embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    /// `auto`, a catalog model, or [`OFFLINE_MODEL`].
    pub model: String,
    /// The inputs, in order.
    pub inputs: Vec<EmbedInput>,
    /// Wanted vector length.
    pub dimensions: Option<u32>,
    /// Response encoding.
    pub encoding: Encoding,
    /// The end user, passed on.
    pub user: Option<String>,
}

fn bad(message: &str, param: &str) -> ErrorBody {
    ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    )
}

fn parse_tokens(items: &[Value]) -> Option<Vec<u64>> {
    items.iter().map(Value::as_u64).collect()
}

fn parse_inputs(v: Option<&Value>) -> Result<Vec<EmbedInput>, ErrorBody> {
    let empty = || bad("`input` must not be empty", "input");
    let inputs = match v {
        None | Some(Value::Null) => return Err(bad("`input` is required", "input")),
        Some(Value::String(s)) => vec![EmbedInput::Text(s.clone())],
        Some(Value::Array(items)) if items.is_empty() => return Err(empty()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            let t = parse_tokens(items)
                .ok_or_else(|| bad("token ids must be non-negative integers", "input"))?;
            vec![EmbedInput::Tokens(t)]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(EmbedInput::Text(s.clone())),
                Value::Array(t) if !t.is_empty() => parse_tokens(t)
                    .map(EmbedInput::Tokens)
                    .ok_or_else(|| bad("token ids must be non-negative integers", "input")),
                _ => Err(bad(
                    "`input` must be a string, an array of strings, or token arrays",
                    "input",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                "`input` must be a string, an array of strings, or token arrays",
                "input",
            ));
        }
    };
    if inputs.len() > MAX_INPUTS {
        return Err(bad(
            &format!("`input` holds more than {MAX_INPUTS} items"),
            "input",
        ));
    }
    if inputs.iter().any(|i| match i {
        EmbedInput::Text(s) => s.is_empty(),
        EmbedInput::Tokens(t) => t.is_empty(),
    }) {
        return Err(empty());
    }
    Ok(inputs)
}

impl EmbeddingRequest {
    /// Parses and validates a request body; the error names the parameter.
    pub fn from_json(body: &[u8]) -> Result<Self, ErrorBody> {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err(bad("body must be a JSON object", "body"));
        };
        Self::from_fields(&fields)
    }

    fn from_fields(f: &Map<String, Value>) -> Result<Self, ErrorBody> {
        let model = match f.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            None | Some(Value::Null) => return Err(bad("`model` is required", "model")),
            Some(_) => return Err(bad("`model` must be a non-empty string", "model")),
        };
        let inputs = parse_inputs(f.get("input"))?;
        let dimensions = match f.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|d| (1..=u64::from(MAX_DIMENSIONS)).contains(d))
                    .and_then(|d| u32::try_from(d).ok())
                    .ok_or_else(|| {
                        bad(
                            &format!("`dimensions` must be an integer from 1 to {MAX_DIMENSIONS}"),
                            "dimensions",
                        )
                    })?,
            ),
        };
        let encoding = match f.get("encoding_format") {
            None | Some(Value::Null) => Encoding::Float,
            Some(Value::String(s)) if s == "float" => Encoding::Float,
            Some(Value::String(s)) if s == "base64" => Encoding::Base64,
            Some(_) => {
                return Err(bad(
                    "`encoding_format` must be `float` or `base64`",
                    "encoding_format",
                ));
            }
        };
        let user = match f.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()),
            Some(_) => return Err(bad("`user` must be a string", "user")),
        };
        Ok(Self {
            model,
            inputs,
            dimensions,
            encoding,
            user,
        })
    }

    /// Whether any input is a token array.
    pub fn has_tokens(&self) -> bool {
        self.inputs
            .iter()
            .any(|i| matches!(i, EmbedInput::Tokens(_)))
    }

    fn input_tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.inputs.iter().map(|i| match i {
            EmbedInput::Text(s) => text::approx_tokens(s).max(1),
            EmbedInput::Tokens(t) => t.len() as u64,
        })
    }

    /// Approximate input tokens (for budgets, and when a provider reports none).
    pub fn approx_tokens(&self) -> u64 {
        self.input_tokens().sum()
    }

    /// Approximate tokens of the longest input (what must fit a model's window).
    pub fn longest_input_tokens(&self) -> u64 {
        self.input_tokens().max().unwrap_or(0)
    }
}

/// Vectors and token usage from a provider (or the offline provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedded {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens the provider counted (`None`: it reported none).
    pub prompt_tokens: Option<u64>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A vector as OpenAI's base64: little-endian float32 bytes.
pub fn vector_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// The OpenAI response body `{"object": "list", "data": [...], "model", "usage"}`.
pub fn response_body(e: &Embedded, model: &str, encoding: Encoding, prompt_tokens: u64) -> Value {
    let data: Vec<Value> = e
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = match encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => json!(vector_base64(v)),
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The offline provider's vector of one input: a signed hashed bag of words
/// (token ids for token input), L2-normalized. Deterministic, and texts
/// sharing words point the same way, but it is not a semantic model.
pub fn offline_vector(input: &EmbedInput, dimensions: u32) -> Vec<f32> {
    let dims = dimensions.max(1) as usize;
    let mut v = vec![0.0f32; dims];
    let features: Vec<String> = match input {
        EmbedInput::Text(s) => text::words(s),
        EmbedInput::Tokens(t) => t.iter().map(|id| format!("#{id}")).collect(),
    };
    for f in &features {
        let h = fnv1a(f.as_bytes());
        let slot = (h % dims as u64) as usize;
        v[slot] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The offline provider's answer to `req`.
pub fn offline(req: &EmbeddingRequest) -> Embedded {
    let dims = req.dimensions.unwrap_or(OFFLINE_DIMENSIONS);
    Embedded {
        vectors: req.inputs.iter().map(|i| offline_vector(i, dims)).collect(),
        prompt_tokens: Some(req.approx_tokens()),
    }
}

/// The cache key of `req` served by `model` for the API key `scope`:
/// `gw:embcache:<sha256>` over the exact inputs (the encoding is not part of
/// it: vectors are cached as numbers).
pub fn cache_key(req: &EmbeddingRequest, model: &str, scope: &str) -> String {
    let canon = json!({
        "model": model,
        "inputs": req.inputs,
        "dimensions": req.dimensions,
    });
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(canon.to_string().as_bytes());
    let mut key = String::from("gw:embcache:");
    crate::hex::encode_into(&mut key, &h.finalize());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(v: Value) -> Result<EmbeddingRequest, ErrorBody> {
        EmbeddingRequest::from_json(v.to_string().as_bytes())
    }

    fn param(v: Value) -> String {
        parse(v).unwrap_err().error.param.unwrap()
    }

    #[test]
    fn parses_every_input_form() {
        let one = parse(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(one.inputs, vec![EmbedInput::Text("hi".into())]);
        assert_eq!(one.encoding, Encoding::Float);
        let many = parse(json!({"model": "m", "input": ["a", "b"], "dimensions": 8,
            "encoding_format": "base64", "user": "u"}))
        .unwrap();
        assert_eq!(many.inputs.len(), 2);
        assert_eq!(many.dimensions, Some(8));
        assert_eq!(many.encoding, Encoding::Base64);
        assert_eq!(many.user.as_deref(), Some("u"));
        let tokens = parse(json!({"model": "m", "input": [1, 2, 3]})).unwrap();
        assert_eq!(tokens.inputs, vec![EmbedInput::Tokens(vec![1, 2, 3])]);
        assert!(tokens.has_tokens());
        let nested = parse(json!({"model": "m", "input": [[1], [2, 3]]})).unwrap();
        assert_eq!(nested.inputs.len(), 2);
    }

    #[test]
    fn each_bad_input_names_its_parameter() {
        assert_eq!(
            EmbeddingRequest::from_json(b"[1]")
                .unwrap_err()
                .error
                .param
                .unwrap(),
            "body"
        );
        assert_eq!(param(json!({"input": "x"})), "model");
        assert_eq!(param(json!({"model": 3, "input": "x"})), "model");
        assert_eq!(param(json!({"model": "m"})), "input");
        assert_eq!(param(json!({"model": "m", "input": ""})), "input");
        assert_eq!(param(json!({"model": "m", "input": []})), "input");
        assert_eq!(param(json!({"model": "m", "input": [true]})), "input");
        assert_eq!(param(json!({"model": "m", "input": [-1]})), "input");
        assert_eq!(param(json!({"model": "m", "input": {"a": 1}})), "input");
        let too_many = vec!["x"; MAX_INPUTS + 1];
        assert_eq!(param(json!({"model": "m", "input": too_many})), "input");
        assert_eq!(
            param(json!({"model": "m", "input": "x", "dimensions": 0})),
            "dimensions"
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "dimensions": "8"})),
            "dimensions"
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "encoding_format": "int8"})),
            "encoding_format"
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "user": 1})),
            "user"
        );
        let e = parse(json!({"model": "m"})).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // 1.0f32 little-endian is 00 00 80 3f.
        assert_eq!(vector_base64(&[1.0]), "AACAPw==");
    }

    #[test]
    fn offline_vectors_are_deterministic_unit_vectors() {
        let req = parse(json!({"model": OFFLINE_MODEL, "input": ["the cat sat", "the cat sat", "dogs run"], "dimensions": 64})).unwrap();
        let e = offline(&req);
        assert_eq!(e.vectors.len(), 3);
        assert_eq!(e.vectors[0].len(), 64);
        assert_eq!(e.vectors[0], e.vectors[1]);
        assert_ne!(e.vectors[0], e.vectors[2]);
        let norm: f32 = e.vectors[0].iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let default = offline(&parse(json!({"model": "auto", "input": "x"})).unwrap());
        assert_eq!(default.vectors[0].len(), OFFLINE_DIMENSIONS as usize);
    }

    #[test]
    fn response_body_has_openais_shape() {
        let e = Embedded {
            vectors: vec![vec![1.0, 0.0]],
            prompt_tokens: Some(3),
        };
        let body = response_body(&e, "m", Encoding::Float, 3);
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["object"], "embedding");
        assert_eq!(body["data"][0]["index"], 0);
        assert_eq!(body["data"][0]["embedding"], json!([1.0, 0.0]));
        assert_eq!(body["usage"]["total_tokens"], 3);
        let b = response_body(&e, "m", Encoding::Base64, 3);
        assert_eq!(b["data"][0]["embedding"], "AACAPwAAAAA=");
    }

    #[test]
    fn cache_key_depends_on_exact_input_model_scope_and_dimensions() {
        let a = parse(json!({"model": "m", "input": "x"})).unwrap();
        let b = parse(json!({"model": "m", "input": "x", "encoding_format": "base64"})).unwrap();
        let c = parse(json!({"model": "m", "input": "x "})).unwrap();
        let d = parse(json!({"model": "m", "input": "x", "dimensions": 4})).unwrap();
        assert_eq!(cache_key(&a, "m", "k"), cache_key(&b, "m", "k"));
        assert_ne!(cache_key(&a, "m", "k"), cache_key(&c, "m", "k"));
        assert_ne!(cache_key(&a, "m", "k"), cache_key(&d, "m", "k"));
        assert_ne!(cache_key(&a, "m", "k"), cache_key(&a, "m", "other"));
        assert_ne!(cache_key(&a, "m", "k"), cache_key(&a, "n", "k"));
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_errors_are_400(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Err(e) = EmbeddingRequest::from_json(&body) {
                prop_assert_eq!(e.status(), 400);
            }
        }

        #[test]
        fn any_text_list_parses_and_embeds(texts in proptest::collection::vec("[a-z ]{1,20}", 1..8), dims in 1u32..64) {
            let req = parse(json!({"model": "auto", "input": texts, "dimensions": dims})).unwrap();
            let e = offline(&req);
            prop_assert_eq!(e.vectors.len(), req.inputs.len());
            prop_assert!(e.vectors.iter().all(|v| v.len() == dims as usize));
        }

        #[test]
        fn base64_length_is_padded(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(base64(&bytes).len(), bytes.len().div_ceil(3) * 4);
        }
    }
}
