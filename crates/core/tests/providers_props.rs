//! Property tests for the provider adapters: the SSE parser and the stream
//! decoders do not care how the body is chunked, never panic, always end a
//! stream with exactly one terminal event, and error messages never leak keys.

// A panic is how a property test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dol_core::gateway::providers::{
    MAX_MESSAGE_CHARS, ProviderKind, SseEvent, SseParser, StreamDecoder, StreamEvent,
    classify_error,
};
use proptest::prelude::*;
use serde_json::json;

const KINDS: [ProviderKind; 3] = [
    ProviderKind::OpenAiCompatible,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
];

/// `input` cut at `cuts` (taken modulo its length, in order).
fn chunks<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(&input[start..p]);
        start = p;
    }
    out.push(&input[start..]);
    out
}

fn sse_all(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out: Vec<SseEvent> = pieces.iter().flat_map(|c| p.feed(c)).collect();
    out.extend(p.finish());
    out
}

fn decode_all(kind: ProviderKind, pieces: &[&[u8]]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new(kind);
    let mut out: Vec<StreamEvent> = pieces.iter().flat_map(|c| d.feed(c)).collect();
    out.extend(d.finish());
    out
}

/// SSE-ish text: field names, separators, every line ending, multi-byte characters.
fn sse_text() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("data: ".to_owned()),
        Just("data:".to_owned()),
        Just("event: ".to_owned()),
        Just("id: 1".to_owned()),
        Just(":".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n\n".to_owned()),
        Just("[DONE]".to_owned()),
        Just("é🌍".to_owned()),
        Just("\u{feff}".to_owned()),
        "[a-z {}\":,]{0,8}",
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

/// A well-formed stream of `deltas` in `kind`'s protocol.
fn provider_stream(kind: ProviderKind, deltas: &[String]) -> String {
    let mut s = String::new();
    match kind {
        ProviderKind::OpenAiCompatible => {
            for d in deltas {
                let chunk = json!({"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]});
                s.push_str(&format!("data: {chunk}\n\n"));
            }
            s.push_str(
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            );
            s.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n");
            s.push_str("data: [DONE]\n\n");
        }
        ProviderKind::Anthropic => {
            s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n");
            for d in deltas {
                let ev = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}});
                s.push_str(&format!("event: content_block_delta\r\ndata: {ev}\r\n\r\n"));
            }
            s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n");
            s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        }
        ProviderKind::Gemini => {
            for d in deltas {
                let ev = json!({"candidates": [{"content": {"parts": [{"text": d}], "role": "model"}, "index": 0}]});
                s.push_str(&format!("data: {ev}\r\n\r\n"));
            }
            s.push_str("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":2}}\r\n\r\n");
        }
    }
    s
}

fn terminal(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::Done | StreamEvent::Error(_))
}

proptest! {
    #[test]
    fn sse_events_do_not_depend_on_chunking(
        input in sse_text(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = sse_all(&[&input]);
        prop_assert_eq!(&sse_all(&chunks(&input, &cuts)), &whole);
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&sse_all(&bytewise), &whole);
    }

    #[test]
    fn sse_arbitrary_bytes_do_not_depend_on_chunking(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(sse_all(&chunks(&input, &cuts)), sse_all(&[&input]));
    }

    #[test]
    fn decoder_never_panics_and_ends_exactly_once(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        for kind in KINDS {
            let out = decode_all(kind, &chunks(&input, &cuts));
            prop_assert_eq!(out.iter().filter(|e| terminal(e)).count(), 1);
            prop_assert!(out.last().is_some_and(terminal));
        }
    }

    #[test]
    fn decoder_handles_sse_like_noise(
        input in sse_text(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        for kind in KINDS {
            let out = decode_all(kind, &chunks(&input, &cuts));
            prop_assert_eq!(&out, &decode_all(kind, &[&input]));
            prop_assert_eq!(out.iter().filter(|e| terminal(e)).count(), 1);
            prop_assert!(out.last().is_some_and(terminal));
        }
    }

    #[test]
    fn streamed_text_survives_any_chunking(
        deltas in proptest::collection::vec(any::<String>(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        cut_short in any::<bool>(),
    ) {
        for kind in KINDS {
            let stream = provider_stream(kind, &deltas);
            let bytes = stream.as_bytes();
            // Dropping the last event (the terminal one) must turn success into an error.
            let body = if cut_short {
                let end = stream.trim_end().rfind("data:").unwrap_or(0);
                &bytes[..end]
            } else {
                bytes
            };
            let out = decode_all(kind, &chunks(body, &cuts));
            let text: String = out.iter().filter_map(|e| match e {
                StreamEvent::Delta(t) => Some(t.as_str()),
                _ => None,
            }).collect();
            prop_assert_eq!(text, deltas.concat());
            match out.last() {
                Some(StreamEvent::Done) => prop_assert!(!cut_short),
                Some(StreamEvent::Error(f)) => {
                    prop_assert!(cut_short);
                    prop_assert_eq!(f.message.as_str(), "stream ended early");
                }
                other => prop_assert!(false, "unexpected end {:?}", other),
            }
        }
    }

    #[test]
    fn error_messages_are_short_and_never_leak_keys(
        status in 0u16..1000,
        before in "[ -~]{0,80}",
        secret in "[A-Za-z0-9]{24,40}",
        after in "[ -~]{0,300}",
        wrap in any::<bool>(),
    ) {
        let key = format!("sk-{secret}");
        let text = format!("{before} {key} {after}");
        let body = if wrap {
            json!({"error": {"message": text, "type": "invalid_request_error"}}).to_string()
        } else {
            text
        };
        for kind in KINDS {
            let f = classify_error(kind, status, &[], body.as_bytes(), 0);
            prop_assert!(f.message.chars().count() <= MAX_MESSAGE_CHARS);
            prop_assert!(!f.message.contains(&key), "{}", f.message);
            prop_assert!(!f.message.contains('\n'));
        }
    }
}
