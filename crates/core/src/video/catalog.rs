//! The video models DOL knows (`catalog/videos.json`): per platform model,
//! its price per second of output (`null` = unknown: such a job is charged
//! nothing and flagged `cost_unknown`, never shown as $0), a quality score
//! (0-10, the operator's judgement like the chat catalog's tiers), the
//! longest clip it renders and whether it takes an image that guides the
//! video (`image_input`; for Replicate, the model input that holds it,
//! `image_field`).

use serde::Deserialize;

/// The catalog shipped with DOL.
pub const CATALOG_JSON: &str = include_str!("../../../../catalog/videos.json");

/// One video model at one platform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VideoModel {
    /// Platform name (`openai`, `runway`, `replicate`).
    pub platform: String,
    /// The platform's model id.
    pub model: String,
    /// US dollars per second of output; `None` = unknown.
    pub usd_per_second: Option<f64>,
    /// 0-10.
    pub quality: f64,
    /// Longest clip, seconds.
    pub max_seconds: u32,
    /// Whether it takes an image that guides the video (`input_reference`).
    #[serde(default)]
    pub image_input: bool,
    /// Replicate only: the model input's image field (`image` when unset).
    #[serde(default)]
    pub image_field: Option<String>,
}

impl VideoModel {
    /// Micro-dollars per second of output, when priced.
    pub fn micros_per_second(&self) -> Option<u64> {
        self.usd_per_second
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(|p| (p * 1e6).round() as u64)
    }

    /// The cost of `seconds` of output (`None` = unknown price).
    pub fn cost_micros(&self, seconds: u32) -> Option<u64> {
        self.micros_per_second()
            .map(|p| p.saturating_mul(u64::from(seconds)))
    }
}

/// The shipped catalog (empty if the file were malformed: a unit test
/// parses it, so that cannot ship).
pub fn shipped() -> Vec<VideoModel> {
    serde_json::from_str(CATALOG_JSON).unwrap_or_default()
}

/// The entry for `platform`/`model`.
pub fn find<'a>(catalog: &'a [VideoModel], platform: &str, model: &str) -> Option<&'a VideoModel> {
    catalog
        .iter()
        .find(|m| m.platform == platform && m.model == model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_parses_and_prices_per_second() {
        let c = shipped();
        assert!(c.len() >= 3, "{c:?}");
        let sora = find(&c, "openai", "sora-2").unwrap();
        assert_eq!(sora.micros_per_second(), Some(100_000));
        assert_eq!(sora.cost_micros(8), Some(800_000));
        let unpriced = c.iter().find(|m| m.usd_per_second.is_none()).unwrap();
        assert_eq!(unpriced.cost_micros(4), None);
        for platform in ["openai", "runway", "replicate"] {
            assert!(c.iter().any(|m| m.platform == platform), "{platform}");
            assert!(
                c.iter().any(|m| m.platform == platform && m.image_input),
                "{platform} has an image-to-video model"
            );
        }
        let minimax = find(&c, "replicate", "minimax/video-01").unwrap();
        assert_eq!(minimax.image_field.as_deref(), Some("first_frame_image"));
        assert!(c.iter().any(|m| !m.image_input), "a text-only model");
    }
}
