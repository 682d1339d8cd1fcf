//! Image generation requests and responses per provider protocol (issue 15).
//!
//! - **OpenAI-compatible**: `POST {base}/images/generations` with `{model,
//!   prompt, n, size?, quality?, style?, response_format?, user?}`, the
//!   caller's fields passed on as given; the answer is `data[]` of `url` or
//!   `b64_json` (+ `revised_prompt`). OpenAI's GPT image models refuse
//!   `response_format` (they always answer `b64_json`), so it is not sent to
//!   a model named `gpt-image-*`.
//! - **Gemini** (Imagen): `POST {base}/v1beta/models/{model}:predict` with
//!   `{"instances": [{"prompt"}], "parameters": {"sampleCount", "aspectRatio"}}`;
//!   the answer is `predictions[]` of `bytesBase64Encoded` and `mimeType`.
//!   Imagen takes aspect ratios, so only sizes with an exact one are mapped
//!   (1:1, 16:9, 9:16); quality and style have no Imagen equivalent and are
//!   refused rather than dropped.
//! - **Anthropic** has no image generation API: refused.

use serde_json::{Map, Value, json};

use super::super::images::{Image, ImageRequest};
use super::error::{ProviderFailure, classify_error, embedded_error};
use super::{HttpRequestSpec, ProviderConfig, ProviderKind, endpoint, gemini, openai_compat, post};

/// Why a provider cannot take an image request at all (a 400 for a pinned
/// model; a skipped candidate for `auto`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// The protocol has no image generation endpoint.
    #[error("provider `{0}` (Anthropic protocol) has no image generation API")]
    NoImages(String),
    /// Imagen has no aspect ratio for this size.
    #[error(
        "provider `{0}` (Gemini Imagen) has no aspect ratio for size {1}; use 256x256, 512x512, 1024x1024, 1792x1024 or 1024x1792"
    )]
    Size(String, String),
    /// Imagen has no such parameter.
    #[error("provider `{0}` (Gemini Imagen) takes no `{1}` parameter")]
    Parameter(String, &'static str),
}

/// Imagen's aspect ratio for an OpenAI size (`None` when there is no exact one).
fn aspect_ratio(size: &str) -> Option<&'static str> {
    match size {
        "256x256" | "512x512" | "1024x1024" | "auto" => Some("1:1"),
        "1792x1024" => Some("16:9"),
        "1024x1792" => Some("9:16"),
        _ => None,
    }
}

/// Whether `cfg`'s protocol can serve `req` (checked before any request is built).
pub fn supports(cfg: &ProviderConfig, req: &ImageRequest) -> Result<(), Unsupported> {
    match cfg.kind {
        ProviderKind::Anthropic => Err(Unsupported::NoImages(cfg.name.clone())),
        ProviderKind::Gemini => {
            if req.quality.is_some() {
                return Err(Unsupported::Parameter(cfg.name.clone(), "quality"));
            }
            if req.style.is_some() {
                return Err(Unsupported::Parameter(cfg.name.clone(), "style"));
            }
            match aspect_ratio(req.priced_size()) {
                Some(_) => Ok(()),
                None => Err(Unsupported::Size(
                    cfg.name.clone(),
                    req.priced_size().to_owned(),
                )),
            }
        }
        ProviderKind::OpenAiCompatible => Ok(()),
    }
}

/// The image generation request for `req` by `model` at `cfg`'s provider.
pub fn image_request(
    cfg: &ProviderConfig,
    req: &ImageRequest,
    model: &str,
) -> Result<HttpRequestSpec, Unsupported> {
    supports(cfg, req)?;
    Ok(match cfg.kind {
        ProviderKind::Gemini => {
            let model = model.strip_prefix("models/").unwrap_or(model);
            let parameters = json!({
                "sampleCount": req.n,
                "aspectRatio": aspect_ratio(req.priced_size()).unwrap_or("1:1"),
            });
            post(
                gemini::url(cfg, &format!("models/{model}:predict")),
                gemini::request_headers(cfg, false),
                &json!({"instances": [{"prompt": req.prompt}], "parameters": parameters}),
            )
        }
        _ => {
            let mut body = Map::new();
            body.insert("model".to_owned(), json!(model));
            body.insert("prompt".to_owned(), json!(req.prompt));
            body.insert("n".to_owned(), json!(req.n));
            let fields = [
                ("size", &req.size),
                ("quality", &req.quality),
                ("style", &req.style),
                ("user", &req.user),
            ];
            for (name, value) in fields {
                if let Some(v) = value {
                    body.insert(name.to_owned(), json!(v));
                }
            }
            if req.format_given && !model.starts_with("gpt-image") {
                let f = match req.format {
                    super::super::images::ImageFormat::B64Json => "b64_json",
                    super::super::images::ImageFormat::Url => "url",
                };
                body.insert("response_format".to_owned(), json!(f));
            }
            post(
                endpoint(&cfg.base_url, "images/generations"),
                openai_compat::auth_headers(cfg, false),
                &Value::Object(body),
            )
        }
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Interprets an image response: the images for a 2xx body of the right
/// shape, otherwise the classified failure.
pub fn parse_image_response(
    kind: ProviderKind,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_s: u64,
) -> Result<Vec<Image>, ProviderFailure> {
    if !(200..=299).contains(&status) {
        return Err(classify_error(kind, status, headers, body, now_unix_s));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderFailure::malformed("response body is not JSON"))?;
    if let Some(failure) = embedded_error(kind, &v, headers, now_unix_s) {
        return Err(failure);
    }
    let images: Vec<Image> = match kind {
        ProviderKind::Gemini => v["predictions"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|p| Image {
                        url: None,
                        b64: text(p, "bytesBase64Encoded"),
                        mime: text(p, "mimeType"),
                        revised_prompt: text(p, "prompt"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => v["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|d| Image {
                        url: text(d, "url"),
                        b64: text(d, "b64_json"),
                        mime: None,
                        revised_prompt: text(d, "revised_prompt"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    if images.is_empty() || images.iter().any(|i| i.url.is_none() && i.b64.is_none()) {
        return Err(ProviderFailure::malformed(
            "image response has no image where expected",
        ));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{body, cfg};
    use super::*;

    fn req(v: Value) -> ImageRequest {
        ImageRequest::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn openai_request_passes_the_callers_fields() {
        let c = cfg(ProviderKind::OpenAiCompatible, "http://h/v1");
        let r = req(
            json!({"prompt": "a cat", "n": 2, "size": "1024x1792", "quality": "hd",
            "response_format": "b64_json", "user": "u", "style": "natural"}),
        );
        let spec = image_request(&c, &r, "dall-e-3").unwrap();
        assert_eq!(spec.url, "http://h/v1/images/generations");
        let b = body(&spec);
        assert_eq!(b["model"], "dall-e-3");
        assert_eq!(b["prompt"], "a cat");
        assert_eq!(b["n"], 2);
        assert_eq!(b["size"], "1024x1792");
        assert_eq!(b["quality"], "hd");
        assert_eq!(b["style"], "natural");
        assert_eq!(b["user"], "u");
        assert_eq!(b["response_format"], "b64_json");
        let gpt = body(&image_request(&c, &r, "gpt-image-1").unwrap());
        assert_eq!(gpt.get("response_format"), None);
        let plain = body(&image_request(&c, &req(json!({"prompt": "p"})), "dall-e-2").unwrap());
        assert_eq!(plain.get("size"), None);
        assert_eq!(plain.get("response_format"), None);
    }

    #[test]
    fn gemini_request_is_an_imagen_predict() {
        let c = cfg(ProviderKind::Gemini, "http://g");
        let r = req(json!({"prompt": "a cat", "n": 3, "size": "1792x1024"}));
        let spec = image_request(&c, &r, "imagen-4.0-generate-001").unwrap();
        assert_eq!(
            spec.url,
            "http://g/v1beta/models/imagen-4.0-generate-001:predict"
        );
        let b = body(&spec);
        assert_eq!(b["instances"][0]["prompt"], "a cat");
        assert_eq!(b["parameters"]["sampleCount"], 3);
        assert_eq!(b["parameters"]["aspectRatio"], "16:9");
    }

    #[test]
    fn refusals() {
        let r = req(json!({"prompt": "p"}));
        let a = cfg(ProviderKind::Anthropic, "http://a");
        assert!(matches!(
            image_request(&a, &r, "m"),
            Err(Unsupported::NoImages(_))
        ));
        let g = cfg(ProviderKind::Gemini, "http://g");
        let wide = req(json!({"prompt": "p", "size": "1536x1024"}));
        assert!(matches!(supports(&g, &wide), Err(Unsupported::Size(..))));
        let hd = req(json!({"prompt": "p", "quality": "hd"}));
        assert!(matches!(
            supports(&g, &hd),
            Err(Unsupported::Parameter(_, "quality"))
        ));
        let vivid = req(json!({"prompt": "p", "style": "vivid"}));
        assert!(matches!(
            supports(&g, &vivid),
            Err(Unsupported::Parameter(_, "style"))
        ));
    }

    #[test]
    fn parses_both_responses() {
        let openai =
            json!({"created": 1, "data": [{"url": "https://x/1.png", "revised_prompt": "r"}]});
        let o = parse_image_response(
            ProviderKind::OpenAiCompatible,
            200,
            &[],
            openai.to_string().as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(o[0].url.as_deref(), Some("https://x/1.png"));
        assert_eq!(o[0].revised_prompt.as_deref(), Some("r"));
        let gemini =
            json!({"predictions": [{"bytesBase64Encoded": "AAA=", "mimeType": "image/png"}]});
        let g = parse_image_response(
            ProviderKind::Gemini,
            200,
            &[],
            gemini.to_string().as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(g[0].b64.as_deref(), Some("AAA="));
        assert_eq!(g[0].mime.as_deref(), Some("image/png"));
    }

    #[test]
    fn wrong_shapes_and_statuses_are_failures() {
        let k = ProviderKind::OpenAiCompatible;
        let empty = parse_image_response(k, 200, &[], b"{\"data\": []}", 0).unwrap_err();
        assert!(!empty.is_retryable());
        let no_image = parse_image_response(k, 200, &[], b"{\"data\": [{}]}", 0).unwrap_err();
        assert!(!no_image.is_retryable());
        let e503 = parse_image_response(k, 503, &[], b"{}", 0).unwrap_err();
        assert!(e503.is_retryable());
        let e400 = parse_image_response(k, 400, &[], b"{}", 0).unwrap_err();
        assert_eq!(e400.class, super::super::ErrorClass::BadRequest);
    }
}
