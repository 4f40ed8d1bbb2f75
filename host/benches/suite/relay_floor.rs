//! The relay floor: the least a component bridging stanzas to a webhook does per stanza, as its
//! own process, so that its CPU is read from `/proc` the same way as stanzahook's.
//!
//! Why it exists: at a fixed moderate rate every stanza is handled alone, and much of what it
//! costs on this machine no change to stanzahook can remove: a TCP read, two sends, the
//! wake-ups between them, and the runtime's and HTTP client's code run once per wake-up with
//! cold caches (measured: ~44 µs per stanza at 2,000/s, ~12 µs at saturation). The relay does that I/O
//! with the same runtime (tokio, one thread), allocator (mimalloc, this benchmark's) and HTTP
//! client (hyper-util, keep-alive, `TCP_NODELAY`) and nothing else: stanzas are found by
//! searching for `</message>`, their attributes by string search, the answer's body taken from
//! its JSON; no XML parser, no checks, no config, no log. Its CPU per stanza at a rate is what
//! the machine charges for the round trip itself, and stanzahook's divided by it is the share
//! stanzahook's own work can still move.
//!
//! It connects with testkit's component client (the XEP-0114 handshake), then reads the stream
//! by itself; it is not a component for a real server (it answers messages and nothing else).

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The first argument that makes the benchmark binary run as the relay instead.
pub const ARG: &str = "relay-floor";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Runs the relay when the process was started as `BIN relay-floor SERVER DOMAIN SECRET WEBHOOK`;
/// `None` when it was started as the benchmark.
pub fn run_if_asked() -> Option<anyhow::Result<()>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arg, server, domain, secret, webhook] = args.as_slice() else { return None };
    (arg == ARG).then(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(relay(server, domain, secret, webhook))
    })
}

/// The arguments that start the relay for `server`, serving `domain`, posting to `webhook`.
pub fn args(server: &str, domain: &str, secret: &str, webhook: &str) -> Vec<String> {
    [ARG, server, domain, secret, webhook].map(str::to_owned).to_vec()
}

async fn relay(server: &str, domain: &str, secret: &str, webhook: &str) -> anyhow::Result<()> {
    let component = testkit::ComponentClient::connect(server, domain, secret).await?;
    let (stream, buf) = component.into_parts();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient =
        Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
    let uri: http::Uri = webhook.parse().context("the webhook's URL")?;

    let (reader, mut writer) = stream.into_split();
    let (replies, mut outgoing) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut batch = String::new();
        while let Some(reply) = outgoing.recv().await {
            // Replies ready together go out in one write, as stanzahook's do.
            batch.clear();
            batch.push_str(&reply);
            while let Ok(more) = outgoing.try_recv() {
                batch.push_str(&more);
            }
            if writer.write_all(batch.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    read_stanzas(reader, buf, |stanza| {
        let (client, uri, replies) = (client.clone(), uri.clone(), replies.clone());
        tokio::spawn(async move {
            // A failed call is not answered: the benchmark counts what comes back.
            if let Ok(reply) = answer(&client, uri, &stanza).await {
                let _ = replies.send(reply);
            }
        });
    })
    .await
}

/// Reads the stream and hands each `<message>…</message>` to `each` as text.
async fn read_stanzas(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut buf: Vec<u8>,
    mut each: impl FnMut(String),
) -> anyhow::Result<()> {
    const END: &[u8] = b"</message>";
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut start = 0;
        while let Some(at) = find(&buf[start..], END) {
            let end = start + at + END.len();
            each(String::from_utf8_lossy(&buf[start..end]).into_owned());
            start = end;
        }
        buf.drain(..start);
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The webhook's answer to `stanza` as a reply stanza: the event stanzahook would post (the same
/// fields), its answer's `body` sent back to the sender.
async fn answer(client: &HttpClient, uri: http::Uri, stanza: &str) -> anyhow::Result<String> {
    let (from, to) = (attr(stanza, "from").unwrap_or_default(), attr(stanza, "to").unwrap_or_default());
    let body = between(stanza, "<body>", "</body>").unwrap_or_default();
    let event = json!({
        "to": to, "from": from, "kind": "message", "type": attr(stanza, "type"), "id": attr(stanza, "id"),
        "body": body, "stanza": stanza,
    });
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(event.to_string())))?;
    let response = client.request(request).await?;
    if !response.status().is_success() {
        bail!("webhook answered {}", response.status());
    }
    let answer: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    let text = answer["body"].as_str().unwrap_or_default();
    Ok(format!("<message from='{to}' to='{from}' type='chat'><body>{}</body></message>", escape(text)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of `name='…'` or `name="…"` in the stanza's opening tag.
fn attr<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    let head = &stanza[..stanza.find('>')?];
    let at = head.find(&format!(" {name}="))? + name.len() + 2;
    let quote = head[at..].chars().next()?;
    let value = &head[at + 1..];
    Some(&value[..value.find(quote)?])
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    Some(&text[start..start + text[start..].find(close)?])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
