//! `POST /v1/images/generations` in OpenAI's shape (issue 15): the request
//! and its validation, the price of one image by size and quality, and the
//! response body. Provider wire mappings are in
//! [`providers::image`](super::providers::image); the request pipeline is
//! [`image_pipeline`](super::image_pipeline).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::openai::{ErrorBody, ErrorType};

/// The catalog capability naming an image model.
pub const CAPABILITY: &str = "images";
/// Most images in one request (OpenAI's limit).
pub const MAX_IMAGES: u32 = 10;
/// Longest prompt, in characters (OpenAI's limit for its GPT image models).
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// The sizes OpenAI's image models take (`auto` lets the model choose).
pub const SIZES: &[&str] = &[
    "256x256",
    "512x512",
    "1024x1024",
    "1792x1024",
    "1024x1792",
    "1536x1024",
    "1024x1536",
    "auto",
];
/// The qualities OpenAI's image models take.
pub const QUALITIES: &[&str] = &["standard", "hd", "low", "medium", "high", "auto"];
/// The size priced when a request names none (OpenAI's default for DALL·E).
pub const DEFAULT_SIZE: &str = "1024x1024";
/// The quality priced when a request names none (OpenAI's default for DALL·E).
pub const DEFAULT_QUALITY: &str = "standard";
/// Parameters DOL reads; OpenAI refuses any other, and so does DOL.
const KNOWN: &[&str] = &[
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "response_format",
    "user",
    "style",
];

/// How images are sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// A URL per image (`data:` URLs when the provider answered bytes).
    #[default]
    Url,
    /// Base64 image bytes.
    B64Json,
}

/// A validated image generation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// `auto` or a catalog image model.
    pub model: String,
    /// What to draw.
    pub prompt: String,
    /// How many images.
    pub n: u32,
    /// `WIDTHxHEIGHT` or `auto`, as given.
    pub size: Option<String>,
    /// Quality, as given.
    pub quality: Option<String>,
    /// `vivid` or `natural` (DALL·E 3), as given.
    pub style: Option<String>,
    /// How the caller wants the images.
    pub format: ImageFormat,
    /// Whether the caller named `response_format` (passed on only then).
    pub format_given: bool,
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

fn one_of(
    f: &Map<String, Value>,
    name: &str,
    allowed: &[&str],
) -> Result<Option<String>, ErrorBody> {
    match f.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(_) => Err(bad(
            &format!("`{name}` must be one of: {}", allowed.join(", ")),
            name,
        )),
    }
}

impl ImageRequest {
    /// Parses and validates a request body; the error names the parameter.
    pub fn from_json(body: &[u8]) -> Result<Self, ErrorBody> {
        let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
            return Err(bad("body must be a JSON object", "body"));
        };
        if let Some(k) = f.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(bad(
                &format!("Unrecognized request argument supplied: {k}"),
                k,
            ));
        }
        let model = match f.get("model") {
            None | Some(Value::Null) => "auto".to_owned(),
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => return Err(bad("`model` must be a non-empty string", "model")),
        };
        let prompt = match f.get("prompt") {
            None | Some(Value::Null) => return Err(bad("`prompt` is required", "prompt")),
            Some(Value::String(p)) if p.trim().is_empty() => {
                return Err(bad("`prompt` must not be empty", "prompt"));
            }
            Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
                return Err(bad(
                    &format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters"),
                    "prompt",
                ));
            }
            Some(Value::String(p)) => p.clone(),
            Some(_) => return Err(bad("`prompt` must be a string", "prompt")),
        };
        let n = match f.get("n") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_IMAGES)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    bad(
                        &format!("`n` must be an integer from 1 to {MAX_IMAGES}"),
                        "n",
                    )
                })?,
        };
        let format = match one_of(&f, "response_format", &["url", "b64_json"])?.as_deref() {
            Some("b64_json") => ImageFormat::B64Json,
            _ => ImageFormat::Url,
        };
        let user = match f.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()),
            Some(_) => return Err(bad("`user` must be a string", "user")),
        };
        Ok(Self {
            model,
            prompt,
            n,
            size: one_of(&f, "size", SIZES)?,
            quality: one_of(&f, "quality", QUALITIES)?,
            style: one_of(&f, "style", &["vivid", "natural"])?,
            format,
            format_given: f.get("response_format").is_some_and(|v| !v.is_null()),
            user,
        })
    }

    /// The size priced: the one asked for, or [`DEFAULT_SIZE`].
    pub fn priced_size(&self) -> &str {
        self.size.as_deref().unwrap_or(DEFAULT_SIZE)
    }

    /// The quality priced: the one asked for, or [`DEFAULT_QUALITY`].
    pub fn priced_quality(&self) -> &str {
        self.quality.as_deref().unwrap_or(DEFAULT_QUALITY)
    }
}

/// Whether `key` is a valid catalog price key: `{size}/{quality}`, `{size}`
/// or `*`, with a size and quality from [`SIZES`] and [`QUALITIES`].
pub fn is_price_key(key: &str) -> bool {
    match key.split_once('/') {
        _ if key == "*" => true,
        Some((size, quality)) => SIZES.contains(&size) && QUALITIES.contains(&quality),
        None => SIZES.contains(&key),
    }
}

/// Micro-dollars for one image of `req`'s size and quality from a catalog
/// price table: the most specific key wins (`{size}/{quality}`, then
/// `{size}`, then `*`); `None` when no key matches (the cost is unknown).
pub fn image_price(prices: &BTreeMap<String, u64>, req: &ImageRequest) -> Option<u64> {
    let size = req.priced_size();
    let exact = format!("{size}/{}", req.priced_quality());
    prices
        .get(&exact)
        .or_else(|| prices.get(size))
        .or_else(|| prices.get("*"))
        .copied()
}

/// One generated image as a provider answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// A URL the provider serves the image at.
    pub url: Option<String>,
    /// The image bytes, base64.
    pub b64: Option<String>,
    /// Its media type, when the provider named it.
    pub mime: Option<String>,
    /// The prompt the model used, when it revised it.
    pub revised_prompt: Option<String>,
}

/// OpenAI's images response: `{created, data: [{url | b64_json,
/// revised_prompt?}]}`. A URL is asked for but the provider answered bytes:
/// a `data:` URL carries them.
pub fn response_body(images: &[Image], format: ImageFormat, created: u64) -> Value {
    let data: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut o = Map::new();
            match (format, &i.url, &i.b64) {
                (ImageFormat::B64Json, _, Some(b)) => {
                    o.insert("b64_json".to_owned(), json!(b));
                }
                (_, Some(u), _) => {
                    o.insert("url".to_owned(), json!(u));
                }
                (_, None, Some(b)) => {
                    let mime = i.mime.as_deref().unwrap_or("image/png");
                    o.insert("url".to_owned(), json!(format!("data:{mime};base64,{b}")));
                }
                (_, None, None) => {}
            }
            if let Some(p) = &i.revised_prompt {
                o.insert("revised_prompt".to_owned(), json!(p));
            }
            Value::Object(o)
        })
        .collect();
    json!({"created": created, "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ImageRequest, ErrorBody> {
        ImageRequest::from_json(v.to_string().as_bytes())
    }

    fn param(v: Value) -> Option<String> {
        parse(v).unwrap_err().error.param
    }

    #[test]
    fn a_full_request_parses_with_defaults() {
        let r = parse(json!({"prompt": "a cat"})).unwrap();
        assert_eq!(
            (r.model.as_str(), r.n, r.format),
            ("auto", 1, ImageFormat::Url)
        );
        assert!(!r.format_given);
        assert_eq!(
            (r.priced_size(), r.priced_quality()),
            ("1024x1024", "standard")
        );
        let r = parse(
            json!({"model": "dall-e-3", "prompt": "p", "n": 2, "size": "1792x1024",
            "quality": "hd", "response_format": "b64_json", "user": "u", "style": "vivid"}),
        )
        .unwrap();
        assert_eq!(r.format, ImageFormat::B64Json);
        assert!(r.format_given);
        assert_eq!(r.size.as_deref(), Some("1792x1024"));
    }

    #[test]
    fn each_bad_input_names_its_parameter() {
        assert_eq!(
            ImageRequest::from_json(b"[]")
                .unwrap_err()
                .error
                .param
                .as_deref(),
            Some("body")
        );
        assert_eq!(param(json!({})).as_deref(), Some("prompt"));
        assert_eq!(param(json!({"prompt": " "})).as_deref(), Some("prompt"));
        assert_eq!(param(json!({"prompt": 3})).as_deref(), Some("prompt"));
        let long = "x".repeat(MAX_PROMPT_CHARS + 1);
        assert_eq!(param(json!({"prompt": long})).as_deref(), Some("prompt"));
        assert_eq!(
            param(json!({"prompt": "p", "model": ""})).as_deref(),
            Some("model")
        );
        assert_eq!(param(json!({"prompt": "p", "n": 0})).as_deref(), Some("n"));
        assert_eq!(param(json!({"prompt": "p", "n": 11})).as_deref(), Some("n"));
        assert_eq!(
            param(json!({"prompt": "p", "n": 1.5})).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(json!({"prompt": "p", "size": "9x9"})).as_deref(),
            Some("size")
        );
        assert_eq!(
            param(json!({"prompt": "p", "quality": "ultra"})).as_deref(),
            Some("quality")
        );
        assert_eq!(
            param(json!({"prompt": "p", "response_format": "png"})).as_deref(),
            Some("response_format")
        );
        assert_eq!(
            param(json!({"prompt": "p", "style": "bold"})).as_deref(),
            Some("style")
        );
        assert_eq!(
            param(json!({"prompt": "p", "user": 1})).as_deref(),
            Some("user")
        );
        assert_eq!(
            param(json!({"prompt": "p", "seed": 1})).as_deref(),
            Some("seed")
        );
    }

    #[test]
    fn the_most_specific_price_key_wins_and_a_miss_is_unknown() {
        let prices = BTreeMap::from([
            ("1024x1024/hd".to_owned(), 80_000),
            ("1024x1024".to_owned(), 40_000),
            ("*".to_owned(), 1),
        ]);
        let mut r = parse(json!({"prompt": "p"})).unwrap();
        assert_eq!(image_price(&prices, &r), Some(40_000));
        r.quality = Some("hd".to_owned());
        assert_eq!(image_price(&prices, &r), Some(80_000));
        r.size = Some("512x512".to_owned());
        assert_eq!(image_price(&prices, &r), Some(1));
        assert_eq!(image_price(&BTreeMap::new(), &r), None);
        assert!(is_price_key("1024x1024/hd") && is_price_key("auto") && is_price_key("*"));
        assert!(!is_price_key("1024x1024/ultra") && !is_price_key("big"));
    }

    #[test]
    fn bytes_become_data_urls_when_urls_are_asked_for() {
        let images = [
            Image {
                url: None,
                b64: Some("AAA=".to_owned()),
                mime: None,
                revised_prompt: Some("r".to_owned()),
            },
            Image {
                url: Some("https://x/y.png".to_owned()),
                b64: None,
                mime: None,
                revised_prompt: None,
            },
        ];
        let v = response_body(&images, ImageFormat::Url, 7);
        assert_eq!(v["created"], 7);
        assert_eq!(v["data"][0]["url"], "data:image/png;base64,AAA=");
        assert_eq!(v["data"][0]["revised_prompt"], "r");
        assert_eq!(v["data"][1]["url"], "https://x/y.png");
        let b = response_body(&images[..1], ImageFormat::B64Json, 7);
        assert_eq!(b["data"][0]["b64_json"], "AAA=");
    }
}
