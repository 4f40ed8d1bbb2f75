//! What one call's guest says (its `log` calls, its stdout and stderr), kept within a budget. A
//! guest can hand the host a string as large as its own memory with every `log` call, reusing one
//! buffer: without a byte budget, a hundred such lines held 100 MiB until the call ended, and
//! wrote them to the log.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::bindings::Level;
use super::guest_text::one_line;

/// Lines kept per call; later ones are counted, not kept.
const MAX_LINES: usize = 100;
/// Bytes kept per call, all lines together; a line crossing it is cut.
const MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct GuestLog {
    lines: Vec<(Level, String)>,
    bytes: usize,
    dropped: usize,
}

impl GuestLog {
    /// Keeps `message` whole, cut, or only counted, depending on what the call has used so far;
    /// always as one line (a line break in it would forge a host log line).
    pub fn push(&mut self, level: Level, message: &str) {
        self.push_part(level, message, message.len());
    }

    /// How many bytes of a message the call can still keep: the host copies no more than this
    /// out of the guest's memory.
    pub fn room(&self) -> usize {
        if self.lines.len() >= MAX_LINES { 0 } else { MAX_BYTES - self.bytes }
    }

    /// Like `push`, for a message of `total` bytes of which only `part`, its beginning, was
    /// copied.
    pub fn push_part(&mut self, level: Level, part: &str, total: usize) {
        let room = self.room();
        if room == 0 {
            self.dropped += 1;
            return;
        }
        let kept = part.floor_char_boundary(room.min(part.len()));
        let mut line = one_line(&part[..kept]).into_owned();
        let cut = total.saturating_sub(kept);
        if cut > 0 {
            line.push_str(&format!(" … [{cut} more bytes cut]"));
        }
        // Escapes make a line longer than what it was cut from: the budget counts what is kept.
        self.bytes = if cut > 0 { MAX_BYTES } else { (self.bytes + line.len()).min(MAX_BYTES) };
        self.lines.push((level, line));
    }

    /// The lines kept, and one more saying how many were dropped, if any.
    pub fn into_lines(mut self) -> Vec<(Level, String)> {
        if self.dropped > 0 {
            let note = format!(
                "[{} more lines from this call dropped: a call keeps {MAX_LINES} lines, {} KiB]",
                self.dropped,
                MAX_BYTES / 1024
            );
            self.lines.push((Level::Warn, note));
        }
        self.lines
    }
}

/// A guest's stdout or stderr: keeps the first `capacity` bytes for the log, and accepts and
/// counts the rest. wasmtime-wasi's `MemoryOutputPipe` closes the stream once full instead, and
/// Rust's `println!` panics on a closed stdout: a filter that printed a lot would fail for it.
#[derive(Clone)]
pub struct GuestOutput {
    capacity: usize,
    kept: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cut: usize,
}

impl GuestOutput {
    pub fn new(capacity: usize) -> GuestOutput {
        GuestOutput { capacity, kept: Arc::default() }
    }

    /// What was kept, as text, and how many bytes after it were not; the output starts over (a
    /// kept instance's next call has its own).
    pub fn take(&self) -> (String, usize) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let Captured { bytes, cut } = std::mem::take(&mut *kept);
        (String::from_utf8_lossy(&bytes).into_owned(), cut)
    }

    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.capacity.saturating_sub(kept.bytes.len()).min(bytes.len());
        kept.bytes.extend_from_slice(&bytes[..room]);
        kept.cut += bytes.len() - room;
    }
}

/// How much one write may carry; wasmtime-wasi's own streams allow about this much.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_lines_are_kept_whole() {
        let mut log = GuestLog::default();
        log.push(Level::Info, "one");
        log.push(Level::Error, "two");
        assert_eq!(log.into_lines(), [(Level::Info, "one".to_owned()), (Level::Error, "two".to_owned())]);
    }

    #[test]
    fn a_huge_line_is_cut_on_a_char_boundary_and_later_lines_are_counted() {
        let mut log = GuestLog::default();
        // One byte before the two-byte characters, so the budget ends inside one of them.
        log.push(Level::Info, &format!("a{}", "é".repeat(MAX_BYTES)));
        log.push(Level::Info, "next");
        log.push(Level::Info, "and next");
        let lines = log.into_lines();
        assert_eq!(lines.len(), 2);
        let (_, first) = &lines[0];
        assert!(first.starts_with("aéé"));
        let kept = MAX_BYTES - 1;
        assert!(first.ends_with(&format!("é … [{} more bytes cut]", 2 * MAX_BYTES + 1 - kept)), "{first:.40}");
        assert!(first.len() < MAX_BYTES + 40);
        assert_eq!(lines[1].0, Level::Warn);
        assert!(lines[1].1.starts_with("[2 more lines from this call dropped"), "{}", lines[1].1);
    }

    #[test]
    fn a_line_break_in_a_message_is_escaped_not_kept() {
        let mut log = GuestLog::default();
        log.push(Level::Info, "harmless\n2026-12-02T00:00:00.000000Z ERROR stanzahook::xmpp: forged\r");
        let lines = log.into_lines();
        assert_eq!(
            lines,
            [(Level::Info, "harmless\\n2026-12-02T00:00:00.000000Z ERROR stanzahook::xmpp: forged\\r".to_owned())]
        );
    }

    #[test]
    fn output_beyond_the_capacity_is_accepted_and_counted() {
        let mut out = GuestOutput::new(8);
        for chunk in ["hello ", "world", "!"] {
            out.write(Bytes::from(chunk)).expect("never refused");
            assert_eq!(out.check_write().expect("never closed"), WRITE_PERMIT);
        }
        assert_eq!(out.take(), ("hello wo".to_owned(), 4));
        assert_eq!(out.take(), (String::new(), 0), "taken output starts over");
    }

    #[test]
    fn lines_beyond_the_count_are_dropped() {
        let mut log = GuestLog::default();
        for i in 0..MAX_LINES + 5 {
            log.push(Level::Debug, &format!("line {i}"));
        }
        let lines = log.into_lines();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(lines[MAX_LINES - 1].1, format!("line {}", MAX_LINES - 1));
        assert!(lines[MAX_LINES].1.starts_with("[5 more lines"), "{}", lines[MAX_LINES].1);
    }
}
