//! OpenAI's `input_reference` (image-to-video), pure: the image a caller
//! uploads with `POST /v1/videos` (a `multipart/form-data` file part, as
//! the official SDKs send it, or `{"image_url": "data:…;base64,…"}`), its
//! checks (a JPEG, PNG or WebP image of at most
//! [`MAX_INPUT_REFERENCE_BYTES`]) and the byte-level multipart parser the
//! route reads the body with.
//!
//! The media type is taken from the image's own bytes (its magic number),
//! not from the part's `Content-Type`, which SDKs guess from a file name:
//! a file that is not one of the three formats is a 400 naming
//! `input_reference` whatever it was labelled.

use crate::error::{ApiError, Code};
use crate::gateway::embeddings::base64;
use crate::hygiene::GATEWAY_BODY_LIMIT;

use super::webhook::base64_decode;

/// The largest image accepted, bytes (3 MiB). Its base64 data URI — the
/// form Runway's `promptImage` and Replicate's image inputs take it in —
/// stays under Runway's 5 MB data-URI limit for images.
pub const MAX_INPUT_REFERENCE_BYTES: usize = 3 * 1024 * 1024;

/// The media types an `input_reference` may have.
pub const MEDIA_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// The image that guides a video.
#[derive(Clone, PartialEq)]
pub struct InputReference {
    /// One of [`MEDIA_TYPES`], from the bytes.
    pub media_type: String,
    /// The image.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for InputReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Megabytes of image in a debug line help nobody.
        write!(
            f,
            "InputReference({}, {} bytes)",
            self.media_type,
            self.data.len()
        )
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid("input_reference", message)
}

fn too_large(len: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!(
            "input_reference is {len} bytes; the largest image DOL accepts is {MAX_INPUT_REFERENCE_BYTES} bytes (3 MiB)."
        ),
    )
    .with_field("input_reference")
}

/// The media type of an image by its magic number, if JPEG, PNG or WebP.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

impl InputReference {
    /// Checks an uploaded image: size first (413), then the format (400).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self, ApiError> {
        if data.len() > MAX_INPUT_REFERENCE_BYTES {
            return Err(too_large(data.len()));
        }
        if data.is_empty() {
            return Err(invalid("input_reference is an empty file."));
        }
        let media_type = sniff(&data).ok_or_else(|| {
            invalid("input_reference must be a JPEG, PNG or WebP image (image/jpeg, image/png, image/webp).")
        })?;
        Ok(InputReference {
            media_type: media_type.to_owned(),
            data,
        })
    }

    /// Reads `image_url`: only a base64 `data:` URL (DOL fetches no URLs).
    pub fn from_data_url(url: &str) -> Result<Self, ApiError> {
        let Some(rest) = url.strip_prefix("data:") else {
            return Err(invalid(
                "input_reference.image_url must be a base64 data: URL (DOL does not fetch image URLs); or upload the image as a file.",
            ));
        };
        let (_, payload) = rest
            .split_once(',')
            .filter(|(head, _)| head.ends_with(";base64"))
            .ok_or_else(|| {
                invalid("input_reference.image_url must be data:<type>;base64,<data>.")
            })?;
        // Base64 is 4/3 of the bytes: refuse an oversized one before decoding it.
        if payload.len() / 4 * 3 > MAX_INPUT_REFERENCE_BYTES + 3 {
            return Err(too_large(payload.len() / 4 * 3));
        }
        let data = base64_decode(payload.trim())
            .ok_or_else(|| invalid("input_reference.image_url holds malformed base64."))?;
        Self::from_bytes(data)
    }

    /// `data:<type>;base64,<data>`.
    pub fn data_uri(&self) -> String {
        format!("data:{};base64,{}", self.media_type, base64(&self.data))
    }
}

/// The whole `POST /v1/videos` body may be this large: the largest image
/// and the multipart framing around it fit within the gateway's body limit.
pub const CREATE_BODY_LIMIT: usize = GATEWAY_BODY_LIMIT;

/// Refuses a `POST /v1/videos` body over [`CREATE_BODY_LIMIT`] (413 naming
/// `input_reference`: only an image makes a body that large).
pub fn check_create_body(len: usize) -> Result<(), ApiError> {
    if len <= CREATE_BODY_LIMIT {
        return Ok(());
    }
    Err(ApiError::new(
        Code::PayloadTooLarge,
        format!(
            "The request body is {len} bytes; the limit is {CREATE_BODY_LIMIT} bytes, and an input_reference image at most {MAX_INPUT_REFERENCE_BYTES} bytes (3 MiB)."
        ),
    )
    .with_field("input_reference"))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Its form field name.
    pub name: String,
    /// Its file name, when it is a file.
    pub filename: Option<String>,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .find(|b| !b.is_empty())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits a `multipart/form-data` body into its parts (binary-safe).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, ApiError> {
    let malformed = || {
        ApiError::new(
            Code::InvalidRequest,
            "The multipart/form-data body is malformed.",
        )
    };
    let first = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut at = find(body, first.as_bytes(), 0).ok_or_else(malformed)? + first.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        // Each part starts after the CRLF ending the delimiter line.
        let start = find(body, b"\r\n", at).ok_or_else(malformed)? + 2;
        let head_end = find(body, b"\r\n\r\n", start).ok_or_else(malformed)?;
        let end = find(body, delimiter.as_bytes(), head_end).ok_or_else(malformed)?;
        let head = String::from_utf8_lossy(&body[start..head_end]);
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let disposition = header("content-disposition").ok_or_else(malformed)?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(key)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_owned())
            })
        };
        parts.push(Part {
            name: param("name").ok_or_else(malformed)?,
            filename: param("filename"),
            content_type: header("content-type"),
            data: body[head_end + 4..end].to_vec(),
        });
        at = end + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn images_are_known_by_their_bytes() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), None);
        let r = InputReference::from_bytes(PNG.to_vec()).unwrap();
        assert_eq!(r.media_type, "image/png");
        assert!(
            r.data_uri()
                .starts_with("data:image/png;base64,iVBORw0KGgo")
        );
        assert_eq!(InputReference::from_data_url(&r.data_uri()).unwrap(), r);
    }

    #[test]
    fn each_bad_image_is_named() {
        let e = InputReference::from_bytes(b"%PDF-1.7".to_vec()).unwrap_err();
        assert_eq!(
            (e.status(), e.field.as_deref()),
            (400, Some("input_reference"))
        );
        let e = InputReference::from_bytes(Vec::new()).unwrap_err();
        assert_eq!(e.status(), 400);
        let mut big = PNG.to_vec();
        big.resize(MAX_INPUT_REFERENCE_BYTES + 1, 0);
        let e = InputReference::from_bytes(big).unwrap_err();
        assert_eq!(
            (e.status(), e.field.as_deref()),
            (413, Some("input_reference"))
        );
        for url in [
            "https://example.com/a.png",
            "data:image/png,raw",
            "data:image/png;base64,***",
        ] {
            let e = InputReference::from_data_url(url).unwrap_err();
            assert_eq!(
                (e.status(), e.field.as_deref()),
                (400, Some("input_reference")),
                "{url}"
            );
        }
        let huge = format!(
            "data:image/png;base64,{}",
            "A".repeat(MAX_INPUT_REFERENCE_BYTES * 2)
        );
        assert_eq!(
            InputReference::from_data_url(&huge).unwrap_err().status(),
            413
        );
        assert_eq!(check_create_body(CREATE_BODY_LIMIT), Ok(()));
        let e = check_create_body(CREATE_BODY_LIMIT + 1).unwrap_err();
        assert_eq!(
            (e.status(), e.field.as_deref()),
            (413, Some("input_reference"))
        );
    }

    #[test]
    fn multipart_keeps_binary_parts_whole() {
        let mut body = b"--b0\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na fox\r\n--b0\r\n\
Content-Disposition: form-data; name=\"input_reference\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
            .to_vec();
        let image: Vec<u8> = PNG
            .iter()
            .copied()
            .chain([0xFF, 0x00, b'\r', b'\n', 0x80])
            .collect();
        body.extend_from_slice(&image);
        body.extend_from_slice(b"\r\n--b0--\r\n");
        let parts = parse(&body, "b0").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data.as_slice()),
            ("prompt", &b"a fox"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, image);
        assert!(parse(b"junk", "b0").is_err());
        assert!(parse(b"--b0\r\nno head", "b0").is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"x y\""),
            Some("x y")
        );
        assert_eq!(boundary("multipart/form-data"), None);
    }
}
