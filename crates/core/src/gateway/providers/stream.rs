//! Decoding a provider's streamed answer into provider-neutral events.
//!
//! A [`StreamDecoder`] takes the raw body bytes as they arrive and yields
//! [`StreamEvent`]s: text deltas, the finish reason, usage, and a final
//! [`StreamEvent::Done`] — or a [`StreamEvent::Error`]. Each stream yields
//! exactly one of `Done` or `Error`, last: nothing follows it.
//!
//! Every protocol has a terminal signal — OpenAI's `data: [DONE]`, Anthropic's
//! `message_stop`, a Gemini candidate with a `finishReason` — and a body that
//! ends without it was cut off: [`StreamDecoder::finish`] then yields
//! [`ProviderFailure::stream_ended_early`], so a broken stream never looks like
//! a short success.

use super::super::openai::{FinishReason, Usage};
use super::error::ProviderFailure;
use super::sse::{SseEvent, SseParser};
use super::{ProviderKind, anthropic, gemini, openai_compat};

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of the answer text.
    Delta(String),
    /// A piece of a function call, in OpenAI's streaming terms: the first
    /// piece of call `index` carries its `id` and `name`, later pieces more
    /// of its `arguments` text.
    ToolCall {
        /// Which call (0, 1, … in the answer).
        index: u32,
        /// The call's id (first piece only).
        id: Option<String>,
        /// The function (first piece only).
        name: Option<String>,
        /// More of the arguments JSON text.
        arguments: String,
    },
    /// Why the model stopped.
    Finish(FinishReason),
    /// Token usage so far; a later `Usage` replaces an earlier one.
    Usage(Usage),
    /// The stream failed; nothing follows.
    Error(ProviderFailure),
    /// The stream completed; nothing follows.
    Done,
}

/// Per-stream facts the protocols spread over several events.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// Prompt tokens reported early (Anthropic's `message_start`).
    pub prompt_tokens: Option<u64>,
    /// The latest usage not yet emitted (Gemini repeats it in every chunk).
    pub usage: Option<Usage>,
    /// Whether a finish reason was emitted.
    pub finished: bool,
    /// Function calls begun so far (Anthropic: the content-block index of each).
    pub tool_blocks: Vec<u64>,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Events are still expected.
    Open,
    /// `Done` or `Error` was emitted: the rest is ignored.
    Closed,
}

/// Turns a streamed chat body into [`StreamEvent`]s. Every stream ends with
/// exactly one [`StreamEvent::Done`] or [`StreamEvent::Error`]: a body that
/// ends without its protocol's terminal event (OpenAI `data: [DONE]`,
/// Anthropic `message_stop`, a Gemini `finishReason`) yields
/// [`ProviderFailure::stream_ended_early`] from [`finish`], so a cut stream
/// never looks like success.
///
/// [`finish`]: StreamDecoder::finish
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    kind: ProviderKind,
    parser: SseParser,
    progress: Progress,
    phase: Phase,
}

impl StreamDecoder {
    /// A decoder for a stream in `kind`'s protocol.
    pub fn new(kind: ProviderKind) -> Self {
        Self {
            kind,
            parser: SseParser::new(),
            progress: Progress::default(),
            phase: Phase::Open,
        }
    }

    /// Consumes the next body bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<StreamEvent> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        let events = self.parser.feed(bytes);
        self.decode(&events)
    }

    /// Ends the body: decodes a trailing event, then — unless the stream
    /// already completed or failed — yields `Done` if the terminal event was
    /// seen (Gemini) or a "stream ended early" error.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        let events = self.parser.finish();
        let mut out = self.decode(&events);
        if self.phase == Phase::Open {
            self.phase = Phase::Closed;
            // Gemini has no end marker: a finish reason followed by the end of the body is success.
            if self.kind == ProviderKind::Gemini && self.progress.finished {
                if let Some(u) = self.progress.usage.take() {
                    out.push(StreamEvent::Usage(u));
                }
                out.push(StreamEvent::Done);
            } else {
                out.push(StreamEvent::Error(ProviderFailure::stream_ended_early()));
            }
        }
        out
    }

    /// Decodes SSE events until the stream closes.
    fn decode(&mut self, events: &[SseEvent]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for ev in events {
            match self.kind {
                ProviderKind::OpenAiCompatible => {
                    openai_compat::decode_event(ev, &mut self.progress, &mut out);
                }
                ProviderKind::Anthropic => {
                    anthropic::decode_event(ev, &mut self.progress, &mut out);
                }
                ProviderKind::Gemini => gemini::decode_event(ev, &mut self.progress, &mut out),
            }
            // The first terminal event closes the stream; anything after it is dropped.
            if let Some(end) = out
                .iter()
                .position(|e| matches!(e, StreamEvent::Done | StreamEvent::Error(_)))
            {
                out.truncate(end + 1);
                self.phase = Phase::Closed;
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::providers::ErrorClass;
    use crate::gateway::providers::test_support::decode_both_ways;
    use crate::gateway::retry::FailureKind;

    const ALL: [ProviderKind; 3] = [
        ProviderKind::OpenAiCompatible,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ];

    fn ended_early() -> StreamEvent {
        StreamEvent::Error(ProviderFailure {
            class: ErrorClass::Server,
            failure: Some(FailureKind::Connect),
            message: "stream ended early".to_owned(),
        })
    }

    #[test]
    fn empty_and_garbage_streams_are_errors() {
        for kind in ALL {
            assert_eq!(decode_both_ways(kind, b""), vec![ended_early()]);
            assert_eq!(
                decode_both_ways(kind, b": ping\n\n"),
                vec![ended_early()],
                "{kind}"
            );
            let out = decode_both_ways(kind, b"data: {not json\n\n");
            assert!(
                matches!(&out[..], [StreamEvent::Error(f)] if f.class == ErrorClass::Malformed && f.failure.is_none()),
                "{kind}: {out:?}"
            );
        }
    }

    #[test]
    fn nothing_after_the_end() {
        for kind in ALL {
            let mut d = StreamDecoder::new(kind);
            assert_eq!(d.finish(), vec![ended_early()]);
            assert_eq!(d.finish(), vec![]);
            assert_eq!(d.feed(b"data: [DONE]\n\n"), vec![]);
        }
    }
}
