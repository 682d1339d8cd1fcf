//! Platform selection: among the catalog's video models that a configured
//! platform serves and that render the asked length, best first by one
//! score (each term 0-1, higher is better):
//!
//! `0.35 × quality/10 + 0.35 × observed success + 0.20 × cheapness + 0.10 × quick queue`
//!
//! where cheapness is `1 − price/dearest price` (an unknown price scores 0:
//! it is never treated as free) and a quick queue is `1 − queue
//! time/longest queue time` over the candidates' observed averages. A model
//! never observed counts as 90 % successful with no queue. A pinned model
//! falls back only among platforms serving that model; `auto` among all.
//! A request with an `input_reference` image ranks only the models that
//! take one (`image_input`): the others are skipped, and a pinned model
//! that cannot is a 400 naming `input_reference`.

use std::collections::BTreeMap;

use super::catalog::VideoModel;
use super::platforms::VideoSettings;
use super::{AUTO, Choice, VideoRequest};
use crate::error::{ApiError, Code};

/// Success assumed for a platform model never observed.
pub const PRIOR_SUCCESS: f64 = 0.9;

/// What DOL observed of one platform model (EWMA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// 0-1.
    pub success: f64,
    /// Average time from submit to rendering, ms.
    pub queue_ms: f64,
    /// Jobs observed.
    pub samples: u64,
}

/// Observations by (platform, model).
pub type StatsMap = BTreeMap<(String, String), Observed>;

/// One ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Platform and model.
    pub choice: Choice,
    /// Its catalog entry.
    pub entry: VideoModel,
    /// The score it ranked by.
    pub score: f64,
}

/// The capable platform models for `req`, best first, or why there is none.
pub fn candidates(
    req: &VideoRequest,
    catalog: &[VideoModel],
    settings: &VideoSettings,
    stats: &StatsMap,
) -> Result<Vec<Ranked>, ApiError> {
    let pinned = req.model != AUTO;
    let named: Vec<&VideoModel> = catalog
        .iter()
        .filter(|m| !pinned || m.model == req.model)
        .collect();
    if pinned && named.is_empty() {
        return Err(ApiError::new(
            Code::ModelNotFound,
            format!(
                "The model `{}` is not a video model DOL knows (catalog/videos.json).",
                req.model
            ),
        )
        .with_field("model"));
    }
    let named: Vec<&VideoModel> = if req.input_reference.is_some() {
        let capable: Vec<&VideoModel> = named.into_iter().filter(|m| m.image_input).collect();
        if capable.is_empty() {
            return Err(ApiError::invalid(
                "input_reference",
                format!(
                    "input_reference: no video model {} takes an image (image-to-video).",
                    if pinned {
                        format!("named `{}`", req.model)
                    } else {
                        "DOL knows".to_owned()
                    }
                ),
            ));
        }
        capable
    } else {
        named
    };
    let long_enough: Vec<&VideoModel> = named
        .iter()
        .copied()
        .filter(|m| m.max_seconds >= req.seconds)
        .collect();
    if long_enough.is_empty() {
        let longest = named.iter().map(|m| m.max_seconds).max().unwrap_or(0);
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "seconds: {} is longer than any capable model renders ({longest} s at most).",
                req.seconds
            ),
        )
        .with_field("seconds"));
    }
    let usable: Vec<&VideoModel> = long_enough
        .into_iter()
        .filter(|m| settings.platform(&m.platform).is_some())
        .collect();
    if usable.is_empty() {
        return Err(ApiError::new(
            Code::Unavailable,
            "No configured video platform serves this request (set openai_api_key, runway_api_key or replicate_api_token).",
        ));
    }
    let observed = |m: &VideoModel| {
        stats
            .get(&(m.platform.clone(), m.model.clone()))
            .copied()
            .unwrap_or(Observed {
                success: PRIOR_SUCCESS,
                queue_ms: 0.0,
                samples: 0,
            })
    };
    let dearest = usable
        .iter()
        .filter_map(|m| m.micros_per_second())
        .max()
        .unwrap_or(0) as f64;
    let slowest = usable
        .iter()
        .map(|m| observed(m).queue_ms)
        .fold(0.0, f64::max);
    let mut ranked: Vec<Ranked> = usable
        .into_iter()
        .map(|m| {
            let o = observed(m);
            let cheap = match m.micros_per_second() {
                Some(p) if dearest > 0.0 => 1.0 - p as f64 / dearest,
                Some(_) => 1.0,
                None => 0.0,
            };
            let quick = if slowest > 0.0 {
                1.0 - o.queue_ms / slowest
            } else {
                1.0
            };
            let score = 0.35 * (m.quality / 10.0).clamp(0.0, 1.0)
                + 0.35 * o.success.clamp(0.0, 1.0)
                + 0.20 * cheap
                + 0.10 * quick;
            Ranked {
                choice: Choice {
                    platform: m.platform.clone(),
                    model: m.model.clone(),
                },
                entry: m.clone(),
                score,
            }
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::platforms::{Platform, PlatformKind};

    fn model(platform: &str, name: &str, usd: Option<f64>, quality: f64) -> VideoModel {
        VideoModel {
            platform: platform.to_owned(),
            model: name.to_owned(),
            usd_per_second: usd,
            quality,
            max_seconds: 10,
            image_input: platform != "runway",
            image_field: None,
        }
    }

    fn settings(kinds: &[PlatformKind]) -> VideoSettings {
        VideoSettings {
            platforms: kinds
                .iter()
                .map(|&kind| Platform {
                    kind,
                    base_url: String::new(),
                    api_key: "k".to_owned(),
                })
                .collect(),
            ..VideoSettings::default()
        }
    }

    fn req(model: &str, seconds: u32) -> VideoRequest {
        VideoRequest {
            model: model.to_owned(),
            prompt: "p".to_owned(),
            seconds,
            size: "720x1280".to_owned(),
            input_reference: None,
        }
    }

    fn order(r: &[Ranked]) -> Vec<&str> {
        r.iter().map(|r| r.choice.platform.as_str()).collect()
    }

    #[test]
    fn cheaper_wins_at_equal_quality_and_unknown_price_is_never_free() {
        let cat = [
            model("openai", "a", Some(0.30), 8.0),
            model("runway", "b", Some(0.10), 8.0),
            model("replicate", "c", None, 8.0),
        ];
        let all = settings(&PlatformKind::ALL);
        let r = candidates(&req("auto", 4), &cat, &all, &StatsMap::new()).unwrap();
        assert_eq!(order(&r), ["runway", "openai", "replicate"]);
    }

    #[test]
    fn observed_failures_and_queues_demote_a_platform() {
        let cat = [
            model("openai", "a", Some(0.10), 8.0),
            model("runway", "b", Some(0.10), 8.0),
        ];
        let all = settings(&PlatformKind::ALL);
        let mut stats = StatsMap::new();
        stats.insert(
            ("openai".into(), "a".into()),
            Observed {
                success: 0.2,
                queue_ms: 1_000.0,
                samples: 5,
            },
        );
        stats.insert(
            ("runway".into(), "b".into()),
            Observed {
                success: 0.95,
                queue_ms: 60_000.0,
                samples: 5,
            },
        );
        assert_eq!(
            order(&candidates(&req("auto", 4), &cat, &all, &stats).unwrap()),
            ["runway", "openai"]
        );
        stats.insert(
            ("openai".into(), "a".into()),
            Observed {
                success: 0.95,
                queue_ms: 1_000.0,
                samples: 5,
            },
        );
        assert_eq!(
            order(&candidates(&req("auto", 4), &cat, &all, &stats).unwrap()),
            ["openai", "runway"]
        );
    }

    #[test]
    fn an_image_skips_the_models_that_cannot_take_one() {
        let cat = [
            model("openai", "a", Some(0.30), 8.0),
            model("runway", "b", Some(0.10), 8.0),
        ];
        let all = settings(&PlatformKind::ALL);
        let image = crate::video::input::InputReference {
            media_type: "image/png".to_owned(),
            data: vec![1],
        };
        let with_image = |model: &str| VideoRequest {
            input_reference: Some(image.clone()),
            ..req(model, 4)
        };
        // Runway ranks first without an image, and is skipped with one.
        let r = candidates(&req("auto", 4), &cat, &all, &StatsMap::new()).unwrap();
        assert_eq!(order(&r), ["runway", "openai"]);
        let r = candidates(&with_image("auto"), &cat, &all, &StatsMap::new()).unwrap();
        assert_eq!(order(&r), ["openai"]);
        let e = candidates(&with_image("b"), &cat, &all, &StatsMap::new()).unwrap_err();
        assert_eq!(
            (e.status(), e.field.as_deref()),
            (400, Some("input_reference"))
        );
        let text_only = [model("runway", "b", Some(0.10), 8.0)];
        let e = candidates(&with_image("auto"), &text_only, &all, &StatsMap::new()).unwrap_err();
        assert_eq!(
            (e.status(), e.field.as_deref()),
            (400, Some("input_reference"))
        );
    }

    #[test]
    fn refusals_name_their_cause() {
        let cat = [
            model("openai", "a", Some(0.1), 8.0),
            model("runway", "b", Some(0.1), 8.0),
        ];
        let only_openai = settings(&[PlatformKind::OpenAi]);
        let e = candidates(&req("nope", 4), &cat, &only_openai, &StatsMap::new()).unwrap_err();
        assert_eq!((e.status(), e.field.as_deref()), (404, Some("model")));
        let e = candidates(&req("a", 30), &cat, &only_openai, &StatsMap::new()).unwrap_err();
        assert_eq!((e.status(), e.field.as_deref()), (400, Some("seconds")));
        let e = candidates(&req("b", 4), &cat, &only_openai, &StatsMap::new()).unwrap_err();
        assert_eq!(e.status(), 503);
        let pinned = candidates(
            &req("a", 4),
            &cat,
            &settings(&PlatformKind::ALL),
            &StatsMap::new(),
        )
        .unwrap();
        assert_eq!(order(&pinned), ["openai"]);
    }
}
