//! An incremental `text/event-stream` parser (the WHATWG server-sent events
//! format).
//!
//! Bytes go in as they arrive, split anywhere — inside a line, between a `\r`
//! and its `\n`, even inside a UTF-8 sequence — and complete events come out.
//! Lines end with `\n`, `\r\n` or `\r`; `data:` lines accumulate (joined with
//! `\n`); `event:` names the event; lines starting with `:` are comments; an
//! empty line dispatches the event; `id:` and `retry:` are ignored (DOL never
//! reconnects). A leading byte-order mark is skipped. Unlike a browser,
//! [`SseParser::finish`] also dispatches a last event that was not followed by
//! an empty line, because some servers end the body right after the final
//! `data:` line.

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name; `None` for the default (`message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental `text/event-stream` parser: bytes go in as they arrive,
/// split anywhere (inside a line, between `\r` and `\n`, inside a UTF-8
/// sequence), complete [`SseEvent`]s come out. Lines may end with `\n`,
/// `\r\n` or `\r`; comments and `id:` / `retry:` are ignored; [`finish`]
/// also dispatches a last event that lacks its closing blank line.
///
/// [`finish`]: SseParser::finish
#[derive(Debug, Clone, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The last byte seen was a `\r`: a following `\n` belongs to the same line end.
    after_cr: bool,
    /// Whether the first line is still to be completed (it may start with a BOM).
    seen_first_line: bool,
    /// The event's `data:` lines so far, each followed by `\n`.
    data: String,
    /// The event's `event:` name so far.
    event: Option<String>,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes the next bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    // The `\n` of a `\r\n` split across feeds: the line already ended.
                    rest = tail;
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    let (head, tail) = rest.split_at(i);
                    self.line.extend_from_slice(head);
                    self.after_cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or_default();
                    self.end_line(&mut out);
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        out
    }

    /// Ends the stream: completes an unterminated last line and dispatches a
    /// pending event. The parser is then ready for a new stream.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.dispatch(&mut out);
        *self = Self::default();
        out
    }

    /// Processes the buffered line.
    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut bytes = std::mem::take(&mut self.line);
        if !self.seen_first_line {
            self.seen_first_line = true;
            if bytes.starts_with(BOM) {
                bytes.drain(..BOM.len());
            }
        }
        // Whole lines are decoded, so a UTF-8 sequence split across feeds is intact here.
        let line = String::from_utf8_lossy(&bytes);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = (!value.is_empty()).then(|| value.to_owned()),
            _ => {}
        }
    }

    /// Emits the pending event, if it has data, and resets the event buffers.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.data.is_empty() {
            // Per the spec, an event without data lines is dropped.
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = p.feed(input);
        out.extend(p.finish());
        out
    }

    fn parse_bytewise(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in input {
            out.extend(p.feed(std::slice::from_ref(b)));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn basic_events_and_names() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\ndata: two\n\n";
        assert_eq!(
            parse_all(input),
            vec![ev(Some("message_start"), "{\"a\":1}"), ev(None, "two")]
        );
    }

    #[test]
    fn all_line_endings() {
        let expected = vec![ev(Some("x"), "a\nb"), ev(None, "c")];
        for input in [
            &b"event: x\ndata: a\ndata: b\n\ndata: c\n\n"[..],
            b"event: x\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            b"event: x\rdata: a\rdata: b\r\rdata: c\r\r",
            b"event: x\r\ndata: a\rdata: b\n\r\ndata: c\r\n\n",
        ] {
            assert_eq!(parse_all(input), expected, "{input:?}");
            assert_eq!(parse_bytewise(input), expected, "{input:?}");
        }
    }

    #[test]
    fn comments_fields_and_spaces() {
        let input = b": keep-alive\n:another\nid: 7\nretry: 10\nunknown: z\ndata:no-space\ndata:  two spaces\ndata\n\n";
        assert_eq!(parse_all(input), vec![ev(None, "no-space\n two spaces\n")]);
        // An event without data is dropped, and its name does not leak into the next one.
        assert_eq!(
            parse_all(b"event: ping\n\ndata: x\n\n"),
            vec![ev(None, "x")]
        );
        // `data:` with an empty value still dispatches an (empty) event.
        assert_eq!(parse_all(b"data:\n\n"), vec![ev(None, "")]);
        assert_eq!(parse_all(b"\n\n\n"), vec![]);
    }

    #[test]
    fn chunk_boundaries_anywhere() {
        let input = "data: héllo 🌍\r\n\r\nevent: e\ndata: [DONE]\n\n".as_bytes();
        let expected = vec![ev(None, "héllo 🌍"), ev(Some("e"), "[DONE]")];
        assert_eq!(parse_all(input), expected);
        assert_eq!(parse_bytewise(input), expected);
        for split in 0..=input.len() {
            let mut p = SseParser::new();
            let mut out = p.feed(&input[..split]);
            out.extend(p.feed(&input[split..]));
            out.extend(p.finish());
            assert_eq!(out, expected, "split at {split}");
        }
    }

    #[test]
    fn finish_dispatches_a_trailing_event() {
        assert_eq!(parse_all(b"data: [DONE]"), vec![ev(None, "[DONE]")]);
        assert_eq!(parse_all(b"data: [DONE]\n"), vec![ev(None, "[DONE]")]);
        let mut p = SseParser::new();
        assert_eq!(p.feed(b"data: a"), vec![]);
        assert_eq!(p.finish(), vec![ev(None, "a")]);
        // Reset for a new stream.
        assert_eq!(p.finish(), vec![]);
        assert_eq!(p.feed(b"data: b\n\n"), vec![ev(None, "b")]);
    }

    #[test]
    fn bom_and_invalid_utf8() {
        let mut input = "\u{feff}".as_bytes().to_vec();
        input.extend_from_slice(b"data: x\n\n");
        assert_eq!(parse_all(&input), vec![ev(None, "x")]);
        assert_eq!(parse_bytewise(&input), vec![ev(None, "x")]);
        // Only at the very start.
        let mut later = b"data: x\n\n".to_vec();
        later.extend_from_slice("\u{feff}data: y\n\n".as_bytes());
        assert_eq!(parse_all(&later), vec![ev(None, "x")]);
        assert_eq!(
            parse_all(b"data: \xff\xfe\n\n"),
            vec![ev(None, "\u{fffd}\u{fffd}")]
        );
    }
}
