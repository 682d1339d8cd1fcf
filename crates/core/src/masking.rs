//! Masking of personal data and secrets in text before it is stored.
//!
//! Built-in detectors: bearer tokens, API keys (well-known prefixes, JWTs and
//! `api_key=…`-style assignments), email addresses, IBANs (ISO 13616 mod-97
//! checked), payment card numbers (13–19 digits, Luhn-checked) and phone
//! numbers (international `+…`, North American, and national numbers with a
//! leading 0); plus custom regular expressions per org. Each match becomes
//! `[MASKED:<kind>]`. Detectors run over the original text and overlapping
//! matches are resolved by detector order (the list above), then leftmost, so
//! one detector's replacement never feeds another.
//!
//! The corpus in `crates/core/testdata/masking_corpus.jsonl` measures recall
//! and false positives (`masking::tests::corpus_recall_and_false_positives`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

use crate::error::{ApiError, Code};

/// Most custom patterns one org may configure.
pub const MAX_CUSTOM_PATTERNS: usize = 20;
/// Longest custom pattern source, in bytes.
pub const MAX_PATTERN_LEN: usize = 500;
/// Compiled size limit of one custom pattern (keeps a pattern from costing
/// megabytes of memory in every instance).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Why a custom pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskingError {
    /// The name is not 1–32 characters of `a-z`, `0-9`, `_`, `-`.
    #[error("pattern name {0:?} must be 1-32 characters of a-z, 0-9, _ and -")]
    InvalidName(String),
    /// Two patterns share a name.
    #[error("pattern name {0:?} is used twice")]
    DuplicateName(String),
    /// The regular expression does not compile (or is too large).
    #[error("pattern {name:?} is not a valid regular expression: {reason}")]
    InvalidPattern {
        /// The pattern's name.
        name: String,
        /// The compiler's message.
        reason: String,
    },
    /// The source is empty or longer than [`MAX_PATTERN_LEN`].
    #[error("pattern {0:?} must be 1-{MAX_PATTERN_LEN} bytes long")]
    PatternLength(String),
    /// The expression matches the empty string, so it would mask nothing useful.
    #[error("pattern {0:?} matches the empty string")]
    MatchesEmpty(String),
    /// More than [`MAX_CUSTOM_PATTERNS`] patterns.
    #[error("at most {MAX_CUSTOM_PATTERNS} custom patterns")]
    TooMany,
}

impl From<MaskingError> for ApiError {
    fn from(error: MaskingError) -> Self {
        ApiError::new(Code::InvalidRequest, error.to_string()).with_field("mask_patterns")
    }
}

/// One org's custom pattern, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatternSpec {
    /// Shown in the replacement: `[MASKED:<name>]`.
    pub name: String,
    /// A regular expression (Rust `regex` syntax; no look-around).
    pub pattern: String,
}

/// A masker: the built-in detectors plus one org's compiled custom patterns.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    custom: Vec<(String, Regex)>,
}

/// The masked text and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    /// The text with every match replaced.
    pub text: String,
    /// How many matches of each kind were replaced.
    pub counts: BTreeMap<String, usize>,
}

impl Masker {
    /// A masker with the built-in detectors and `custom` patterns, validated.
    pub fn new(custom: &[PatternSpec]) -> Result<Self, MaskingError> {
        if custom.len() > MAX_CUSTOM_PATTERNS {
            return Err(MaskingError::TooMany);
        }
        let mut compiled = Vec::with_capacity(custom.len());
        for spec in custom {
            let valid_name = !spec.name.is_empty()
                && spec.name.len() <= 32
                && spec.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid_name {
                return Err(MaskingError::InvalidName(spec.name.clone()));
            }
            if compiled.iter().any(|(name, _)| name == &spec.name) {
                return Err(MaskingError::DuplicateName(spec.name.clone()));
            }
            if spec.pattern.is_empty() || spec.pattern.len() > MAX_PATTERN_LEN {
                return Err(MaskingError::PatternLength(spec.name.clone()));
            }
            let regex = RegexBuilder::new(&spec.pattern)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| MaskingError::InvalidPattern {
                    name: spec.name.clone(),
                    reason: e.to_string(),
                })?;
            if regex.is_match("") {
                return Err(MaskingError::MatchesEmpty(spec.name.clone()));
            }
            compiled.push((spec.name.clone(), regex));
        }
        Ok(Self { custom: compiled })
    }

    /// Masks `text`: every detected span becomes `[MASKED:<kind>]`.
    pub fn mask(&self, text: &str) -> Masked {
        let mut spans: Vec<Span> = Vec::new();
        for detector in builtins() {
            for (start, end) in detector.find(text) {
                push_unless_overlapping(
                    &mut spans,
                    Span {
                        start,
                        end,
                        kind: detector.kind,
                    },
                );
            }
        }
        for (name, regex) in &self.custom {
            for m in regex.find_iter(text) {
                push_unless_overlapping(
                    &mut spans,
                    Span {
                        start: m.start(),
                        end: m.end(),
                        kind: name,
                    },
                );
            }
        }
        spans.sort_by_key(|span| span.start);
        let mut out = String::with_capacity(text.len());
        let mut counts = BTreeMap::new();
        let mut at = 0;
        for span in spans {
            out.push_str(&text[at..span.start]);
            out.push_str("[MASKED:");
            out.push_str(span.kind);
            out.push(']');
            *counts.entry(span.kind.to_string()).or_insert(0) += 1;
            at = span.end;
        }
        out.push_str(&text[at..]);
        Masked { text: out, counts }
    }
}

/// Masks `text` with the built-in detectors only.
pub fn mask(text: &str) -> Masked {
    Masker::default().mask(text)
}

#[derive(Debug, Clone, Copy)]
struct Span<'a> {
    start: usize,
    end: usize,
    kind: &'a str,
}

/// Earlier detectors win: a span overlapping one already taken is dropped.
fn push_unless_overlapping<'a>(spans: &mut Vec<Span<'a>>, span: Span<'a>) {
    if span.start < span.end
        && !spans
            .iter()
            .any(|s| span.start < s.end && s.start < span.end)
    {
        spans.push(span);
    }
}

/// How a detector turns a regex match into a span to mask (or none).
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The whole match.
    Whole,
    /// Capture group 1 only (keeps `Bearer ` or `api_key=` readable).
    Group1,
    /// The match, if its digits pass the Luhn check (13–19 digits).
    Luhn,
    /// The match, if it is an IBAN passing the mod-97 check.
    Mod97,
    /// The match, if it holds 8–15 digits (a phone number's range).
    PhoneDigits,
}

struct Detector {
    kind: &'static str,
    regex: Regex,
    check: Check,
}

impl Detector {
    fn find<'t>(&'t self, text: &'t str) -> impl Iterator<Item = (usize, usize)> + 't {
        self.regex.captures_iter(text).filter_map(move |caps| {
            let whole = caps.get(0)?;
            let span = (whole.start(), whole.end());
            match self.check {
                Check::Whole => Some(span),
                Check::Group1 => caps.get(1).map(|g| (g.start(), g.end())),
                Check::Luhn => luhn_valid(whole.as_str()).then_some(span),
                Check::Mod97 => iban_valid(whole.as_str()).then_some(span),
                Check::PhoneDigits => {
                    let digits = whole.as_str().bytes().filter(u8::is_ascii_digit).count();
                    (8..=15).contains(&digits).then_some(span)
                }
            }
        })
    }
}

/// The built-in detectors, in priority order, compiled once per instance.
fn builtins() -> &'static [Detector] {
    static DETECTORS: OnceLock<Vec<Detector>> = OnceLock::new();
    DETECTORS.get_or_init(|| {
        let table: [(&'static str, &str, Check); 9] = [
            ("bearer", r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)", Check::Group1),
            (
                "api_key",
                concat!(
                    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|dol_sk_[A-Za-z0-9_\-]{8,}",
                    r"|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}",
                    r"|xox[abprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}",
                    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
                    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"
                ),
                Check::Whole,
            ),
            (
                "api_key",
                r#"(?i)\b(?:api[_\-]?key|secret|access[_\-]?token|auth[_\-]?token|password|passwd)["']?\s*[:=]\s*["']?([A-Za-z0-9_\-./+]{12,})"#,
                Check::Group1,
            ),
            (
                "email",
                r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b",
                Check::Whole,
            ),
            ("iban", r"\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b", Check::Mod97),
            (
                "iban",
                r"\b[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?\b",
                Check::Mod97,
            ),
            ("card", r"\b[0-9](?:[ \-]?[0-9]){12,18}\b", Check::Luhn),
            (
                "phone",
                r"(?:\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,5}\b|(?:\(\b[2-9][0-9]{2}\)\s?|\b[2-9][0-9]{2}[.\-])[0-9]{3}[ .\-][0-9]{4}\b)",
                Check::PhoneDigits,
            ),
            (
                "phone",
                r"\b0[1-9][0-9]{1,3}[ \-/][0-9]{3,4}[ \-]?[0-9]{3,4}\b",
                Check::PhoneDigits,
            ),
        ];
        table
            .into_iter()
            .filter_map(|(kind, source, check)| {
                // The sources are constants covered by the tests; a typo would
                // drop that detector, which the corpus test catches.
                Regex::new(source).ok().map(|regex| Detector { kind, regex, check })
            })
            .collect()
    })
}

/// Whether the digits of `text` (separators ignored) are 13–19 long and pass Luhn.
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `text` (spaces ignored) is an IBAN: 15–34 characters, country
/// letters, check digits, and the ISO 13616 mod-97 remainder 1.
pub fn iban_valid(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rotated {
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b.to_ascii_uppercase() - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
#[path = "masking_tests.rs"]
mod tests;
