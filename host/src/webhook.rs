//! The webhook: the one shared HTTP client, its limits, and the mapping of every HTTP outcome to
//! what the sender gets (README: "The request", "When something goes wrong").

mod transport;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::WebhookSettings;
use crate::stanza::{ErrorType, StanzaError};
use transport::Transport;
pub use transport::TransportError;

/// What a webhook call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A `200` with a JSON body: the answer, to be turned into a reply.
    Answer(Value),
    /// A `2xx` that asks for no reply (README: "When something goes wrong").
    NoReply { status: u16 },
    /// Anything else: the error the sender receives, and what to log; `status` is 0 when no
    /// HTTP answer came.
    Failed { status: u16, error: StanzaError, detail: String },
}

impl Outcome {
    /// The HTTP status behind the outcome, as filters' `after` hooks see it.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Answer(_) => 200,
            Outcome::NoReply { status } | Outcome::Failed { status, .. } => *status,
        }
    }
}

/// One delivery: its outcome and what `--dev` tells about it.
#[derive(Debug)]
pub struct Posted {
    pub outcome: Outcome,
    /// The last answer's `Content-Type`, when an HTTP answer came with one.
    pub content_type: Option<HeaderValue>,
    /// From the first attempt to the last answer, waits between retries included.
    pub took: Duration,
    /// Calls made: 1, or more with retries (README: "Retries").
    pub attempts: u32,
}

/// The webhook client. Clone is cheap: the connection pool is shared.
#[derive(Clone, Debug)]
pub struct Webhook {
    transport: Transport,
    /// For log lines, without its password.
    url: String,
    /// The whole call, from connecting to the answer's last byte (`webhook.timeout`).
    timeout: Duration,
    max_response_bytes: usize,
    signer: crate::signing::Signer,
    retries: crate::retries::RetryPolicy,
    /// One permit per open HTTP connection. HTTP/1.1 takes a connection per request in flight,
    /// and hyper keeps ~30 KiB of buffers and channels per connection (heap profile): with
    /// 10,000 stanzas in flight, unbounded connections alone took ~300 MiB.
    connections: Arc<Semaphore>,
    /// The content types of 200 answers that were not JSON, each warned about once.
    warned: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

/// Content types warned about, at most: a webhook cannot grow the set without bound.
const MAX_WARNED_CONTENT_TYPES: usize = 16;

impl Webhook {
    /// Redirects are not followed (the reference does not either; a 3xx maps to
    /// service-unavailable), and no proxy is used (README: "The request").
    pub fn new(url: url::Url, settings: &WebhookSettings) -> Result<Webhook, TransportError> {
        let transport = Transport::new(&url, settings.timeout, settings.max_connections)?;
        Ok(Webhook {
            transport,
            url: crate::config::without_password(&url).to_string(),
            timeout: settings.timeout,
            max_response_bytes: settings.max_response_bytes,
            signer: settings.signer.clone(),
            retries: settings.retries.clone(),
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            warned: Arc::default(),
        })
    }

    /// POSTs `body`, the JSON text of the event or of what the filters made of it, and
    /// classifies the answer; with retries on, tries a failed call again on their schedule (the
    /// sender's lane waits meanwhile, no other). `identified` is the stanza's XML when it has an
    /// `id` (`payload::Event`): it names the delivery (`webhook-id`, the same for every attempt),
    /// whatever a filter rewrote. Never fails: every outcome is an `Outcome`.
    pub async fn post(&self, identified: Option<&str>, body: String) -> Posted {
        let started = std::time::Instant::now();
        let retrying = self.retries.is_on();
        // Named once: a stanza without an `id` gets a random one, which every attempt must share.
        let id = (retrying || !self.signer.is_empty()).then(|| delivery_id(identified));
        let body = bytes::Bytes::from(body);
        let mut attempt = 1;
        loop {
            let mut answer = Answered::default();
            let call_started = std::time::Instant::now();
            let outcome = self.call(id.as_deref(), retrying.then_some(attempt), body.clone(), &mut answer).await;
            crate::metrics::metrics().webhook_call(outcome.status(), call_started.elapsed());
            let wait = match &outcome {
                Outcome::Failed { status, detail, .. } => self
                    .retries
                    .wait(attempt, *status, answer.retry_after, started.elapsed(), rand::random::<f64>())
                    .inspect(|wait| {
                        tracing::info!("{detail}; attempt {attempt} failed, trying again in {} ms", wait.as_millis());
                    }),
                _ => None,
            };
            let Some(wait) = wait else {
                return Posted {
                    outcome,
                    content_type: answer.content_type,
                    took: started.elapsed(),
                    attempts: attempt,
                };
            };
            tokio::time::sleep(wait).await;
            crate::metrics::metrics().webhook_retry();
            attempt += 1;
        }
    }

    async fn call(&self, id: Option<&str>, attempt: Option<u32>, body: bytes::Bytes, answer: &mut Answered) -> Outcome {
        // Held until the answer is read, so the connection is free again when it is released.
        let Ok(_connection) = self.connections.acquire().await else {
            return failed(0, internal(), "the HTTP client is shut down".into());
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Signed anew for each attempt: the timestamp says when this one was sent.
        let signed = id.filter(|_| !self.signer.is_empty()).map(|id| {
            let timestamp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            (timestamp, self.signer.signature(id, timestamp, &body))
        });
        let request = self.transport.request(body, |headers| {
            // The id is `msg_` and hex digits (`delivery_id`), always a valid header value.
            if let Some(id) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
                headers.insert("webhook-id", id);
            }
            if let Some(attempt) = attempt {
                headers.insert("webhook-attempt", HeaderValue::from(attempt));
            }
            // A signature is `v1,` and base64, also always valid.
            if let Some((timestamp, Ok(signature))) = signed.map(|(t, s)| (t, HeaderValue::try_from(s))) {
                headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
                headers.insert("webhook-signature", signature);
            }
        });
        let mut response = match tokio::time::timeout_at(deadline, self.transport.send(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let what = if e.is_connect() {
                    format!("connecting to {}", self.transport.authority())
                } else {
                    "sending the request".to_owned()
                };
                return failed(0, connection_failure(), format!("webhook connection failed: {what}: {}", causes(&e)));
            }
            Err(_) => {
                return failed(
                    0,
                    connection_failure(),
                    format!("webhook timed out: no answer within {}", humantime::format_duration(self.timeout)),
                );
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        answer.content_type = headers.get(CONTENT_TYPE).cloned();
        answer.retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retries::retry_after(v, std::time::SystemTime::now()));
        if !(200..300).contains(&status) {
            return failed(status, status_error(status), format!("webhook answered HTTP {status}"));
        }
        let is_json = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_media_type);
        if status == 200 && !is_json {
            self.warn_not_json(headers.get(CONTENT_TYPE));
        }
        if status != 200 || !is_json {
            return Outcome::NoReply { status };
        }
        if response.body().size_hint().lower() > self.max_response_bytes as u64 {
            return too_large(self.max_response_bytes);
        }
        let mut body = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, response.body_mut().frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return failed(
                        status,
                        connection_failure(),
                        format!("reading the webhook's answer failed: {}", error_chain(&e)),
                    );
                }
                Err(_) => {
                    return failed(
                        status,
                        connection_failure(),
                        format!(
                            "webhook timed out: the answer did not end within {}",
                            humantime::format_duration(self.timeout)
                        ),
                    );
                }
            };
            let Ok(chunk) = frame.into_data() else { continue }; // trailers: nothing to read
            if body.len() + chunk.len() > self.max_response_bytes {
                return too_large(self.max_response_bytes);
            }
            body.extend_from_slice(&chunk);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Outcome::NoReply { status };
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Outcome::Answer(value),
            Err(e) => failed(
                status,
                StanzaError::new(ErrorType::Cancel, "undefined-condition")
                    .with_text(format!("The bot's answer was not valid JSON: {e}")),
                format!("webhook answered invalid JSON: {e}"),
            ),
        }
    }
}

/// What an HTTP answer said besides its outcome.
#[derive(Default)]
struct Answered {
    content_type: Option<HeaderValue>,
    retry_after: Option<Duration>,
}

/// The `webhook-id` of an event (the README's "The request": unique per delivery, stable across retries).
/// A client may also resend a stanza after its own reconnect; a stanza with an `id` therefore gets an id derived from the stanza as sent to the webhook, so
/// the same stanza delivered twice carries the same `webhook-id` and the webhook can drop the
/// second. Without an `id` nothing tells a resend from a repeat: a random id.
fn delivery_id(identified: Option<&str>) -> String {
    match identified {
        Some(stanza) => format!("msg_{}", &crate::filter::content_hash(stanza.as_bytes())[..32]),
        None => format!("msg_{:032x}", rand::random::<u128>()),
    }
}

fn failed(status: u16, error: StanzaError, detail: String) -> Outcome {
    Outcome::Failed { status, error, detail }
}

/// What the sender gets when no complete HTTP answer came (the reference's wording).
fn connection_failure() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, "remote-server-timeout").with_text("Connection failure")
}

fn internal() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, "internal-server-error")
}

fn too_large(limit: usize) -> Outcome {
    failed(
        200,
        StanzaError::new(ErrorType::Cancel, "undefined-condition")
            .with_text(format!("The bot's answer was larger than {limit} bytes")),
        format!("webhook answer exceeds webhook.max_response_size ({limit} bytes)"),
    )
}

impl Webhook {
    /// A 200 that is not JSON (an HTML error page, a framework's default route) sends nothing
    /// back, which looks like a bot that ignores everything: say why, once per content type.
    fn warn_not_json(&self, content_type: Option<&HeaderValue>) {
        let shown = content_type
            .map_or_else(|| "no content type".to_owned(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut warned = self.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.len() >= MAX_WARNED_CONTENT_TYPES || !warned.insert(shown.clone()) {
            return;
        }
        tracing::warn!(
            url = %self.url,
            "the webhook answered 200 with {shown:?}: only Content-Type application/json produces a reply, so nothing \
             was sent back (said once per content type)"
        );
    }
}

/// `application/json`, with or without parameters such as `; charset=utf-8`.
fn is_json_media_type(value: &str) -> bool {
    value.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The stanza error for a non-2xx status, as the reference maps it (README: "When something goes wrong").
pub fn status_error(status: u16) -> StanzaError {
    use ErrorType::*;
    let (t, condition, text) = match status {
        400 => (Modify, "bad-request", None),
        401 => (Auth, "not-authorized", None),
        402 => (Auth, "forbidden", Some("Payment required")),
        403 => (Auth, "forbidden", None),
        404 => (Cancel, "item-not-found", None),
        410 => (Cancel, "gone", None),
        500 => (Cancel, "internal-server-error", None),
        501 => (Cancel, "feature-not-implemented", None),
        502 => (Cancel, "remote-server-timeout", Some("Bad gateway")),
        503 => (Wait, "remote-server-timeout", Some("Service temporarily unavailable")),
        504 => (Wait, "remote-server-timeout", Some("Gateway timeout")),
        _ => (Cancel, "service-unavailable", None),
    };
    let error = StanzaError::new(t, condition);
    match text {
        Some(text) => error.with_text(text),
        None => error,
    }
}

/// An error and its causes, `: `-separated, each said once (an `io::Error` wrapping an error
/// displays the same text as its source).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    out
}

/// hyper-util's own text says only which step failed ("client error (Connect)"), which the
/// caller words better: the causes say why.
fn causes(e: &hyper_util::client::legacy::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => error_chain(source),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_for_a_stanza_with_an_id() {
        let stanza = |id: &str| format!("<message from='a@b/c' id='{id}' to='x@y'><body>hi</body></message>");
        let id = |id: &str| delivery_id(Some(&stanza(id)));
        assert_eq!(id("1"), id("1"), "the same stanza twice");
        assert_ne!(id("1"), id("2"));
        assert_ne!(delivery_id(None), delivery_id(None), "no id: nothing to tell a resend from a repeat");
        assert!(id("1").starts_with("msg_") && id("1").len() == 36);
    }

    #[test]
    fn json_media_type_accepts_parameters() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("application/jsonx"));
    }
}
