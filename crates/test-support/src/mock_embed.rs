//! The mock providers' embeddings endpoints (issue 15): OpenAI's
//! `POST /v1/embeddings` and Gemini's `:batchEmbedContents` /
//! `:embedContent`, answering deterministic vectors (a hash of each input,
//! `dimensions` / `outputDimensionality` long, 8 by default). Failure
//! injection, delays and keys are the chat mock's (see `mock_llm`).

use serde_json::{Value, json};

/// Vector length when the request names none.
pub const DEFAULT_DIMENSIONS: usize = 8;

/// A deterministic vector for `text`: FNV-1a of the text seeding a
/// splitmix64 sequence mapped into `[-1, 1)`.
pub fn vector(text: &str, dims: usize) -> Vec<f64> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Rounded to 1/1024 so the f32 round trip through DOL is exact.
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 1024.0
        })
        .map(|x: f64| x.floor() / 1024.0)
        .collect()
}

fn dims(v: Option<&Value>) -> usize {
    v.and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| (1..=4096).contains(d))
        .unwrap_or(DEFAULT_DIMENSIONS)
}

/// The model an OpenAI embeddings body names.
pub fn openai_model(body: &Value) -> String {
    body["model"].as_str().unwrap_or_default().to_owned()
}

/// Answers an OpenAI embeddings body, or a 400 message.
pub fn openai(body: &Value) -> Result<Value, String> {
    let model = body["model"]
        .as_str()
        .ok_or("you must provide a model parameter")?;
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Array(_) => Ok(i.to_string()),
                _ => Err("'$.input' is invalid.".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("'$.input' is invalid.".to_owned()),
    };
    if body.get("encoding_format").and_then(Value::as_str) == Some("base64") {
        return Err("mock-llm answers float vectors only".to_owned());
    }
    let n = dims(body.get("dimensions"));
    let tokens: usize = inputs
        .iter()
        .map(|s| s.split_whitespace().count().max(1))
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": vector(s, n)}))
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

fn gemini_one(request: &Value) -> Result<Value, String> {
    let text: String = request["content"]["parts"]
        .as_array()
        .ok_or("content.parts is required")?
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    Ok(json!({"values": vector(&text, dims(request.get("outputDimensionality")))}))
}

/// Answers a Gemini `batchEmbedContents` (`batch`) or `embedContent` body
/// for the model in the path, or a 400 message.
pub fn gemini(body: &Value, path_model: &str, batch: bool) -> Result<Value, String> {
    if !batch {
        return Ok(json!({"embedding": gemini_one(body)?}));
    }
    let requests = body["requests"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or("requests must be a non-empty list")?;
    // The real API's limit.
    if requests.len() > 100 {
        return Err(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
                .to_owned(),
        );
    }
    let want = format!("models/{path_model}");
    let mut out = Vec::new();
    for r in requests {
        if r["model"].as_str() != Some(want.as_str()) {
            return Err(format!(
                "Model {} in a batch request does not match {want}",
                r["model"]
            ));
        }
        out.push(gemini_one(r)?);
    }
    Ok(json!({"embeddings": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_sized() {
        assert_eq!(vector("a", 4), vector("a", 4));
        assert_ne!(vector("a", 4), vector("b", 4));
        assert_eq!(vector("a", 3).len(), 3);
    }

    #[test]
    fn openai_and_gemini_shapes() {
        let o = openai(&json!({"model": "m", "input": ["x", "y"], "dimensions": 4})).unwrap();
        assert_eq!(o["data"][1]["index"], 1);
        assert_eq!(o["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert!(openai(&json!({"model": "m", "input": []})).is_err());
        let g = gemini(
            &json!({"requests": [{"model": "models/e", "content": {"parts": [{"text": "x"}]}}]}),
            "e",
            true,
        )
        .unwrap();
        assert_eq!(g["embeddings"][0]["values"].as_array().unwrap().len(), 8);
        assert!(
            gemini(
                &json!({"requests": [{"model": "models/other", "content": {"parts": []}}]}),
                "e",
                true
            )
            .is_err()
        );
    }
}
