//! The server's side of XEP-0114, played by the test itself: for what no real server will send
//! on request (hostile stanzas, silence, abrupt ends). Accepts any handshake. `throughput` drives
//! the binary through it at a fixed window, for the benchmarks.

use std::path::Path;
use std::time::{Duration, Instant};

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
/// Replies per second through the stanzahook binary `bin` with `extra_toml` in its config, and the
/// CPU time it spent per stanza: the fake server pumps `stanzas` chat messages to `echo@` with at
/// most `window` outstanding, through stanzahook to a local echo webhook, and counts the replies.
/// For the benchmarks.
pub async fn throughput(
    bin: &Path,
    extra_toml: &str,
    stanzas: usize,
    window: usize,
) -> anyhow::Result<(f64, Duration)> {
    const DOMAIN: &str = "bot.localhost";
    let server = FakeComponentServer::bind().await?;
    let webhook = crate::TestWebhook::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("stanzahook.toml");
    std::fs::write(&config, format!("[webhook]\nmax_in_flight = {window}\n{extra_toml}"))?;
    let args = crate::host::run_args(DOMAIN, &server.addr, "bench", &webhook.url, Some(&config));
    // As in production: the test guest's per-call `info` lines would measure the log, not the filters.
    let host = crate::HostProcess::start_logging(bin, &args, "warn")?;
    let session = server.accept(Duration::from_secs(30)).await.context("stanzahook did not connect")?;
    let (stream, _) = session.into_parts();
    let (mut reader, mut writer) = stream.into_split();
    let message = |i: usize| {
        format!(
            "<message from='user{}@localhost/r' to='echo@{DOMAIN}' type='chat' id='m{i}'><body>message number {i}</body></message>",
            i % 100
        )
    };
    let credits = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
    let writer_credits = credits.clone();
    let started = Instant::now();
    let cpu_before = host.cpu_time()?;
    // The task hands the write half back: dropping it would close the stream under stanzahook.
    let writer_task = tokio::spawn(async move {
        for i in 0..stanzas {
            let Ok(permit) = writer_credits.acquire().await else { break };
            permit.forget();
            if writer.write_all(message(i).as_bytes()).await.is_err() {
                break;
            }
        }
        writer
    });
    let needle = b"</message>";
    let mut replies = 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while replies < stanzas {
        let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut chunk))
            .await
            .context("replies stalled")??;
        if n == 0 {
            bail!("stanzahook closed the stream after {replies} replies; its log:\n{}", host.log());
        }
        carry.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(i) = carry[start..].windows(needle.len()).position(|w| w == needle) {
            start += i + needle.len();
            replies += 1;
            credits.add_permits(1);
        }
        carry.drain(..start);
    }
    let elapsed = started.elapsed();
    let cpu = host.cpu_time()?.saturating_sub(cpu_before);
    let _writer = writer_task.await?;
    Ok((stanzas as f64 / elapsed.as_secs_f64(), cpu / u32::try_from(stanzas)?))
}
