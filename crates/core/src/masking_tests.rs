#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;

use super::*;

fn spec(name: &str, pattern: &str) -> PatternSpec {
    PatternSpec {
        name: name.to_string(),
        pattern: pattern.to_string(),
    }
}

#[test]
fn each_builtin_kind_is_masked_and_counted() {
    let masked = mask(
        "mail a@b.io, card 4111 1111 1111 1111, iban DE89370400440532013000, \
         phone +44 20 7946 0958, key sk-1234567890abcdefXYZ, Authorization: Bearer abcdefgh12345",
    );
    assert_eq!(
        masked.text,
        "mail [MASKED:email], card [MASKED:card], iban [MASKED:iban], \
         phone [MASKED:phone], key [MASKED:api_key], Authorization: Bearer [MASKED:bearer]"
    );
    let kinds: Vec<&str> = masked.counts.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["api_key", "bearer", "card", "email", "iban", "phone"]
    );
}

#[test]
fn luhn_and_mod97_decide_cards_and_ibans() {
    assert!(luhn_valid("4111 1111 1111 1111"));
    assert!(!luhn_valid("4111 1111 1111 1112"));
    assert!(
        !luhn_valid("0000 0000 0000 0000"),
        "one repeated digit is no card"
    );
    assert!(!luhn_valid("42"), "too short");
    assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
    assert!(!iban_valid("GB83WEST12345698765432"));
    assert!(!iban_valid("gb82west12345698765432"), "lower-case country");
    assert!(!iban_valid("DE89"), "too short");
    assert_eq!(mask("4111 1111 1111 1112").counts.len(), 0);
}

#[test]
fn text_without_matches_is_returned_unchanged() {
    let text = "Nothing to see: 2026-12-05, v1.2.3, 192.168.0.1.";
    assert_eq!(mask(text).text, text);
}

#[test]
fn custom_patterns_mask_with_their_name() {
    let masker = Masker::new(&[spec("employee", r"EMP-[0-9]{6}")]).unwrap();
    let masked = masker.mask("ticket for EMP-123456 and a@b.io");
    assert_eq!(
        masked.text,
        "ticket for [MASKED:employee] and [MASKED:email]"
    );
}

#[test]
fn builtins_win_over_custom_patterns_on_overlap() {
    let masker = Masker::new(&[spec("digits", r"[0-9]{4}")]).unwrap();
    let masked = masker.mask("4111111111111111 and 2024");
    assert_eq!(masked.text, "[MASKED:card] and [MASKED:digits]");
}

#[test]
fn custom_pattern_with_a_bad_name_is_refused() {
    for name in ["", "Upper", "has space", &"x".repeat(33)] {
        assert_eq!(
            Masker::new(&[spec(name, "x")]).unwrap_err(),
            MaskingError::InvalidName(name.to_string())
        );
    }
}

#[test]
fn custom_pattern_names_must_be_unique() {
    let error = Masker::new(&[spec("a", "x"), spec("a", "y")]).unwrap_err();
    assert_eq!(error, MaskingError::DuplicateName("a".into()));
}

#[test]
fn custom_pattern_that_does_not_compile_is_refused() {
    let error = Masker::new(&[spec("bad", "(unclosed")]).unwrap_err();
    assert!(
        matches!(error, MaskingError::InvalidPattern { .. }),
        "{error}"
    );
    let error = Masker::new(&[spec("look", "(?=x)")]).unwrap_err();
    assert!(
        matches!(error, MaskingError::InvalidPattern { .. }),
        "{error}"
    );
}

#[test]
fn custom_pattern_too_large_when_compiled_is_refused() {
    let error = Masker::new(&[spec("huge", r"\w{500}\w{500}\w{500}")]).unwrap_err();
    assert!(
        matches!(error, MaskingError::InvalidPattern { .. }),
        "{error}"
    );
}

#[test]
fn custom_pattern_empty_or_too_long_is_refused() {
    assert_eq!(
        Masker::new(&[spec("e", "")]).unwrap_err(),
        MaskingError::PatternLength("e".into())
    );
    assert_eq!(
        Masker::new(&[spec("l", &"a".repeat(MAX_PATTERN_LEN + 1))]).unwrap_err(),
        MaskingError::PatternLength("l".into())
    );
}

#[test]
fn custom_pattern_matching_the_empty_string_is_refused() {
    assert_eq!(
        Masker::new(&[spec("star", "a*")]).unwrap_err(),
        MaskingError::MatchesEmpty("star".into())
    );
}

#[test]
fn too_many_custom_patterns_are_refused() {
    let many: Vec<PatternSpec> = (0..=MAX_CUSTOM_PATTERNS)
        .map(|i| spec(&format!("p{i}"), "x"))
        .collect();
    assert_eq!(Masker::new(&many).unwrap_err(), MaskingError::TooMany);
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    secrets: Vec<Secret>,
}

#[derive(serde::Deserialize)]
struct Secret {
    kind: String,
    value: String,
}

/// Recall: a secret counts as found when its value is gone from the masked
/// text and a match of its kind was reported. False positives: matches
/// beyond the expected ones (every match in a negative example).
#[test]
fn corpus_recall_and_false_positives() {
    let corpus = include_str!("../testdata/masking_corpus.jsonl");
    let (mut secrets, mut found, mut false_positives, mut negatives) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).unwrap();
        let masked = mask(&case.text);
        let reported: usize = masked.counts.values().sum();
        if case.secrets.is_empty() {
            negatives += 1;
            if reported > 0 {
                misses.push(format!("false positive: {} -> {}", case.text, masked.text));
            }
            false_positives += reported;
            continue;
        }
        for secret in &case.secrets {
            secrets += 1;
            let kind_reported = masked.counts.get(&secret.kind).copied().unwrap_or(0) > 0;
            if kind_reported && !masked.text.contains(&secret.value) {
                found += 1;
            } else {
                misses.push(format!(
                    "missed {}: {} -> {}",
                    secret.kind, case.text, masked.text
                ));
            }
        }
        false_positives += reported.saturating_sub(case.secrets.len());
    }
    let recall = found as f64 / secrets as f64;
    println!(
        "masking corpus: {found}/{secrets} secrets masked (recall {:.1} %), \
         {false_positives} false positives over {negatives} negative examples",
        recall * 100.0
    );
    for miss in &misses {
        println!("  {miss}");
    }
    assert!(recall >= 0.95, "recall {recall}");
    assert!(false_positives <= 2, "{false_positives} false positives");
}

/// A Luhn-valid card number of `body.len() + 1` digits.
fn with_luhn_digit(body: &[u32]) -> String {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    body.iter()
        .chain(std::iter::once(&check))
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

/// A valid German IBAN for an 18-digit account body.
fn german_iban(body: &str) -> String {
    // Check digits 98 - (BBAN + "DE00" as digits) mod 97.
    let digits = format!("{body}131400");
    let remainder = digits
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("DE{:02}{body}", 98 - remainder)
}

proptest! {
    #[test]
    fn valid_cards_in_prose_are_always_masked(
        first in 3u32..7,
        rest in proptest::collection::vec(0u32..10, 14),
        before in "[a-z ]{0,20}",
        after in "[a-z ]{0,20}",
    ) {
        let mut body = vec![first];
        body.extend(rest);
        let card = with_luhn_digit(&body);
        prop_assume!(luhn_valid(&card));
        let masked = mask(&format!("{before} {card} {after}"));
        prop_assert!(!masked.text.contains(&card), "{}", masked.text);
    }

    #[test]
    fn valid_ibans_are_always_masked(body in "[0-9]{18}", before in "[a-z ]{0,20}") {
        let iban = german_iban(&body);
        prop_assert!(iban_valid(&iban));
        let masked = mask(&format!("{before} {iban} ok"));
        prop_assert!(!masked.text.contains(&iban), "{}", masked.text);
        prop_assert_eq!(masked.counts.get("iban").copied(), Some(1));
    }

    #[test]
    fn emails_are_always_masked(
        local in "[a-z][a-z0-9._]{0,15}[a-z0-9]",
        domain in "[a-z][a-z0-9]{1,10}",
        tld in "(com|org|io|de|fr)",
    ) {
        let email = format!("{local}@{domain}.{tld}");
        let masked = mask(&format!("write to {email} today"));
        prop_assert!(!masked.text.contains(&email), "{}", masked.text);
    }

    #[test]
    fn plain_prose_is_never_changed(text in "[a-z ,.!?']{0,200}") {
        prop_assert_eq!(mask(&text).text, text);
    }

    #[test]
    fn masking_twice_changes_nothing_more(text in "\\PC{0,120}") {
        let once = mask(&text).text;
        prop_assert_eq!(mask(&once).text, once.clone());
    }
}
