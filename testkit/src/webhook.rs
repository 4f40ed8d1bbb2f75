//! A scriptable webhook (a real HTTP server, axum on loopback). What it answers depends on the
//! local part of the stanza's `to`, so one server covers every outcome of the README's "The answer":
//!
//! | `to` local part | answer |
//! | --- | --- |
//! | `echo` (and anything not below) | `{"body": <the body>}`, or 204 without a body |
//! | `json` | 200 `application/json` with the message body as the answer text, verbatim |
//! | `sNNN`, e.g. `s404` | HTTP NNN, empty body |
//! | `plain` | 200 `text/plain` |
//! | `text` | `{"body": "text answer"}`, whatever the stanza |
//! | `charset` | 200 `application/json; charset=utf-8` `{"body": "charset ok"}` |
//! | `slow` | sleeps 3 s, then echoes |
//! | `jitter` | echoes after 0–40 ms, a different delay for each numbered body |
//! | `redirect` | 302 to `/` |
//! | `huge` | 200 JSON of 2 MiB, with its `Content-Length` |
//! | `tenmeg` | 200 JSON of 10 MB in chunks, without a `Content-Length` |
//! | `garbage` | 200 `application/json` of 64 KiB of binary junk |
//! | `bigreply` | 200 JSON whose reply stanza would be 300 KiB |
//! | `slack` | a chat webhook of another shape: `{"text": "you said " + <the event's text>}` |
//! | `flaky` | 503 to attempts 1 and 2 (the `webhook-attempt` header), then echoes |
//! | `busy` | 429 with `Retry-After: 2` to attempt 1, then echoes |
//! | `iq` | `{"kind": "iq", "stanza": ...}` style answers: `{"stanza": "<iq type='result'><query xmlns='urn:example:answer'/></iq>"}` |
//!
//! While `set_unavailable(true)`, every request is answered 503, whatever its `to`: a bot that is
//! down for a while and comes back. Every request is recorded with its headers and JSON body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request the webhook received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub event: Value,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    unavailable: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
pub struct TestWebhook {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl TestWebhook {
    /// Starts the webhook on a free loopback port, in the current tokio runtime.
    pub async fn start() -> anyhow::Result<TestWebhook> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        Ok(TestWebhook::serve(listener, format!("http://{addr}/")))
    }

    /// The same webhook over HTTPS, at `https://localhost:PORT/`, with a new self-signed
    /// certificate for `localhost` and `127.0.0.1`; its PEM is returned, for a client to trust
    /// (`SSL_CERT_FILE`) or not. A client that refuses the certificate just fails its handshake.
    pub async fn start_tls() -> anyhow::Result<(TestWebhook, String)> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = tcp.local_addr()?.port();
        let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) };
        Ok((TestWebhook::serve(listener, format!("https://localhost:{port}/")), certified.cert.pem()))
    }

    fn serve<L>(listener: L, url: String) -> TestWebhook
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(hook).with_state(shared.clone());
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stopped.notified().await }).await;
        });
        TestWebhook { url, shared, server, stop }
    }

    /// Goes down as a crashed bot would look: requests under way are answered, then every
    /// connection, idle keep-alive ones included, is closed and new ones are refused.
    pub async fn stop(&mut self) {
        self.stop.notify_one();
        let _ = (&mut self.server).await;
    }

    /// Answers every request 503 from now on (`true`), or as the table says again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, std::sync::atomic::Ordering::SeqCst);
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests have arrived; returns all so far.
    pub async fn wait_for(&self, n: usize, within: Duration) -> anyhow::Result<Vec<Recorded>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return Ok(requests);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the webhook saw {} requests within {} ms, not {n}", requests.len(), within.as_millis());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// TLS over a loopback listener, the handshake done before axum sees the connection.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // A failed handshake is a client that refused the certificate: wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
    };
    let attempt: u32 =
        headers.get("webhook-attempt").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(1);
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(Recorded { headers, event: event.clone() });
    }
    if shared.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // A filter may have reshaped the event; `channel` then holds the address (examples/filters/reshape).
    let to = event["to"].as_str().or(event["channel"].as_str()).unwrap_or("");
    let node = to.split_once('@').map(|(n, _)| n).unwrap_or("");
    let body = event["body"].as_str().unwrap_or("").to_owned();
    match node {
        "json" => json_text("application/json", body),
        "plain" => json_text("text/plain", "hello".into()),
        "text" => json_text("application/json", json!({"body": "text answer"}).to_string()),
        "charset" => json_text("application/json; charset=utf-8", json!({"body": "charset ok"}).to_string()),
        "redirect" => (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response(),
        "huge" => json_text("application/json", json!({"body": "x".repeat(2 * 1024 * 1024)}).to_string()),
        "slack" => json_text(
            "application/json",
            json!({"text": format!("you said {}", event["text"].as_str().unwrap_or(""))}).to_string(),
        ),
        "tenmeg" => ten_megabytes(),
        "garbage" => {
            let junk: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], junk)
                .into_response()
        }
        "bigreply" => json_text("application/json", json!({"body": "y".repeat(300 * 1024)}).to_string()),
        "iq" => json_text(
            "application/json",
            json!({"stanza": "<iq type='result'><query xmlns='urn:example:answer'/></iq>"}).to_string(),
        ),
        "jitter" => {
            let n: u64 = body.trim().parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(n * 37 % 41)).await;
            echo(&body)
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            echo(&body)
        }
        "flaky" if attempt < 3 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "busy" if attempt < 2 => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "2")]).into_response(),
        n if n.len() == 4 && n.starts_with('s') => {
            match n[1..].parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
                Some(status) => status.into_response(),
                None => echo(&body),
            }
        }
        _ => echo(&body),
    }
}

/// A 10 MB JSON answer, sent in chunks without a `Content-Length`, so the host can only stop it by
/// counting what it reads.
fn ten_megabytes() -> Response {
    let start = std::iter::once(Bytes::from_static(b"{\"body\": \""));
    let middle = std::iter::repeat_n(Bytes::from(vec![b'x'; 64 * 1024]), 160);
    let end = std::iter::once(Bytes::from_static(b"\"}"));
    let chunks = futures::stream::iter(start.chain(middle).chain(end).map(Ok::<_, std::convert::Infallible>));
    let body = axum::body::Body::from_stream(chunks);
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn echo(body: &str) -> Response {
    if body.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_text("application/json", json!({"body": body}).to_string())
    }
}

fn json_text(content_type: &'static str, text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], text).into_response()
}
