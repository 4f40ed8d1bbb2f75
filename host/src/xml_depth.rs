//! A guard against XML nested deeper than the tree parsers can take. minidom builds, writes and
//! drops elements recursively, so a stanza nested some thousand levels deep (a few dozen KB, well
//! within a server's stanza size limit) overflows a thread's stack and aborts the process. Bytes
//! are scanned here, before any tree is built: on the stream from the server and on a webhook's
//! `stanza` string.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Deepest nesting accepted inside one stanza (the stanza element is level 1). Real stanzas stay
/// below 20 (a forwarded carbon with XHTML formatting); the bound keeps parser recursion far
/// from the smallest thread stack.
pub const MAX_STANZA_DEPTH: u32 = 128;

/// The nesting was deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("XML nested deeper than {max} levels")]
pub struct TooDeep {
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// Just after `<`.
    Open,
    /// Inside a start tag; `quote` is the open attribute quote, `slash` whether the last byte
    /// outside quotes was `/` (so `>` closes an empty element).
    StartTag {
        quote: u8,
        slash: bool,
    },
    EndTag,
    /// After `<!`: a comment, a CDATA section or a declaration follows.
    Bang,
    Comment {
        dashes: u8,
    },
    CData {
        brackets: u8,
    },
    Declaration {
        quote: u8,
    },
    ProcessingInstruction {
        question: bool,
    },
}

/// An incremental scanner that tracks element depth across any split of the input.
/// `<` cannot appear unescaped in attribute values or text, so tags are found exactly.
#[derive(Debug, Clone)]
pub struct DepthScanner {
    depth: u32,
    max: u32,
    state: State,
}

impl DepthScanner {
    /// A scanner that fails once the depth exceeds `max`.
    pub fn new(max: u32) -> Self {
        DepthScanner { depth: 0, max, state: State::Text }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), TooDeep> {
        for &b in bytes {
            self.state = match self.state {
                State::Text if b == b'<' => State::Open,
                State::Text => State::Text,
                State::Open => match b {
                    b'/' => State::EndTag,
                    b'!' => State::Bang,
                    b'?' => State::ProcessingInstruction { question: false },
                    _ => {
                        self.depth += 1;
                        if self.depth > self.max {
                            return Err(TooDeep { max: self.max });
                        }
                        State::StartTag { quote: 0, slash: false }
                    }
                },
                State::StartTag { quote, slash } if quote != 0 => {
                    State::StartTag { quote: if b == quote { 0 } else { quote }, slash }
                }
                State::StartTag { slash, .. } => match b {
                    b'"' | b'\'' => State::StartTag { quote: b, slash: false },
                    b'>' => {
                        if slash {
                            self.depth = self.depth.saturating_sub(1);
                        }
                        State::Text
                    }
                    b'/' => State::StartTag { quote: 0, slash: true },
                    _ => State::StartTag { quote: 0, slash: false },
                },
                State::EndTag if b == b'>' => {
                    self.depth = self.depth.saturating_sub(1);
                    State::Text
                }
                State::EndTag => State::EndTag,
                State::Bang => match b {
                    b'-' => State::Comment { dashes: 0 },
                    b'[' => State::CData { brackets: 0 },
                    _ => State::Declaration { quote: 0 },
                },
                State::Comment { dashes } => match b {
                    b'-' => State::Comment { dashes: (dashes + 1).min(2) },
                    b'>' if dashes >= 2 => State::Text,
                    _ => State::Comment { dashes: 0 },
                },
                State::CData { brackets } => match b {
                    b']' => State::CData { brackets: (brackets + 1).min(2) },
                    b'>' if brackets >= 2 => State::Text,
                    _ => State::CData { brackets: 0 },
                },
                State::Declaration { quote } if quote != 0 => {
                    State::Declaration { quote: if b == quote { 0 } else { quote } }
                }
                State::Declaration { .. } => match b {
                    b'"' | b'\'' => State::Declaration { quote: b },
                    b'>' => State::Text,
                    _ => State::Declaration { quote: 0 },
                },
                State::ProcessingInstruction { question } => match b {
                    b'>' if question => State::Text,
                    b'?' => State::ProcessingInstruction { question: true },
                    _ => State::ProcessingInstruction { question: false },
                },
            };
        }
        Ok(())
    }
}

/// Checks a complete XML text (a webhook's `stanza`).
pub fn check(text: &str, max: u32) -> Result<(), TooDeep> {
    DepthScanner::new(max).feed(text.as_bytes())
}

/// Reads through a `DepthScanner`: a read that would deliver XML nested deeper than allowed
/// fails instead, before any parser sees it.
#[derive(Debug)]
pub struct DepthGuarded<Io> {
    inner: Io,
    scanner: DepthScanner,
}

impl<Io> DepthGuarded<Io> {
    /// Guards a stream whose root element (`<stream:stream>`) holds the stanzas.
    pub fn stream(inner: Io) -> Self {
        DepthGuarded { inner, scanner: DepthScanner::new(MAX_STANZA_DEPTH + 1) }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for DepthGuarded<Io> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                match this.scanner.feed(fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server sent a stanza with {e}"),
                    ))),
                }
            }
            other => other,
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for DepthGuarded<Io> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(xml: &str, max: u32) -> bool {
        check(xml, max).is_ok()
    }

    #[test]
    fn counts_nesting_not_siblings() {
        assert!(depth_ok("<a><b/><b/><b></b></a>", 2));
        assert!(!depth_ok("<a><b><c/></b></a>", 2));
        assert!(depth_ok(&"<a></a>".repeat(1000), 1));
        let deep = format!("{}{}", "<a>".repeat(129), "</a>".repeat(129));
        assert_eq!(check(&deep, MAX_STANZA_DEPTH), Err(TooDeep { max: 128 }));
    }

    #[test]
    fn attribute_values_cannot_fake_tag_ends() {
        // `>` and `/>` are legal inside attribute values; they must not close the tag.
        let sneaky = format!("{}{}", "<a x='/>' y=\"a>b\">".repeat(5), "</a>".repeat(5));
        assert!(!depth_ok(&sneaky, 4));
        assert!(depth_ok(&sneaky, 5));
    }

    #[test]
    fn comments_cdata_and_instructions_are_not_elements() {
        assert!(depth_ok("<?xml version='1.0'?><a><!-- <b><c><d> --><![CDATA[<b><c><d>]]></a>", 1));
        assert!(depth_ok("<a><!----><!-- - -- --></a>", 1));
    }

    #[test]
    fn any_split_gives_the_same_answer() {
        let xml = "<s><a x='>'><b><!-- <c> --><c/></b></a></s>";
        for split in 0..xml.len() {
            let mut scanner = DepthScanner::new(4);
            let (head, tail) = xml.as_bytes().split_at(split);
            assert!(scanner.feed(head).and_then(|()| scanner.feed(tail)).is_ok(), "split at {split}");
            let mut scanner = DepthScanner::new(3);
            assert!(scanner.feed(head).and_then(|()| scanner.feed(tail)).is_err(), "split at {split}");
        }
    }
}
