//! Guest stdout/stderr, one line at a time, prefixed with the component id.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Which host stream a guest stream goes to.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The host's stdout.
    Stdout,
    /// The host's stderr.
    Stderr,
}

/// A guest output stream that writes `[component] line` to the host's stream.
#[derive(Debug, Clone)]
pub struct PrefixedOutput {
    prefix: String,
    target: Target,
}

impl PrefixedOutput {
    /// Output of `component` going to `target`.
    pub fn new(component: &str, target: Target) -> Self {
        Self {
            prefix: format!("[{component}] "),
            target,
        }
    }
}

impl IsTerminal for PrefixedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PrefixedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            prefix: self.prefix.clone(),
            target: self.target,
            pending: Vec::new(),
            #[cfg(test)]
            captured: None,
        })
    }
}

/// The longest line kept whole; longer output without a newline is split
/// into lines of this length (a guest may write for as long as it runs).
const MAX_LINE_BYTES: usize = 64 * 1024;

struct LineWriter {
    prefix: String,
    target: Target,
    pending: Vec<u8>,
    /// Tests: the lines, instead of the host's stream.
    #[cfg(test)]
    captured: Option<std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let mut out = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
        #[cfg(test)]
        if let Some(lines) = &self.captured {
            lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(out);
            return;
        }
        // Whole lines in one write so lines from concurrent instances never interleave.
        let result = match self.target {
            Target::Stdout => std::io::stdout().lock().write_all(&out),
            Target::Stderr => std::io::stderr().lock().write_all(&out),
        };
        // Host logging must not fail the guest; a closed terminal just drops output.
        drop(result);
    }

    fn flush_partial(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        for piece in buf.split_inclusive(|b| *b == b'\n') {
            let (text, ends_line) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            // A guest writing without newlines must not grow the host's memory
            // without bound: a full line buffer goes out as a line of its own
            // when more follows, so `pending` never holds more than the limit.
            let mut text = text;
            loop {
                let room = MAX_LINE_BYTES - this.pending.len();
                let (now, rest) = text.split_at(room.min(text.len()));
                this.pending.extend_from_slice(now);
                text = rest;
                if text.is_empty() {
                    break;
                }
                let line = std::mem::take(&mut this.pending);
                this.emit(&line);
            }
            if ends_line {
                let line = std::mem::take(&mut this.pending);
                this.emit(&line);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn writer() -> (LineWriter, Arc<Mutex<Vec<Vec<u8>>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let w = LineWriter {
            prefix: "[c] ".to_owned(),
            target: Target::Stdout,
            pending: Vec::new(),
            captured: Some(lines.clone()),
        };
        (w, lines)
    }

    fn write(w: &mut LineWriter, bytes: &[u8]) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let n = Pin::new(w).poll_write(&mut cx, bytes);
        assert!(matches!(n, Poll::Ready(Ok(len)) if len == bytes.len()));
    }

    #[test]
    fn lines_are_prefixed_and_split_across_writes() {
        let (mut w, lines) = writer();
        write(&mut w, b"one\ntw");
        write(&mut w, b"o\nthree");
        drop(w);
        assert_eq!(
            *lines.lock().unwrap(),
            [
                b"[c] one\n".to_vec(),
                b"[c] two\n".to_vec(),
                b"[c] three\n".to_vec()
            ]
        );
    }

    #[test]
    fn output_without_newlines_is_held_to_the_line_limit() {
        // A guest writing 8 KiB chunks with no newline for as long as it runs
        // once grew this buffer without bound.
        let (mut w, lines) = writer();
        for _ in 0..100 {
            write(&mut w, &[b'x'; 8 * 1024]);
            assert!(w.pending.len() <= MAX_LINE_BYTES);
        }
        let emitted = lines.lock().unwrap().clone();
        assert_eq!(emitted.len(), 100 * 8 * 1024 / MAX_LINE_BYTES);
        assert!(
            emitted
                .iter()
                .all(|l| l.len() == "[c] ".len() + MAX_LINE_BYTES + 1)
        );
    }

    #[test]
    fn a_long_line_in_one_write_is_split_too() {
        let (mut w, lines) = writer();
        let mut line = vec![b'y'; 200 * 1024];
        line.push(b'\n');
        write(&mut w, &line);
        let lengths: Vec<usize> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.len() - "[c] ".len() - 1)
            .collect();
        assert_eq!(
            lengths,
            [
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
                200 * 1024 - 3 * MAX_LINE_BYTES
            ]
        );
        assert!(w.pending.is_empty());
    }
}
