//! Spin's identifier rules: component ids, variable names and store labels.
//!
//! Verified against Spin's `spin-serde` crate (`crates/serde/src/id.rs` in spinframework/spin):
//! an id is one or more words joined by a delimiter (`-` for kebab-case, `_` for snake_case);
//! no word is empty; the first word starts with an ASCII letter, later words with a letter or
//! digit; words hold only ASCII letters and digits, and each word is all lowercase or all
//! UPPERCASE. Component ids are kebab-case (`KebabId`), variable names lower snake_case
//! (`LowerSnakeId`), key-value and SQLite labels kebab-case or snake_case.

/// Checks `id` against Spin's id rule for the given delimiter; `lowercase_only` forbids
/// UPPERCASE words. The error is a sentence saying what is wrong.
pub(crate) fn check_id(id: &str, delimiter: char, lowercase_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let wrong_delimiter = if delimiter == '-' { '_' } else { '-' };
    if id.contains(wrong_delimiter) {
        return Err(format!(
            "words must be separated with {delimiter:?}, not {wrong_delimiter:?}"
        ));
    }
    for (index, word) in id.split(delimiter).enumerate() {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("{delimiter:?}-separated words must not be empty"));
        };
        if !(first.is_ascii_alphabetic() || (index > 0 && first.is_ascii_digit())) {
            return Err(format!(
                "{delimiter:?}-separated words must start with an ASCII letter (or a digit after the first word); got {first:?}"
            ));
        }
        let word_is_uppercase = first.is_ascii_uppercase();
        for ch in chars {
            if ch.is_ascii_digit() {
                continue;
            }
            if !ch.is_ascii_alphabetic() {
                return Err(format!(
                    "words may only contain ASCII letters and digits; got {ch:?}"
                ));
            }
            if ch.is_ascii_uppercase() != word_is_uppercase {
                return Err(format!(
                    "each word must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lowercase_only && word_is_uppercase {
            return Err(format!("must be all lowercase; got {id:?}"));
        }
    }
    Ok(())
}

/// A component id: Spin's `KebabId` (e.g. `health`, `scan-api`, `v2-api`).
pub(crate) fn check_component_id(id: &str) -> Result<(), String> {
    check_id(id, '-', false)
}

/// An application or component variable name: Spin's `LowerSnakeId` (e.g. `api_token`).
pub(crate) fn check_variable_name(name: &str) -> Result<(), String> {
    check_id(name, '_', true)
}

/// A key-value store or SQLite database label: kebab-case or snake_case, as Spin's
/// `kebab_or_snake_case` deserializer requires.
pub(crate) fn check_label(label: &str) -> Result<(), String> {
    if check_id(label, '-', false).is_ok() || check_id(label, '_', false).is_ok() {
        Ok(())
    } else {
        Err(format!("label {label:?} must be kebab-case or snake_case"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_follow_spin_kebab_rule() {
        for valid in ["health", "scan-api", "v2-api", "a1", "api-2", "HTTP-api"] {
            assert!(check_component_id(valid).is_ok(), "{valid} should be valid");
        }
        for invalid in [
            "", "scan_api", "-lead", "trail-", "dou--ble", "1st", "MiXed", "sp ace", "dot.ted",
        ] {
            assert!(
                check_component_id(invalid).is_err(),
                "{invalid} should be invalid"
            );
        }
    }

    #[test]
    fn variable_names_follow_spin_lower_snake_rule() {
        for valid in ["token", "api_token", "letters1_then2_numbers345"] {
            assert!(
                check_variable_name(valid).is_ok(),
                "{valid} should be valid"
            );
        }
        for invalid in [
            "",
            "kebab-case",
            "_leading_underscore",
            "trailing_underscore_",
            "double__underscore",
            "1initial_number",
            "unicode_snowpeople☃",
            "mIxEd_case",
            "UPPER_case",
        ] {
            assert!(
                check_variable_name(invalid).is_err(),
                "{invalid} should be invalid"
            );
        }
    }

    #[test]
    fn labels_may_be_kebab_or_snake() {
        for valid in ["default", "snake_case", "kebab-case"] {
            assert!(check_label(valid).is_ok());
        }
        let error = check_label("b@dlabel").unwrap_err();
        assert!(error.contains("b@dlabel"));
    }

    #[test]
    fn wrong_delimiter_is_named() {
        let error = check_component_id("my_component").unwrap_err();
        assert!(error.contains("'-'") && error.contains("'_'"), "{error}");
    }
}
