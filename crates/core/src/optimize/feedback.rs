//! User feedback on answered requests (`POST /v1/feedback`) and how well the
//! automatic quality score agrees with it.
//!
//! A score is thumbs (-1, 0, 1) or stars (1–5). Without `"scale"`, -1, 0 and 1
//! read as thumbs and 2–5 as stars; send `"scale": "stars"` for one star.
//! Both normalize to 0–1 (thumbs: down 0, neutral 0.5, up 1; stars:
//! `(s − 1) / 4`). The feedback is stored against the request's model, tier,
//! template (route) and variant, and against its automatic score, so the
//! report can show the Pearson correlation of the two with a Fisher-z
//! confidence interval (the one `scipy.stats.pearsonr(...).confidence_interval()`
//! gives).

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::error::{ApiError, Code};
use crate::experiments::dist::{normal_quantile, t_sf};
use crate::storage::{Row, SqlExecutor, SqlValue};

/// Longest request id accepted, bytes.
pub const MAX_REQUEST_ID: usize = 200;
/// Longest comment accepted, bytes.
pub const MAX_COMMENT: usize = 2_000;

/// The score's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// -1, 0, 1.
    Thumbs,
    /// 1–5.
    Stars,
}

impl Scale {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thumbs => "thumbs",
            Self::Stars => "stars",
        }
    }
}

/// A parsed feedback body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    /// The request it is about (`x-dol-request-id`).
    pub request_id: String,
    /// The scale the score is on.
    pub scale: Scale,
    /// The score as sent.
    pub raw_score: i64,
    /// The score on 0–1.
    pub score: f64,
    /// Optional free text.
    pub comment: Option<String>,
}

/// A bad feedback body or an unknown request; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FeedbackError {
    /// The body is not a JSON object.
    #[error("the body must be a JSON object: {0}")]
    Json(String),
    /// The named field is missing, of the wrong type or out of range.
    #[error("{field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// No request with that id was answered for this key.
    #[error("no request {0:?} for this key")]
    UnknownRequest(String),
}

impl From<FeedbackError> for ApiError {
    fn from(e: FeedbackError) -> Self {
        match &e {
            FeedbackError::Json(_) => ApiError::new(Code::InvalidJson, e.to_string()),
            FeedbackError::Field { field, .. } => {
                ApiError::new(Code::InvalidRequest, e.to_string()).with_field(*field)
            }
            FeedbackError::UnknownRequest(_) => {
                ApiError::new(Code::NotFound, e.to_string()).with_field("request_id")
            }
        }
    }
}

fn field(field: &'static str, problem: impl Into<String>) -> FeedbackError {
    FeedbackError::Field {
        field,
        problem: problem.into(),
    }
}

/// Normalizes `raw` on `scale` to 0–1; `None` when out of the scale's range.
pub fn normalize(scale: Scale, raw: i64) -> Option<f64> {
    match (scale, raw) {
        (Scale::Thumbs, -1..=1) => Some((raw + 1) as f64 / 2.0),
        (Scale::Stars, 1..=5) => Some((raw - 1) as f64 / 4.0),
        _ => None,
    }
}

/// Parses and validates a `POST /v1/feedback` body.
pub fn parse(body: &[u8]) -> Result<Feedback, FeedbackError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| FeedbackError::Json(e.to_string()))?;
    let Value::Object(o) = value else {
        return Err(FeedbackError::Json("not an object".to_owned()));
    };
    let request_id = match o.get("request_id") {
        None | Some(Value::Null) => return Err(field("request_id", "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(field("request_id", "must not be empty"));
        }
        Some(Value::String(s)) if s.len() > MAX_REQUEST_ID => {
            return Err(field(
                "request_id",
                format!("is longer than {MAX_REQUEST_ID} bytes"),
            ));
        }
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(_) => return Err(field("request_id", "must be a string")),
    };
    let raw = match o.get("score") {
        None | Some(Value::Null) => return Err(field("score", "is required")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            field(
                "score",
                "must be a whole number (thumbs -1/0/1 or stars 1-5)",
            )
        })?,
        Some(_) => return Err(field("score", "must be a number")),
    };
    let scale = match o.get("scale") {
        None | Some(Value::Null) if raw <= 1 => Scale::Thumbs,
        None | Some(Value::Null) => Scale::Stars,
        Some(Value::String(s)) if s == "thumbs" => Scale::Thumbs,
        Some(Value::String(s)) if s == "stars" => Scale::Stars,
        Some(_) => return Err(field("scale", "must be \"thumbs\" or \"stars\"")),
    };
    let score = normalize(scale, raw).ok_or_else(|| match scale {
        Scale::Thumbs => field("score", format!("{raw} is not a thumbs score (-1, 0 or 1)")),
        Scale::Stars => field("score", format!("{raw} is not a star rating (1 to 5)")),
    })?;
    let comment = match o.get("comment") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_COMMENT => {
            return Err(field(
                "comment",
                format!("is longer than {MAX_COMMENT} bytes"),
            ));
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(field("comment", "must be a string")),
    };
    Ok(Feedback {
        request_id,
        scale,
        raw_score: raw,
        score,
        comment,
    })
}

/// What a stored feedback was attributed to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attributed {
    /// The request.
    pub request_id: String,
    /// The normalized score.
    pub score: f64,
    /// Provider of the answer.
    pub provider: String,
    /// Model of the answer.
    pub model: String,
    /// Tier of the answer.
    pub tier: String,
    /// Route (`chat`, `generate:<template>@<version>`, …).
    pub route: String,
    /// Flag variant (`-` when none).
    pub variant: String,
    /// The automatic quality score of the answer, 0–10.
    pub quality: Option<f64>,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("feedback store: {0}")]
pub struct StoreError(pub String);

/// Stores `f` from `key_id` at `now_ms`, attributed to the request it names
/// (which must have been answered for the same key); a second feedback on a
/// request replaces the first.
pub fn record(
    db: &mut impl SqlExecutor,
    f: &Feedback,
    key_id: &str,
    now_ms: u64,
) -> Result<Result<Attributed, FeedbackError>, StoreError> {
    let rows = db
        .execute(
            "SELECT provider, model, tier, route, variant, quality FROM requests \
             WHERE id = ? AND key_id = ?",
            &[
                SqlValue::Text(f.request_id.clone()),
                SqlValue::Text(key_id.to_owned()),
            ],
        )
        .map_err(StoreError)?;
    let Some(values) = rows.first() else {
        return Ok(Err(FeedbackError::UnknownRequest(f.request_id.clone())));
    };
    let r = Row::new("requests", values);
    let text = |i, c| {
        r.text(i, c)
            .map(str::to_owned)
            .map_err(|e| StoreError(e.to_string()))
    };
    let a = Attributed {
        request_id: f.request_id.clone(),
        score: f.score,
        provider: text(0, "provider")?,
        model: text(1, "model")?,
        tier: text(2, "tier")?,
        route: text(3, "route")?,
        variant: text(4, "variant")?,
        quality: r
            .opt_real(5, "quality")
            .map_err(|e| StoreError(e.to_string()))?,
    };
    db.execute(
        "INSERT INTO feedback (request_id, ts, key_id, scale, raw_score, score, \
         comment, provider, model, tier, route, variant, quality) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET \
         ts = excluded.ts, key_id = excluded.key_id, scale = excluded.scale, \
         raw_score = excluded.raw_score, score = excluded.score, comment = excluded.comment, \
         provider = excluded.provider, model = excluded.model, tier = excluded.tier, \
         route = excluded.route, variant = excluded.variant, quality = excluded.quality",
        &[
            SqlValue::Text(a.request_id.clone()),
            SqlValue::Integer(i64::try_from(now_ms).unwrap_or(i64::MAX)),
            SqlValue::Text(key_id.to_owned()),
            SqlValue::Text(f.scale.as_str().to_owned()),
            SqlValue::Integer(f.raw_score),
            SqlValue::Real(f.score),
            f.comment.clone().map_or(SqlValue::Null, SqlValue::Text),
            SqlValue::Text(a.provider.clone()),
            SqlValue::Text(a.model.clone()),
            SqlValue::Text(a.tier.clone()),
            SqlValue::Text(a.route.clone()),
            SqlValue::Text(a.variant.clone()),
            a.quality.map_or(SqlValue::Null, SqlValue::Real),
        ],
    )
    .map_err(StoreError)?;
    Ok(Ok(a))
}

/// Folds an attributed feedback into the gateway's routing state (the
/// answering model's feedback EWMA, see
/// [`crate::gateway::routing::ObservedStats::routing_quality`]: it moves the
/// routing quality once the model has
/// [`crate::gateway::routing::FEEDBACK_MIN_SAMPLES`] feedbacks). Offline
/// answers are not routed and are left out.
pub fn fold_into_routing(
    kv: &mut impl crate::storage::KeyValue,
    a: &Attributed,
) -> Result<(), crate::gateway::store::GatewayStoreError> {
    if a.provider.is_empty() || a.provider == "offline" {
        return Ok(());
    }
    let mut state = crate::gateway::store::routing_state(kv);
    state
        .entries
        .entry(format!("{}/{}", a.provider, a.model))
        .or_default()
        .stats
        .observe_feedback(crate::gateway::pipeline::ROUTING_ALPHA, a.score * 10.0);
    crate::gateway::store::set_routing_state(kv, &state)
}

/// A Pearson correlation with its test and interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correlation {
    /// Pairs.
    pub n: usize,
    /// Pearson's r.
    pub r: f64,
    /// Two-sided p-value of r = 0 (t with n − 2 degrees of freedom).
    pub p_value: f64,
    /// Lower end of the confidence interval (Fisher z).
    pub ci_low: f64,
    /// Upper end.
    pub ci_high: f64,
}

/// Pearson's r of `pairs` with a two-sided `1 − alpha` Fisher-z interval;
/// `None` with fewer than 4 pairs or a constant side.
pub fn pearson(pairs: &[(f64, f64)], alpha: f64) -> Option<Correlation> {
    let n = pairs.len();
    if n < 4 {
        return None;
    }
    let nf = n as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / nf, b + y / nf));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let r = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
    let df = nf - 2.0;
    let p_value = if r.abs() >= 1.0 {
        0.0
    } else {
        let t = r * (df / (1.0 - r * r)).sqrt();
        (2.0 * t_sf(t.abs(), df)).min(1.0)
    };
    let z = r.clamp(-0.999_999_999, 0.999_999_999).atanh();
    let half = normal_quantile(1.0 - alpha / 2.0) / (nf - 3.0).sqrt();
    Some(Correlation {
        n,
        r,
        p_value,
        ci_low: (z - half).tanh(),
        ci_high: (z + half).tanh(),
    })
}

/// The automatic score (0–10) and the feedback (0–1) of every feedback
/// since `from_ms` whose request was scored.
pub fn pairs_since(db: &mut impl SqlExecutor, from_ms: i64) -> Result<Vec<(f64, f64)>, StoreError> {
    db.execute(
        "SELECT quality, score FROM feedback WHERE ts >= ? AND quality IS NOT NULL ORDER BY ts",
        &[SqlValue::Integer(from_ms)],
    )
    .map_err(StoreError)?
    .iter()
    .map(|v| {
        let r = Row::new("feedback", v);
        Ok((
            r.real(0, "quality")
                .map_err(|e| StoreError(e.to_string()))?,
            r.real(1, "score").map_err(|e| StoreError(e.to_string()))?,
        ))
    })
    .collect()
}

#[cfg(test)]
#[path = "feedback_tests.rs"]
mod tests;
