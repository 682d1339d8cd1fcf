//! The mock providers' image generation endpoints (issue 15): OpenAI's
//! `POST /v1/images/generations` and Gemini Imagen's `:predict`, answering
//! `n` tiny deterministic PNGs (a 1×1 pixel whose colour is a hash of the
//! prompt), as URLs or base64 the way each API does. Failure injection,
//! delays and keys are the chat mock's (see `mock_llm`).

use serde_json::{Value, json};

/// The base URL of the URLs the OpenAI mock answers (never fetched).
pub const URL_BASE: &str = "https://images.mock-llm.invalid";

/// A valid 1×1 RGB PNG whose pixel is derived from `prompt`, base64.
pub fn png_b64(prompt: &str) -> String {
    let h = prompt.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [r, g, b, _] = h.to_le_bytes();
    let raw = [0u8, r, g, b];
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    // zlib: a stored (uncompressed) block holding the one scanline.
    let mut z = vec![0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff];
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    b64(&png)
}

/// Standard base64 with padding (the crate keeps its dependencies few).
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn count(v: Option<&Value>, max: u64) -> Result<u64, String> {
    match v {
        None | Some(Value::Null) => Ok(1),
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("Invalid 'n': must be between 1 and {max}.")),
    }
}

/// Answers an OpenAI images body, or a 400 message. Like the real API,
/// `gpt-image-*` models answer base64 and refuse `response_format`, DALL·E 3
/// makes one image per request and revises the prompt.
pub fn openai(body: &Value, created: u64) -> Result<Value, String> {
    let model = body["model"].as_str().unwrap_or("dall-e-2");
    let prompt = body["prompt"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or("'prompt' is a required property")?;
    let gpt_image = model.starts_with("gpt-image");
    if gpt_image && body.get("response_format").is_some() {
        return Err("Unknown parameter: 'response_format'.".to_owned());
    }
    let n = count(body.get("n"), if model == "dall-e-3" { 1 } else { 10 })?;
    let b64 = gpt_image || body["response_format"].as_str() == Some("b64_json");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut d = if b64 {
                json!({"b64_json": png_b64(&format!("{prompt}#{i}"))})
            } else {
                json!({"url": format!("{URL_BASE}/{model}/{i}.png")})
            };
            if model == "dall-e-3" {
                d["revised_prompt"] = json!(format!("A detailed picture of {prompt}"));
            }
            d
        })
        .collect();
    Ok(json!({"created": created, "data": data}))
}

/// Answers a Gemini Imagen `:predict` body, or a 400 message.
pub fn gemini(body: &Value) -> Result<Value, String> {
    let prompt = body["instances"][0]["prompt"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or("instances[0].prompt is required")?;
    let n = count(body["parameters"].get("sampleCount"), 4)?;
    let ratio = body["parameters"]["aspectRatio"].as_str().unwrap_or("1:1");
    if !["1:1", "3:4", "4:3", "9:16", "16:9"].contains(&ratio) {
        return Err(format!("Unsupported aspect ratio: {ratio}"));
    }
    let predictions: Vec<Value> = (0..n)
        .map(|i| json!({"bytesBase64Encoded": png_b64(&format!("{prompt}#{i}")), "mimeType": "image/png"}))
        .collect();
    Ok(json!({"predictions": predictions}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pngs_are_valid_and_deterministic() {
        assert!(png_b64("cat").starts_with("iVBORw0KGgo"));
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"abc"), "YWJj");
        assert_eq!(png_b64("cat"), png_b64("cat"));
        assert_ne!(png_b64("cat"), png_b64("dog"));
    }

    #[test]
    fn openai_and_gemini_shapes() {
        let o = openai(&json!({"model": "dall-e-2", "prompt": "p", "n": 2}), 5).unwrap();
        assert_eq!(o["data"][1]["url"], format!("{URL_BASE}/dall-e-2/1.png"));
        let d3 = openai(
            &json!({"model": "dall-e-3", "prompt": "p", "response_format": "b64_json"}),
            5,
        )
        .unwrap();
        assert!(d3["data"][0]["b64_json"].is_string());
        assert!(d3["data"][0]["revised_prompt"].is_string());
        assert!(openai(&json!({"model": "dall-e-3", "prompt": "p", "n": 2}), 5).is_err());
        assert!(
            openai(
                &json!({"model": "gpt-image-1", "prompt": "p", "response_format": "url"}),
                5
            )
            .is_err()
        );
        let g = gemini(&json!({"instances": [{"prompt": "p"}], "parameters": {"sampleCount": 2}}))
            .unwrap();
        assert_eq!(g["predictions"].as_array().unwrap().len(), 2);
        assert!(gemini(&json!({"instances": []})).is_err());
    }
}
