//! The offline `basic` provider: a deterministic answer without network or key.
//!
//! It is the pipeline's last resort and what `dol up` answers with on a fresh
//! machine. The answer is clearly labelled with [`LABEL`], restates the last
//! user message (shortened to [`ECHO_CHARS`] characters) and its key terms,
//! and counts usage with [`text::approx_tokens`]. When JSON was asked for, the
//! answer is a JSON object with the same information, so it passes the JSON
//! check of the quality gate. The same messages always give the same answer.

use serde_json::json;

use super::openai::{
    ChatCompletion, ChatCompletionChunk, Delta, FinishReason, Message, Role, Usage,
};
use super::text;

/// Provider name of the offline provider.
pub const PROVIDER: &str = "offline";
/// Model id of the offline provider (always listed by `GET /v1/models`).
pub const MODEL: &str = "dol-basic-offline";
/// The label every offline answer starts with.
pub const LABEL: &str = "[DOL basic tier — offline, deterministic]";
/// Longest part of the user message echoed back, in characters.
pub const ECHO_CHARS: usize = 280;
/// Most key terms listed.
const MAX_TERMS: usize = 8;

/// An offline answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineAnswer {
    /// The answer text.
    pub content: String,
    /// Approximate usage.
    pub usage: Usage,
    /// Always `stop`.
    pub finish_reason: FinishReason,
}

fn shorten(s: &str, max_chars: usize) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(max_chars).collect();
    out.push('…');
    out
}

/// Prompt tokens: every message's text plus a small per-message overhead for role framing.
fn prompt_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| text::approx_tokens(&m.text_content()) + 3)
        .sum()
}

/// Answers `messages`; `json` when the request's `response_format` asks for JSON.
pub fn answer(messages: &[Message], json: bool) -> OfflineAnswer {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default();
    let echo = shorten(&last, ECHO_CHARS);
    let terms: Vec<String> = text::key_terms(&last).into_iter().take(MAX_TERMS).collect();
    let word_count = text::words(&last).len();
    let content = if json {
        let v = json!({
            "dol_tier": "basic",
            "offline": true,
            "note": format!("{LABEL} No AI provider was reachable, so no model produced this answer."),
            "your_message": echo,
            "word_count": word_count,
            "key_terms": terms,
        });
        v.to_string()
    } else if last.trim().is_empty() {
        format!(
            "{LABEL} No AI provider was reachable, so this answer was produced locally without a \
             model. There was no user message to respond to."
        )
    } else {
        let terms_line = if terms.is_empty() {
            String::new()
        } else {
            format!(" Key terms: {}.", terms.join(", "))
        };
        format!(
            "{LABEL} No AI provider was reachable, so this answer was produced locally without a \
             model. Your message ({word_count} words) was: \"{echo}\".{terms_line} Configure a \
             provider to get a real answer."
        )
    };
    let usage = Usage::new(prompt_tokens(messages), text::approx_tokens(&content));
    OfflineAnswer {
        content,
        usage,
        finish_reason: FinishReason::Stop,
    }
}

/// The answer as a non-streaming completion.
pub fn completion(id: &str, created: u64, messages: &[Message], json: bool) -> ChatCompletion {
    let a = answer(messages, json);
    ChatCompletion::text(id, created, MODEL, &a.content, a.finish_reason, a.usage)
}

/// Splits `content` into pieces of at most `max_chars` characters (at least 1),
/// preferring to cut after whitespace. Concatenating the pieces gives `content` back.
pub fn split(content: &str, max_chars: usize) -> Vec<String> {
    let max = max_chars.max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut count = 0usize;
    // Byte length of `current` just after its last whitespace, to cut there.
    let mut last_break: Option<usize> = None;
    for ch in content.chars() {
        current.push(ch);
        count += 1;
        if ch.is_whitespace() {
            last_break = Some(current.len());
        }
        if count == max {
            match last_break {
                Some(at) if at < current.len() => {
                    let rest = current.split_off(at);
                    out.push(std::mem::replace(&mut current, rest));
                    count = current.chars().count();
                }
                _ => {
                    out.push(std::mem::take(&mut current));
                    count = 0;
                }
            }
            last_break = None;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The answer as streaming chunks: a role chunk, content chunks of at most
/// `max_chars` characters, a chunk with `finish_reason`, and, when
/// `include_usage`, the final usage chunk. (The caller adds `data: [DONE]`.)
pub fn stream_chunks(
    id: &str,
    created: u64,
    messages: &[Message],
    json: bool,
    include_usage: bool,
    max_chars: usize,
) -> Vec<ChatCompletionChunk> {
    let a = answer(messages, json);
    let mut chunks = vec![ChatCompletionChunk::delta(
        id,
        created,
        MODEL,
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        },
        None,
    )];
    chunks.extend(split(&a.content, max_chars).into_iter().map(|piece| {
        ChatCompletionChunk::delta(
            id,
            created,
            MODEL,
            Delta {
                content: Some(piece),
                ..Delta::default()
            },
            None,
        )
    }));
    chunks.push(ChatCompletionChunk::delta(
        id,
        created,
        MODEL,
        Delta::default(),
        Some(a.finish_reason),
    ));
    if include_usage {
        chunks.push(ChatCompletionChunk::usage(id, created, MODEL, a.usage));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::quality::{self, QualityConfig, QualityInput};

    fn msgs(user: &str) -> Vec<Message> {
        vec![
            Message::text(Role::System, "be helpful"),
            Message::text(Role::User, "first question"),
            Message::text(Role::Assistant, "first answer"),
            Message::text(Role::User, user),
        ]
    }

    #[test]
    fn answer_is_labelled_and_echoes_last_user_message() {
        let a = answer(&msgs("What is the capital of France?"), false);
        assert!(a.content.starts_with(LABEL));
        assert!(a.content.contains("\"What is the capital of France?\""));
        assert!(a.content.contains("Key terms: capital, france."));
        assert!(!a.content.contains("first question"));
        assert_eq!(a.finish_reason, FinishReason::Stop);
        assert!(a.usage.prompt_tokens > 0 && a.usage.completion_tokens > 0);
        assert_eq!(
            a.usage.total_tokens,
            a.usage.prompt_tokens + a.usage.completion_tokens
        );
    }

    #[test]
    fn answer_is_deterministic() {
        assert_eq!(answer(&msgs("hello"), false), answer(&msgs("hello"), false));
        assert_ne!(answer(&msgs("hello"), false), answer(&msgs("bye"), false));
    }

    #[test]
    fn long_messages_are_shortened() {
        let long = "word ".repeat(200);
        let a = answer(&msgs(&long), false);
        assert!(a.content.contains('…'));
        assert!(a.content.chars().count() < 600);
    }

    #[test]
    fn no_user_message() {
        let a = answer(&[Message::text(Role::System, "x")], false);
        assert!(a.content.starts_with(LABEL));
        assert!(a.content.contains("no user message"));
    }

    #[test]
    fn json_answer_is_a_json_object_that_passes_the_json_check() {
        let a = answer(&msgs("list the planets"), true);
        let v: serde_json::Value = serde_json::from_str(&a.content).unwrap();
        assert_eq!(v["dol_tier"], "basic");
        assert_eq!(v["your_message"], "list the planets");
        let r = quality::score(
            &QualityInput {
                prompt: "list the planets",
                answer: &a.content,
                finish_reason: Some(a.finish_reason),
                wants_json: true,
                schema: None,
            },
            &QualityConfig::default(),
        );
        assert_eq!(r.dimension(quality::Dimension::Json), Some(1.0));
    }

    #[test]
    fn split_reassembles_and_respects_size() {
        let s = "The quick brown fox — jumps over the lazy dog. Ünïcödé ok.";
        for max in [1, 3, 7, 16, 100] {
            let parts = split(s, max);
            assert_eq!(parts.concat(), s);
            assert!(
                parts
                    .iter()
                    .all(|p| p.chars().count() <= max && !p.is_empty())
            );
        }
        assert!(split("", 5).is_empty());
        assert_eq!(split("aaaa bbbb", 6), vec!["aaaa ", "bbbb"]);
    }

    #[test]
    fn stream_chunks_match_the_completion() {
        let m = msgs("stream me");
        let chunks = stream_chunks("c1", 7, &m, false, true, 16);
        let full = completion("c1", 7, &m, false);
        let text: String = chunks
            .iter()
            .filter_map(|c| c.choices.first())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, full.content());
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        let n = chunks.len();
        assert_eq!(
            chunks[n - 2].choices[0].finish_reason,
            Some(FinishReason::Stop)
        );
        assert!(chunks[n - 1].choices.is_empty());
        assert_eq!(chunks[n - 1].usage, full.usage);
        assert!(
            stream_chunks("c1", 7, &m, false, false, 16)
                .iter()
                .all(|c| c.usage.is_none())
        );
    }
}
