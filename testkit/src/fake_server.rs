//! The server's side of XEP-0114, played by the test itself: for what no real server will send
//! on request (hostile stanzas, silence, abrupt ends). Accepts any handshake.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
pub struct FakeComponentServer {
    listener: TcpListener,
    pub addr: String,
}

impl FakeComponentServer {
    pub async fn bind() -> anyhow::Result<FakeComponentServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        Ok(FakeComponentServer { listener, addr })
    }

    /// Accepts one component connection and completes its handshake.
    pub async fn accept(&self, within: Duration) -> anyhow::Result<FakeSession> {
        let (stream, _) =
            tokio::time::timeout(within, self.listener.accept()).await.context("no connection from stanzahook")??;
        let mut session = FakeSession { stream, buf: Vec::new() };
        let header = session.read_until(">", within).await?;
        let domain = attr(&header, "to").unwrap_or_default();
        session
            .send(&format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                 xmlns:stream='http://etherx.jabber.org/streams' id='fake-stream' from='{domain}'>"
            ))
            .await?;
        session.read_until("</handshake>", within).await?;
        session.send("<handshake/>").await?;
        Ok(session)
    }
}

/// One accepted connection.
#[derive(Debug)]
pub struct FakeSession {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl FakeSession {
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        self.stream.write_all(xml.as_bytes()).await?;
        Ok(())
    }

    /// The connection itself, with whatever was read past the last `read_until`.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Reads until `needle` has arrived; returns everything up to and including it.
    pub async fn read_until(&mut self, needle: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(i) = text.find(needle) {
                let end = i + needle.len();
                self.buf.drain(..end);
                return Ok(text[..end].to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => bail!("{needle:?} did not arrive; got so far: {text}"),
                Ok(r) => r?,
            };
            if n == 0 {
                bail!("connection closed before {needle:?}; got: {text}");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!("{name}={quote}");
        if let Some(start) = tag.find(&key) {
            let rest = &tag[start + key.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}
