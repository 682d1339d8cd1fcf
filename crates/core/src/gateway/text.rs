//! A small, deterministic text toolkit shared by the quality scorer and the
//! offline provider: word splitting, approximate token counts and key terms.
//!
//! It is not a model tokenizer; it only has to be stable and cheap.

/// English stopwords ignored when extracting key terms.
pub const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "down", "during", "each", "explain", "few",
    "for", "from", "further", "give", "had", "has", "have", "having", "he", "her", "here", "hers",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "like", "me", "more",
    "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other",
    "our", "out", "over", "own", "please", "same", "she", "should", "so", "some", "such", "tell",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "us", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "write",
    "you", "your",
];

/// Lower-cased words: maximal runs of alphanumeric characters (Unicode-aware).
/// Apostrophes inside a word are dropped so `don't` and `dont` agree.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        // ASCII first: the same answer as the Unicode tables, without them
        // (scoring runs this over every answer on the hot path).
        if ch.is_ascii_alphanumeric() {
            current.push(ch.to_ascii_lowercase());
        } else if !ch.is_ascii() && ch.is_alphanumeric() {
            current.extend(ch.to_lowercase());
        } else if (ch == '\'' || ch == '\u{2019}') && !current.is_empty() {
            // Contractions stay one word; the apostrophe itself carries no meaning here.
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// An approximate token count: every word counts as one token plus one per
/// four characters beyond the first four, and every other non-space symbol
/// counts as one. Deterministic and monotone in the text; close enough to
/// BPE counts for budgeting and the offline provider's `usage`.
pub fn approx_tokens(text: &str) -> u64 {
    let mut tokens: u64 = 0;
    let mut run: u64 = 0;
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            run += 1;
            continue;
        }
        if run > 0 {
            tokens += 1 + (run.saturating_sub(1)) / 4;
            run = 0;
        }
        if !ch.is_whitespace() {
            tokens += 1;
        }
    }
    if run > 0 {
        tokens += 1 + (run.saturating_sub(1)) / 4;
    }
    tokens
}

/// Whether a lower-cased word is a stopword.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

/// The key terms of a text: distinct non-stopword words of at least two
/// characters (or any number), in order of first appearance.
pub fn key_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words(text) {
        let is_number = word.chars().all(|c| c.is_ascii_digit());
        if (word.chars().count() < 2 && !is_number) || is_stopword(&word) {
            continue;
        }
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, STOPWORDS);
    }

    /// The definition [`words`] implements: Unicode tables for every character.
    fn words_reference(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        for ch in text.chars() {
            if ch.is_alphanumeric() {
                current.extend(ch.to_lowercase());
            } else if (ch == '\'' || ch == '\u{2019}') && !current.is_empty() {
            } else if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn words_match_the_unicode_definition(text in "(?s).{0,200}") {
            proptest::prop_assert_eq!(words(&text), words_reference(&text));
        }

        #[test]
        fn words_match_it_on_mixed_scripts(text in "[a-zA-Z0-9 ,.'\u{2019}ÄÖÜäöüßİıΣσςДд日本\u{300}-]{0,80}") {
            proptest::prop_assert_eq!(words(&text), words_reference(&text));
        }
    }

    #[test]
    fn words_lowercase_and_split_on_punctuation() {
        assert_eq!(words("Hello, World! Don't"), vec!["hello", "world", "dont"]);
        assert!(words("  ...  ").is_empty());
    }

    #[test]
    fn approx_tokens_counts_words_and_symbols() {
        assert_eq!(approx_tokens(""), 0);
        assert_eq!(approx_tokens("hi"), 1);
        assert_eq!(approx_tokens("hi!"), 2);
        // 13 letters: 1 + 12/4 = 4 tokens.
        assert_eq!(approx_tokens("extraordinary"), 4);
    }

    #[test]
    fn key_terms_drop_stopwords_and_duplicates() {
        assert_eq!(
            key_terms("What is the capital of France? The capital, please."),
            vec!["capital", "france"]
        );
        assert_eq!(key_terms("what is 2 + 2"), vec!["2"]);
    }
}
