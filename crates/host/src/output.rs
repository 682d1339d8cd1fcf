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
        })
    }
}

struct LineWriter {
    prefix: String,
    target: Target,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let mut out = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
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
        this.pending.extend_from_slice(buf);
        while let Some(newline) = this.pending.iter().position(|b| *b == b'\n') {
            let rest = this.pending.split_off(newline + 1);
            let mut line = std::mem::replace(&mut this.pending, rest);
            line.pop();
            this.emit(&line);
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
