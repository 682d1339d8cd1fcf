//! The deterministic quality gate: a 0–10 score over explicit dimensions.
//!
//! Each dimension scores in `[0, 1]`:
//!
//! | dimension | weight | score |
//! |---|---|---|
//! | `length` | 2 | 0 when empty; else `min(1, 0.4 + 0.6 × words / min_words)` |
//! | `refusal` | 2 | 0 if a refusal phrase appears in the first 300 characters, else 1 |
//! | `repetition` | 3 | `1 − clamp((r − 0.1) / 0.4, 0, 1)` with `r` the repeated word-trigram ratio |
//! | `truncation` | 1 | 0 when `finish_reason` is `length` or `content_filter`, else 1 |
//! | `json` | 1 | when JSON was asked for: 1 if the answer parses as a JSON object (`json_object`) or matches the schema (`json_schema`, see [`super::json_schema`]), else 0; otherwise 1 |
//! | `coverage` | 2 | `0.4 + 0.6 × c` with `c` the share of the prompt's key terms (at most 8) found in the answer; 1 without key terms |
//!
//! A valid structured answer is data, not prose: its `length`, `repetition`
//! and `coverage` score 1 and the empty-answer cap does not apply, so `{}` for
//! an object schema without required keys passes (it used to score 0 and be
//! retried).
//!
//! `total = 10 × Σ(weight × score) / Σ weight`, then capped by the hard
//! failures: empty answer → 0, refusal → 3, invalid JSON when JSON was asked
//! for → 4, degenerate repetition (`r ≥ 0.5`) → 5, truncation → 6. The
//! result is rounded to two decimals. All caps are below the default threshold of 7.0, so each hard failure fails the gate.

use serde::{Deserialize, Serialize};

use super::openai::FinishReason;
use super::text;

/// The default minimum acceptable score.
pub const DEFAULT_THRESHOLD: f64 = 7.0;

/// Phrases that mark a refusal (matched lower-cased, curly apostrophes folded).
pub const REFUSAL_PHRASES: &[&str] = &[
    "as an ai language model",
    "i am not able to help",
    "i am unable to",
    "i can't assist",
    "i can't help with",
    "i cannot assist",
    "i cannot help with",
    "i cannot provide",
    "i can't provide",
    "i must decline",
    "i won't be able to",
    "i'm not able to help",
    "i'm not able to provide",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i'm unable to",
    "sorry, i can't",
];

/// Scorer tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    /// Minimum acceptable score.
    pub threshold: f64,
    /// Word count at which the length dimension is full.
    pub min_words: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            min_words: 8,
        }
    }
}

/// What the scorer looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInput<'a> {
    /// The prompt (e.g. the last user message).
    pub prompt: &'a str,
    /// The answer text.
    pub answer: &'a str,
    /// The answer's finish reason, if known.
    pub finish_reason: Option<FinishReason>,
    /// Whether `response_format` asked for JSON.
    pub wants_json: bool,
    /// The JSON schema the answer must match (`response_format.json_schema.schema`).
    pub schema: Option<&'a serde_json::Value>,
}

/// A scored dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Empty or too short.
    Length,
    /// Refusal phrases.
    Refusal,
    /// Repeated word trigrams.
    Repetition,
    /// Cut off by the token limit or a filter.
    Truncation,
    /// JSON validity when JSON was asked for.
    Json,
    /// Coverage of the prompt's key terms.
    Coverage,
}

impl Dimension {
    /// The dimension's weight in the total.
    pub fn weight(self) -> f64 {
        match self {
            Self::Length | Self::Refusal | Self::Coverage => 2.0,
            Self::Repetition => 3.0,
            Self::Truncation | Self::Json => 1.0,
        }
    }
}

/// One dimension's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionScore {
    /// Which dimension.
    pub dimension: Dimension,
    /// Score in `[0, 1]`.
    pub score: f64,
    /// Its weight.
    pub weight: f64,
    /// Why it lost points (`None` at full score).
    pub reason: Option<String>,
}

/// The scorer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Total 0–10, two decimals.
    pub total: f64,
    /// Whether `total ≥ threshold`.
    pub passed: bool,
    /// The threshold used.
    pub threshold: f64,
    /// Every dimension, in [`Dimension`] order.
    pub dimensions: Vec<DimensionScore>,
    /// The reasons of all dimensions that lost points, and of any cap applied.
    pub reasons: Vec<String>,
}

impl QualityReport {
    /// The score of one dimension.
    pub fn dimension(&self, d: Dimension) -> Option<f64> {
        self.dimensions
            .iter()
            .find(|s| s.dimension == d)
            .map(|s| s.score)
    }
}

fn dim(dimension: Dimension, score: f64, reason: Option<String>) -> DimensionScore {
    DimensionScore {
        dimension,
        score: score.clamp(0.0, 1.0),
        weight: dimension.weight(),
        reason,
    }
}

/// The share of word trigrams that repeat an earlier one (0 with fewer than 3 words).
pub fn repeated_trigram_ratio(words: &[String]) -> f64 {
    if words.len() < 3 {
        return 0.0;
    }
    // Each word becomes a number once, so trigrams compare as integers, not
    // as three strings each (this runs over every answer on the hot path).
    let mut ids: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(words.len());
    let numbered: Vec<usize> = words
        .iter()
        .map(|w| {
            let next = ids.len();
            *ids.entry(w.as_str()).or_insert(next)
        })
        .collect();
    let mut grams: Vec<(usize, usize, usize)> = numbered
        .windows(3)
        .filter_map(|g| match g {
            [a, b, c] => Some((*a, *b, *c)),
            _ => None,
        })
        .collect();
    let total = grams.len();
    grams.sort_unstable();
    grams.dedup();
    // Every trigram after the first of its kind is a repeat.
    (total - grams.len()) as f64 / total as f64
}

/// The refusal phrase found in the first 300 characters of the answer, if any.
pub fn is_refusal(answer: &str) -> Option<&'static str> {
    let head: String = answer
        .chars()
        .take(300)
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect::<String>()
        .to_lowercase();
    REFUSAL_PHRASES.iter().copied().find(|p| head.contains(p))
}

/// Scores an answer.
pub fn score(input: &QualityInput<'_>, config: &QualityConfig) -> QualityReport {
    let trimmed = input.answer.trim();
    let words = text::words(trimmed);
    let mut caps: Vec<(f64, String)> = Vec::new();
    let json_problem = input
        .wants_json
        .then(|| json_problem(trimmed, input.schema));
    // A valid structured answer is judged by its shape only.
    let structured = matches!(json_problem, Some(None));
    let empty = words.is_empty() && !structured;

    let length = if structured {
        dim(Dimension::Length, 1.0, None)
    } else if empty {
        caps.push((0.0, "answer is empty".to_owned()));
        dim(Dimension::Length, 0.0, Some("answer is empty".to_owned()))
    } else {
        let min = config.min_words.max(1);
        let s = (0.4 + 0.6 * words.len() as f64 / min as f64).min(1.0);
        let reason = (words.len() < min)
            .then(|| format!("answer is short ({} words, {} expected)", words.len(), min));
        dim(Dimension::Length, s, reason)
    };

    let refusal = match is_refusal(trimmed) {
        Some(p) => {
            caps.push((3.0, "answer is a refusal".to_owned()));
            dim(
                Dimension::Refusal,
                0.0,
                Some(format!("refusal phrase \"{p}\"")),
            )
        }
        None => dim(Dimension::Refusal, 1.0, None),
    };

    let ratio = if structured {
        0.0
    } else {
        repeated_trigram_ratio(&words)
    };
    let repetition = {
        let s = 1.0 - ((ratio - 0.1) / 0.4).clamp(0.0, 1.0);
        let reason =
            (ratio > 0.1).then(|| format!("{:.0}% of word trigrams repeat", ratio * 100.0));
        if ratio >= 0.5 {
            caps.push((5.0, "answer is degenerate repetition".to_owned()));
        }
        dim(Dimension::Repetition, s, reason)
    };

    let truncation = match input.finish_reason {
        Some(FinishReason::Length) => {
            caps.push((6.0, "answer was truncated".to_owned()));
            dim(
                Dimension::Truncation,
                0.0,
                Some("finish_reason is length: the answer was cut off".to_owned()),
            )
        }
        Some(FinishReason::ContentFilter) => {
            caps.push((6.0, "answer was truncated".to_owned()));
            dim(
                Dimension::Truncation,
                0.0,
                Some("finish_reason is content_filter: the answer was cut off".to_owned()),
            )
        }
        _ => dim(Dimension::Truncation, 1.0, None),
    };

    let json = match json_problem {
        Some(Some((cap_reason, reason))) => {
            caps.push((4.0, cap_reason.to_owned()));
            dim(Dimension::Json, 0.0, Some(reason))
        }
        _ => dim(Dimension::Json, 1.0, None),
    };

    let coverage = {
        let terms: Vec<String> = text::key_terms(input.prompt).into_iter().take(8).collect();
        if terms.is_empty() || structured {
            dim(Dimension::Coverage, 1.0, None)
        } else {
            let answer_words: std::collections::HashSet<&str> =
                words.iter().map(String::as_str).collect();
            let missing: Vec<&str> = terms
                .iter()
                .map(String::as_str)
                .filter(|t| !answer_words.contains(t))
                .collect();
            let c = (terms.len() - missing.len()) as f64 / terms.len() as f64;
            let reason = (!missing.is_empty())
                .then(|| format!("prompt terms not in the answer: {}", missing.join(", ")));
            dim(Dimension::Coverage, 0.4 + 0.6 * c, reason)
        }
    };

    let dimensions = vec![length, refusal, repetition, truncation, json, coverage];
    let weight_sum: f64 = dimensions.iter().map(|d| d.weight).sum();
    let weighted: f64 = dimensions.iter().map(|d| d.weight * d.score).sum();
    let mut total = 10.0 * weighted / weight_sum;
    let mut reasons: Vec<String> = dimensions.iter().filter_map(|d| d.reason.clone()).collect();
    for (cap, why) in caps {
        if total > cap {
            total = cap;
            reasons.push(format!("score capped at {cap}: {why}"));
        }
    }
    // Two decimals keep stored and displayed scores identical.
    let total = ((total * 100.0).round() / 100.0).clamp(0.0, 10.0);
    QualityReport {
        total,
        passed: total >= config.threshold,
        threshold: config.threshold,
        dimensions,
        reasons,
    }
}

/// Scores an answer made of function calls: prose measures do not apply, so
/// it scores 10 when every call names a function and carries a JSON object
/// of arguments, else the JSON cap (4) with the first bad call named.
pub fn score_tool_calls(
    calls: &[super::openai::ToolCall],
    finish_reason: Option<FinishReason>,
    config: &QualityConfig,
) -> QualityReport {
    let bad =
        calls.iter().find_map(
            |c| match serde_json::from_str::<serde_json::Value>(&c.arguments) {
                Ok(serde_json::Value::Object(_)) if !c.name.is_empty() => None,
                _ => Some(format!(
                    "call \"{}\" has no JSON object of arguments",
                    c.name
                )),
            },
        );
    let arguments = match &bad {
        Some(why) => dim(Dimension::Json, 0.0, Some(why.clone())),
        None => dim(Dimension::Json, 1.0, None),
    };
    let truncated = matches!(
        finish_reason,
        Some(FinishReason::Length | FinishReason::ContentFilter)
    );
    let truncation = if truncated {
        dim(
            Dimension::Truncation,
            0.0,
            Some("the calls were cut off".to_owned()),
        )
    } else {
        dim(Dimension::Truncation, 1.0, None)
    };
    let mut reasons: Vec<String> = [&arguments, &truncation]
        .iter()
        .filter_map(|d| d.reason.clone())
        .collect();
    let mut total: f64 = 10.0;
    if bad.is_some() {
        total = 4.0;
        reasons.push("score capped at 4: a tool call is malformed".to_owned());
    } else if truncated {
        total = 6.0;
        reasons.push("score capped at 6: answer was truncated".to_owned());
    }
    let dimensions = vec![
        dim(Dimension::Length, 1.0, None),
        dim(Dimension::Refusal, 1.0, None),
        dim(Dimension::Repetition, 1.0, None),
        truncation,
        arguments,
        dim(Dimension::Coverage, 1.0, None),
    ];
    QualityReport {
        total,
        passed: total >= config.threshold,
        threshold: config.threshold,
        dimensions,
        reasons,
    }
}

/// Why a JSON answer fails (`(cap reason, dimension reason)`), or `None`.
fn json_problem(
    answer: &str,
    schema: Option<&serde_json::Value>,
) -> Option<(&'static str, String)> {
    match serde_json::from_str::<serde_json::Value>(answer) {
        Err(e) => Some((
            "answer is not valid JSON",
            format!("JSON was asked for but the answer does not parse: {e}"),
        )),
        Ok(value) => match schema {
            Some(schema) => super::json_schema::first_violation(&value, schema).map(|why| {
                (
                    "answer does not match the JSON schema",
                    format!("the answer does not match the JSON schema: {why}"),
                )
            }),
            None if value.is_object() => None,
            None => Some((
                "answer is not a JSON object",
                "JSON was asked for but the answer is not a JSON object".to_owned(),
            )),
        },
    }
}

/// Scores an answer to `request`: the prompt is its last user message and
/// JSON is checked when its `response_format` asks for JSON.
pub fn score_for_request(
    request: &super::openai::ChatRequest,
    answer: &str,
    finish_reason: Option<FinishReason>,
    config: &QualityConfig,
) -> QualityReport {
    let prompt = request.last_user_text();
    score(
        &QualityInput {
            prompt: &prompt,
            answer,
            finish_reason,
            wants_json: request.wants_json(),
            schema: request.json_schema(),
        },
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prompt: &str, answer: &str, finish: Option<FinishReason>, json: bool) -> QualityReport {
        score(
            &QualityInput {
                prompt,
                answer,
                finish_reason: finish,
                wants_json: json,
                schema: None,
            },
            &QualityConfig::default(),
        )
    }

    /// The definition [`repeated_trigram_ratio`] implements: trigrams of
    /// strings, each looked up among those seen before it.
    fn trigram_ratio_reference(words: &[String]) -> f64 {
        if words.len() < 3 {
            return 0.0;
        }
        let grams: Vec<&[String]> = words.windows(3).collect();
        let mut seen = std::collections::BTreeSet::new();
        let repeats = grams.iter().filter(|g| !seen.insert(**g)).count();
        repeats as f64 / grams.len() as f64
    }

    proptest::proptest! {
        #[test]
        fn trigram_ratio_matches_its_definition(
            words in proptest::collection::vec("[abc]{1,2}", 0..60)
        ) {
            let expected = trigram_ratio_reference(&words);
            proptest::prop_assert!((repeated_trigram_ratio(&words) - expected).abs() < 1e-12);
        }
    }

    const GOOD: &str = "Paris is the capital of France. It sits on the Seine and is the \
                        country's largest city, home to about two million people.";

    #[test]
    fn good_answer_passes() {
        let r = run(
            "What is the capital of France?",
            GOOD,
            Some(FinishReason::Stop),
            false,
        );
        assert_eq!(r.total, 10.0, "{r:?}");
        assert!(r.passed);
        assert!(r.reasons.is_empty());
        assert_eq!(r.dimensions.len(), 6);
    }

    #[test]
    fn empty_scores_zero() {
        let r = run(
            "What is the capital of France?",
            "   ",
            Some(FinishReason::Stop),
            false,
        );
        assert_eq!(r.total, 0.0);
        assert_eq!(r.dimension(Dimension::Length), Some(0.0));
        assert!(!r.passed);
    }

    #[test]
    fn short_answer_loses_length_points() {
        let r = run("hi", "Hello there.", Some(FinishReason::Stop), false);
        let s = r.dimension(Dimension::Length).unwrap();
        assert!((s - (0.4 + 0.6 * 2.0 / 8.0)).abs() < 1e-9);
        assert!(r.reasons.iter().any(|x| x.contains("short")));
    }

    #[test]
    fn refusal_is_capped() {
        let r = run(
            "How do I pick a lock?",
            "I’m sorry, but I can’t help with picking locks or anything similar to that request.",
            Some(FinishReason::Stop),
            false,
        );
        assert_eq!(r.dimension(Dimension::Refusal), Some(0.0));
        assert!(r.total <= 3.0);
        assert!(!r.passed);
    }

    #[test]
    fn repetition_is_penalised() {
        let answer = "the cat sat on the mat ".repeat(10);
        let r = run("cat mat", &answer, Some(FinishReason::Stop), false);
        assert!(r.dimension(Dimension::Repetition).unwrap() < 0.1);
        assert!(!r.passed, "{r:?}");
        assert_eq!(r.total, 5.0);
        let words = text::words("a b c a b c");
        // Trigrams: abc bca cab abc → one repeat of four.
        assert!((repeated_trigram_ratio(&words) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn truncation_is_capped() {
        let r = run(
            "What is the capital of France?",
            GOOD,
            Some(FinishReason::Length),
            false,
        );
        assert_eq!(r.dimension(Dimension::Truncation), Some(0.0));
        assert_eq!(r.total, 6.0);
        assert!(!r.passed);
    }

    #[test]
    fn json_validity_when_asked() {
        let ok = run(
            "list capital france",
            r#"{"capital": "Paris", "country": "France"}"#,
            Some(FinishReason::Stop),
            true,
        );
        assert_eq!(ok.dimension(Dimension::Json), Some(1.0));
        let bad = run(
            "list capital france",
            r#"{"capital": "Paris", "country": "#,
            Some(FinishReason::Stop),
            true,
        );
        assert_eq!(bad.dimension(Dimension::Json), Some(0.0));
        assert!(bad.total <= 4.0);
        let array = run("x", "[1, 2, 3]", Some(FinishReason::Stop), true);
        assert_eq!(array.dimension(Dimension::Json), Some(0.0));
        // Not asked: prose is fine.
        let prose = run("x", "not json at all", None, false);
        assert_eq!(prose.dimension(Dimension::Json), Some(1.0));
    }

    #[test]
    fn coverage_of_key_terms() {
        let r = run(
            "Explain photosynthesis in chloroplasts",
            "Plants turn light into sugar using energy from the sun every single day.",
            Some(FinishReason::Stop),
            false,
        );
        assert!((r.dimension(Dimension::Coverage).unwrap() - 0.4).abs() < 1e-9);
        assert!(r.reasons.iter().any(|x| x.contains("photosynthesis")));
        let r = run("", GOOD, None, false);
        assert_eq!(r.dimension(Dimension::Coverage), Some(1.0));
    }

    #[test]
    fn threshold_is_configurable() {
        let cfg = QualityConfig {
            threshold: 9.5,
            ..QualityConfig::default()
        };
        let r = score(
            &QualityInput {
                prompt: "hi",
                answer: "Hello there, friend.",
                finish_reason: None,
                wants_json: false,
                schema: None,
            },
            &cfg,
        );
        assert!(!r.passed);
        assert_eq!(r.threshold, 9.5);
    }

    #[test]
    fn scores_for_a_request() {
        let req = crate::gateway::openai::ChatRequest::from_value(&serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "capital of France?"}],
            "response_format": {"type": "json_object"}
        }))
        .unwrap();
        let r = score_for_request(&req, "Paris", None, &QualityConfig::default());
        assert_eq!(r.dimension(Dimension::Json), Some(0.0));
        let r = score_for_request(
            &req,
            r#"{"capital": "Paris", "country": "France", "note": "largest city too"}"#,
            Some(FinishReason::Stop),
            &QualityConfig::default(),
        );
        assert_eq!(r.dimension(Dimension::Json), Some(1.0));
    }

    fn structured(answer: &str, schema: serde_json::Value) -> QualityReport {
        score(
            &QualityInput {
                prompt: "Extract the city and the country from the text please",
                answer,
                finish_reason: Some(FinishReason::Stop),
                wants_json: true,
                schema: Some(&schema),
            },
            &QualityConfig::default(),
        )
    }

    #[test]
    fn empty_object_for_an_object_schema_passes() {
        let r = structured("{}", serde_json::json!({"type": "object"}));
        assert_eq!(r.total, 10.0, "{r:?}");
        assert!(r.passed);
        assert!(r.reasons.is_empty(), "{r:?}");
        // json_object without a schema: `{}` is a valid JSON object too.
        let r = run(
            "Extract the city please",
            "{}",
            Some(FinishReason::Stop),
            true,
        );
        assert!(r.passed, "{r:?}");
        assert_eq!(r.dimension(Dimension::Length), Some(1.0));
    }

    #[test]
    fn short_valid_structured_answer_is_not_judged_as_prose() {
        let r = structured(
            r#"{"city": "Paris", "country": "France"}"#,
            serde_json::json!({"type": "object", "required": ["city", "country"]}),
        );
        assert_eq!(r.total, 10.0, "{r:?}");
        // A schema may ask for a bare array or value too.
        let r = structured(
            "[1, 2]",
            serde_json::json!({"type": "array", "items": {"type": "integer"}}),
        );
        assert!(r.passed, "{r:?}");
    }

    #[test]
    fn answer_breaking_the_schema_is_capped() {
        let r = structured(
            "{}",
            serde_json::json!({"type": "object", "required": ["city"]}),
        );
        assert_eq!(r.dimension(Dimension::Json), Some(0.0));
        assert!(r.total <= 4.0, "{r:?}");
        assert!(!r.passed);
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains("missing required property \"city\"")),
            "{r:?}"
        );
        let r = structured(
            r#"{"city": 3}"#,
            serde_json::json!({"properties": {"city": {"type": "string"}}}),
        );
        assert!(!r.passed);
        let r = structured("", serde_json::json!({"type": "object"}));
        assert_eq!(r.total, 0.0, "an empty answer is still empty: {r:?}");
    }

    #[test]
    fn request_schema_reaches_the_scorer() {
        let req = crate::gateway::openai::ChatRequest::from_value(&serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Where is the Eiffel tower located?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": {
                "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]
            }}}
        }))
        .unwrap();
        let ok = score_for_request(
            &req,
            r#"{"city":"Paris"}"#,
            Some(FinishReason::Stop),
            &QualityConfig::default(),
        );
        assert!(ok.passed, "{ok:?}");
        let bad = score_for_request(
            &req,
            r#"{"town":"Paris"}"#,
            Some(FinishReason::Stop),
            &QualityConfig::default(),
        );
        assert!(!bad.passed, "{bad:?}");
    }

    fn call(name: &str, arguments: &str) -> crate::gateway::openai::ToolCall {
        crate::gateway::openai::ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn a_well_formed_tool_call_passes_without_text() {
        let r = score_tool_calls(
            &[call("get_weather", r#"{"city":"Paris"}"#)],
            Some(FinishReason::ToolCalls),
            &QualityConfig::default(),
        );
        assert_eq!(r.total, 10.0, "{r:?}");
        assert!(r.passed);
    }

    #[test]
    fn a_tool_call_with_broken_arguments_fails() {
        let r = score_tool_calls(
            &[call("get_weather", r#"{"city":"#)],
            Some(FinishReason::ToolCalls),
            &QualityConfig::default(),
        );
        assert_eq!(r.total, 4.0);
        assert!(!r.passed);
        assert!(r.reasons.iter().any(|x| x.contains("get_weather")), "{r:?}");
    }

    #[test]
    fn truncated_tool_calls_fail() {
        let r = score_tool_calls(
            &[call("f", "{}")],
            Some(FinishReason::Length),
            &QualityConfig::default(),
        );
        assert_eq!(r.total, 6.0);
    }

    #[test]
    fn refusal_phrases_are_lowercase() {
        for p in REFUSAL_PHRASES {
            assert_eq!(*p, p.to_lowercase());
        }
    }
}
