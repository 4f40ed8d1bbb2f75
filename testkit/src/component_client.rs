//! The component's side of XEP-0114, played by the test: connects to a real server's component
//! port, completes the handshake, sends raw XML and reads stanzas. For finding out what a server
//! does with a component (as a room occupant, say) without stanzahook in between, and for tests
//! that need a second component.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xmpp_client::minidom::Element;

pub const NS_COMPONENT: &str = "jabber:component:accept";
const NS_STREAM: &str = "http://etherx.jabber.org/streams";

/// One component connection, after a successful handshake.
#[derive(Debug)]
pub struct ComponentClient {
    stream: TcpStream,
    /// Bytes read and not yet handed out as stanzas.
    buf: Vec<u8>,
    /// Whether the server has ended the stream (`</stream:stream>` or a closed connection).
    closed: bool,
    /// Whether it did so with `</stream:stream>`.
    closed_cleanly: bool,
    /// The domain the component serves.
    pub domain: String,
    /// The stream id the server sent, which the handshake hashed.
    pub stream_id: String,
}

impl ComponentClient {
    /// Connects to `addr` (a server's component port) as `domain` and completes the handshake
    /// with `secret`; a refusal is an error with the server's stream error.
    pub async fn connect(addr: &str, domain: &str, secret: &str) -> anyhow::Result<ComponentClient> {
        let within = Duration::from_secs(10);
        let stream = tokio::time::timeout(within, TcpStream::connect(addr))
            .await
            .with_context(|| format!("no connection to {addr}"))??;
        stream.set_nodelay(true)?;
        let mut client = ComponentClient {
            stream,
            buf: Vec::new(),
            closed: false,
            closed_cleanly: false,
            domain: domain.to_owned(),
            stream_id: String::new(),
        };
        client
            .send(&format!(
                "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAM}' to='{}'>",
                crate::muc::escape(domain)
            ))
            .await?;
        let header = client.read_header(within).await?;
        client.stream_id = attr(&header, "id").context("the server's stream header has no id")?;
        client.send(&format!("<handshake>{}</handshake>", handshake_digest(&client.stream_id, secret))).await?;
        match client.recv_any(within).await? {
            Some(el) if el.name() == "handshake" => Ok(client),
            Some(el) => bail!("handshake refused: {}", String::from(&el)),
            None => bail!("no answer to the handshake within {} s", within.as_secs()),
        }
    }

    /// The connection itself, with whatever was read past the last element handed out.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Sends `xml` as it is (a stanza must carry its own `from`, see `with_from`).
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        self.stream.write_all(xml.as_bytes()).await?;
        Ok(())
    }

    /// Sends the stanza `xml` with `from` added to its first tag.
    pub async fn send_from(&mut self, from: &str, xml: &str) -> anyhow::Result<()> {
        self.send(&with_from(xml, from)).await
    }

    /// The next element the server sends within `within` (stanzas and stream errors alike), or
    /// `None`; an error once the server has ended the stream.
    pub async fn recv_any(&mut self, within: Duration) -> anyhow::Result<Option<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match scan(&self.buf) {
                Scan::Element(start, end) => {
                    let xml = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
                    self.buf.drain(..end);
                    return parse_stanza(&xml).map(Some);
                }
                Scan::StreamEnd(end) => {
                    self.buf.drain(..end);
                    self.closed = true;
                    self.closed_cleanly = true;
                }
                Scan::Incomplete => {}
            }
            if self.closed {
                bail!("the server ended the component stream");
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(read) => read?,
            };
            if n == 0 {
                self.closed = true;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next element matching `pred` within `within`, with the others that came before it.
    pub async fn expect(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<(Element, Vec<Element>)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) if pred(&el) => return Ok((el, others)),
                Some(el) => others.push(el),
                None => bail!(
                    "no {what} within {} ms; received instead: {:?}",
                    within.as_millis(),
                    others.iter().map(String::from).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything received within `within`.
    pub async fn drain(&mut self, within: Duration) -> anyhow::Result<Vec<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) => all.push(el),
                None => return Ok(all),
            }
        }
    }

    /// Everything received until the server ends the stream, which must happen within `within`.
    pub async fn until_closed(&mut self, within: Duration) -> anyhow::Result<Vec<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await {
                Ok(Some(el)) => all.push(el),
                Ok(None) => bail!(
                    "the stream is still open after {} ms; received: {:?}",
                    within.as_millis(),
                    all.iter().map(String::from).collect::<Vec<_>>()
                ),
                Err(_) if self.closed => return Ok(all),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the server has ended the stream.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the server ended the stream with `</stream:stream>` rather than just closing the
    /// connection.
    pub fn closed_cleanly(&self) -> bool {
        self.closed_cleanly
    }

    /// Reads the server's stream header (after an optional XML declaration); returns its tag.
    async fn read_header(&mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(start) = text.find("<stream:stream")
                && let Some(end) = tag_end(text.as_bytes(), start)
            {
                self.buf.drain(..=end);
                return Ok(text[start..=end].to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => bail!("no stream header within {} s; got: {text}", within.as_secs()),
                Ok(read) => read?,
            };
            if n == 0 {
                bail!("the server closed the connection before its stream header; got: {text}");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// XEP-0114's handshake: the hex SHA-1 of the stream id followed by the secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    Sha1::digest(format!("{stream_id}{secret}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `xml` (one stanza) with `from='…'` added to its first tag.
pub fn with_from(xml: &str, from: &str) -> String {
    let xml = xml.trim_start();
    let name_end = xml.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(xml.len());
    format!("{} from='{}'{}", &xml[..name_end], crate::muc::escape(from), &xml[name_end..])
}

/// A stanza as the component stream carries it (its namespace `jabber:component:accept`,
/// stream errors in the stream namespace), parsed.
fn parse_stanza(xml: &str) -> anyhow::Result<Element> {
    let wrapped = format!("<stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAM}'>{xml}</stream:stream>");
    let root: Element = wrapped.parse().map_err(|e| anyhow!("the server sent XML that does not parse ({e}): {xml}"))?;
    root.children().next().cloned().ok_or_else(|| anyhow!("no element in: {xml}"))
}

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A whole top-level element at `start..end`.
    Element(usize, usize),
    /// `</stream:stream>`, ending at `end`.
    StreamEnd(usize),
    /// Not yet a whole element.
    Incomplete,
}

/// Finds the first whole top-level element in `buf`: skips what lies between elements
/// (whitespace keepalives), then counts start and end tags, minding quoted attribute values,
/// comments, CDATA sections and processing instructions. The server's XML is well-formed; what
/// does not parse is minidom's to report.
fn scan(buf: &[u8]) -> Scan {
    let Some(start) = buf.iter().position(|&b| b == b'<') else { return Scan::Incomplete };
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let rest = &buf[i..];
        let end = if rest.starts_with(b"<!--") {
            find(buf, i + 4, b"-->").map(|at| at + 2)
        } else if rest.starts_with(b"<![CDATA[") {
            find(buf, i + 9, b"]]>").map(|at| at + 2)
        } else if rest.starts_with(b"<?") {
            find(buf, i + 2, b"?>").map(|at| at + 1)
        } else if rest.starts_with(b"</") {
            let Some(end) = find(buf, i + 2, b">") else { return Scan::Incomplete };
            if depth == 0 {
                return Scan::StreamEnd(end + 1);
            }
            depth -= 1;
            if depth == 0 {
                return Scan::Element(start, end + 1);
            }
            Some(end)
        } else if rest.len() < 2 {
            None
        } else {
            let Some(end) = tag_end(buf, i) else { return Scan::Incomplete };
            if buf[end - 1] != b'/' {
                depth += 1;
            } else if depth == 0 {
                return Scan::Element(start, end + 1);
            }
            Some(end)
        };
        let Some(end) = end else { return Scan::Incomplete };
        // Text up to the next tag.
        match buf[end + 1..].iter().position(|&b| b == b'<') {
            Some(at) => i = end + 1 + at,
            None => return Scan::Incomplete,
        }
    }
}

/// The index of the `>` that ends the tag starting at `buf[start]`, outside quoted values.
fn tag_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in buf.iter().enumerate().skip(start + 1) {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The index where `needle` starts in `buf`, at `from` or later.
fn find(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    buf.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|at| from + at)
}

/// The value of attribute `name` in the tag `tag`.
fn attr(tag: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(start) = tag.find(&key) {
            let rest = &tag[start + key.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}
