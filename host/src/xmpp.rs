//! The XEP-0114 component connection: the only user of tokio-xmpp's stream layer. Connects,
//! performs the handshake, keeps the stream alive, reconnects with backoff, and owns the queue of
//! outgoing stanzas that survives reconnects.
//!
//! It works on tokio-xmpp's XML stream of minidom `Element`s rather than its high-level
//! `Component`, because the webhook must see each stanza as received (no typed re-serialisation,
//! nothing dropped by a strict parser) and the operator must see why a stream ended.

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};

use crate::stanza::{self, Kind, NS_COMPONENT, NS_PING};
use crate::xml_depth::DepthGuarded;

const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const KEEPALIVE_ID_PREFIX: &str = "stanzahook-keepalive-";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// A stanzahook refused with `conflict` (Prosody: another connection serves the domain) is a hot
/// standby: it asks again this often (and no less often, whatever the failures before), so that
/// it serves within about half a second of the other's stream closing (README: "Running more
/// than one").
const STANDBY_RETRY: Duration = Duration::from_millis(400);

type Stream = XmlStream<BufStream<DepthGuarded<TcpStream>>, Element>;

/// What the connection needs to know.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// `host:port` of the server's component listener.
    pub server: String,
    /// The component's domain.
    pub domain: String,
    pub secret: String,
    /// Silence after which a keepalive ping is sent.
    pub keepalive: Duration,
    /// Silence after the ping after which the server is declared dead.
    pub dead_after: Duration,
    /// Replies held while disconnected.
    pub queue_capacity: usize,
}

/// The sending side of the component: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Element>,
}

impl Outbox {
    /// An outbox whose stanzas go to the returned receiver instead of a connection: for tests
    /// of the modules that send (the rooms), and benchmarks.
    pub fn detached(capacity: usize) -> (Outbox, mpsc::Receiver<Element>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Outbox { tx }, rx)
    }

    /// Queues a stanza for sending. The queue is held across reconnects; when it is full (the
    /// server has been away for long) the stanza is logged with its recipient and dropped.
    pub fn send(&self, el: Element) {
        if let Err((why, el)) = self.try_send(el) {
            tracing::error!(
                to = el.attr("to").unwrap_or(""),
                kind = el.name(),
                id = el.attr("id").unwrap_or(""),
                "stanza not sent: {why}"
            );
        }
    }

    /// Queues a stanza, or hands it back with the reason it cannot be queued.
    pub fn try_send(&self, el: Element) -> Result<(), (&'static str, Box<Element>)> {
        let kind = el.name().to_owned();
        match self.tx.try_send(el) {
            Ok(()) => {
                crate::metrics::metrics().stanza_sent(&kind);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(el)) => Err(("outgoing queue is full", Box::new(el))),
            Err(mpsc::error::TrySendError::Closed(el)) => Err(("connection is shut down", Box::new(el))),
        }
    }
}

/// Starts the connection task. Incoming stanzas arrive on the returned receiver (bounded: a slow
/// consumer slows reading from the server, it never grows memory). The task ends once
/// `stop_reading` is cancelled and every `Outbox` clone is dropped and its queue sent.
pub fn spawn(
    settings: ConnectionSettings,
    stop_reading: CancellationToken,
) -> (Outbox, mpsc::Receiver<Element>, tokio::task::JoinHandle<()>) {
    let (out_tx, out_rx) = mpsc::channel(settings.queue_capacity.max(1));
    let (in_tx, in_rx) = mpsc::channel(64);
    let task = tokio::spawn(run(settings, stop_reading, out_rx, in_tx));
    (Outbox { tx: out_tx }, in_rx, task)
}

async fn run(
    settings: ConnectionSettings,
    stop_reading: CancellationToken,
    mut outgoing: mpsc::Receiver<Element>,
    incoming: mpsc::Sender<Element>,
) {
    let mut failures: u32 = 0;
    // The last failure logged in full: a server that keeps refusing gets one explanation, then
    // one short line per attempt, not the same paragraph every time.
    let mut explained: Option<String> = None;
    let mut sessions: u64 = 0;
    let mut unsent: Vec<Element> = Vec::new();
    // Since when this process has waited as a standby, refused with `conflict`.
    let mut standby: Option<std::time::Instant> = None;
    loop {
        if stop_reading.is_cancelled() && outgoing.is_closed() && outgoing.is_empty() && unsent.is_empty() {
            return;
        }
        if failures == 0 && standby.is_none() {
            tracing::info!(server = %settings.server, domain = %settings.domain, "connecting");
        }
        match connect(&settings).await {
            Ok(stream) => {
                if let Some(since) = standby.take() {
                    tracing::info!(
                        "standby over: the other connection for {} is gone, taking over after {:.1} s",
                        settings.domain,
                        since.elapsed().as_secs_f64()
                    );
                } else if failures > 0 {
                    tracing::info!("connected after {} attempts", failures + 1);
                }
                failures = 0;
                explained = None;
                crate::health::set_up(sessions > 0);
                sessions += 1;
                tracing::info!(server = %settings.server, domain = %settings.domain, "connected, serving {}", settings.domain);
                let end = serve(stream, &settings, &stop_reading, &mut outgoing, &incoming, &mut unsent).await;
                match end {
                    SessionEnd::Finished => {
                        crate::health::set_down("stream closed at shutdown");
                        tracing::info!("stream closed");
                        return;
                    }
                    SessionEnd::Lost(why) => {
                        crate::health::set_down(&format!("connection lost: {why}"));
                        let delay = backoff(0);
                        tracing::warn!("connection lost: {why}; reconnecting in {} ms", delay.as_millis());
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            Err(e) if e.is_conflict() => {
                if stop_reading.is_cancelled() {
                    // Nothing was ever served: there is nothing to drain.
                    crate::health::set_down("stopped while on standby");
                    return;
                }
                let why = format!("standby: {e}");
                if standby.is_none() {
                    tracing::warn!(
                        "{why}; taking over as soon as it stops (asking every {} ms)",
                        STANDBY_RETRY.as_millis()
                    );
                    standby = Some(std::time::Instant::now());
                }
                crate::health::set_down(&why);
                tokio::select! {
                    _ = tokio::time::sleep(STANDBY_RETRY) => {}
                    _ = stop_reading.cancelled() => {}
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                let why = e.to_string();
                crate::health::set_down(&why);
                if explained.as_deref() == Some(why.as_str()) {
                    tracing::warn!("attempt {failures} failed the same way; next attempt in {} ms", delay.as_millis());
                } else {
                    tracing::error!("{why}; next attempt in {} ms", delay.as_millis());
                    explained = Some(why);
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Exponential backoff with full jitter: the first retry comes within a second, later ones
/// spread out up to 30 s so that many components do not hammer a restarting server together.
fn backoff(failures: u32) -> Duration {
    let ceiling = FIRST_RETRY.saturating_mul(2u32.saturating_pow(failures.min(16))).min(MAX_RETRY);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// Why a connection attempt failed, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {server}: {source} (is the server running, and is its component port {server}?)")]
    Tcp { server: String, source: io::Error },
    #[error("connection to {server} timed out")]
    Timeout { server: String },
    #[error("stream with {server} failed: {source}")]
    Stream { server: String, source: io::Error },
    #[error("{server} sent no stream id; is {server} an XMPP component port (XEP-0114)?")]
    NoStreamId { server: String },
    #[error("handshake refused by {server}: {condition}{text} — {hint}")]
    Refused { server: String, condition: String, text: String, hint: String },
    #[error(
        "{server} closed the stream during the handshake: a wrong secret or a domain it does not serve, or \
         the server failed on it (ejabberd: a domain_balancing entry without component_number makes every \
         handshake crash, `badkey` in its log; see the README's \"Running more than one\")"
    )]
    ClosedDuringHandshake { server: String },
}

impl ConnectError {
    /// The server refused because another connection serves the domain (Prosody).
    fn is_conflict(&self) -> bool {
        matches!(self, ConnectError::Refused { condition, .. } if condition == "conflict")
    }
}

async fn connect(settings: &ConnectionSettings) -> Result<Stream, ConnectError> {
    let server = settings.server.clone();
    let attempt = async {
        let tcp = TcpStream::connect(&settings.server)
            .await
            .map_err(|source| ConnectError::Tcp { server: server.clone(), source })?;
        // Stanzas are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let header = StreamHeader { from: None, to: Some(settings.domain.as_str().into()), id: None };
        let timeouts = Timeouts { read_timeout: settings.keepalive, response_timeout: settings.dead_after };
        let mut pending =
            xmlstream::initiate_stream(BufStream::new(DepthGuarded::stream(tcp)), NS_COMPONENT, header, timeouts)
                .await
                .map_err(|source| ConnectError::Stream { server: server.clone(), source })?;
        let stream_id = pending
            .take_header()
            .id
            .map(|id| id.into_owned())
            .ok_or_else(|| ConnectError::NoStreamId { server: server.clone() })?;
        // Component streams carry no stream features (XEP-0114 predates them).
        let mut stream: Stream = pending.skip_features();
        let handshake = Element::from(Handshake::from_stream_id_and_password(stream_id, &settings.secret));
        stream.send(&handshake).await.map_err(|source| ConnectError::Stream { server: server.clone(), source })?;
        loop {
            match stream.next().await {
                Some(Ok(el)) if el.name() == "handshake" && el.ns() == NS_COMPONENT => {
                    return Ok(stream);
                }
                Some(Ok(el)) if is_stream_error(&el) => {
                    let (condition, text) = stream_error_condition(&el);
                    let hint = refusal_hint(&condition, settings);
                    return Err(ConnectError::Refused { server: server.clone(), condition, text, hint });
                }
                Some(Ok(el)) => {
                    tracing::debug!("ignoring <{}/> before the handshake answer", el.name())
                }
                Some(Err(ReadError::SoftTimeout)) | Some(Err(ReadError::ParseError(_))) => {}
                Some(Err(ReadError::HardError(source))) => {
                    return Err(ConnectError::Stream { server: server.clone(), source });
                }
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    return Err(ConnectError::ClosedDuringHandshake { server: server.clone() });
                }
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout { server: settings.server.clone() }))
}

fn refusal_hint(condition: &str, settings: &ConnectionSettings) -> String {
    let (domain, server) = (&settings.domain, &settings.server);
    match condition {
        // ejabberd also answers this for a domain it has no component entry for.
        "not-authorized" => format!(
            "check that the secret matches the server's for {domain} (Prosody: component_secret; ejabberd: \
             the password of {domain} under an ejabberd_service listener's hosts) and that the server serves \
             {domain} as a component at all"
        ),
        // A client port (Prosody's c2s) answers a component's stream this way too.
        "host-unknown" | "improper-addressing" => format!(
            "the server has no external component {domain} configured (Prosody: Component \"{domain}\"; \
             ejabberd: {domain} under an ejabberd_service listener's hosts), or {server} is not its component \
             port: a client port answers the same (the component port is usually 5347)"
        ),
        // ejabberd's client and server-to-server listeners answer a component's stream this way.
        "invalid-namespace" => format!(
            "{server} does not take component connections: this looks like a client (or server-to-server) \
             port; the component port is usually 5347 (Prosody: component_ports; ejabberd: the ejabberd_service \
             listener's port)"
        ),
        "conflict" => format!("another connection is already serving {domain}"),
        _ => format!("check the server's component configuration for {domain}"),
    }
}

fn is_stream_error(el: &Element) -> bool {
    el.name() == "error" && el.ns() == NS_STREAMS
}

/// The defined condition and the optional text of a `<stream:error/>`.
fn stream_error_condition(el: &Element) -> (String, String) {
    let condition = el
        .children()
        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let text = el
        .children()
        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() == "text")
        .map(|t| format!(" ({})", t.text()))
        .unwrap_or_default();
    (condition, text)
}

enum SessionEnd {
    /// Shut down on purpose: the queue is sent and the stream closed.
    Finished,
    Lost(String),
}

async fn serve(
    mut stream: Stream,
    settings: &ConnectionSettings,
    stop_reading: &CancellationToken,
    outgoing: &mut mpsc::Receiver<Element>,
    incoming: &mpsc::Sender<Element>,
    unsent: &mut Vec<Element>,
) -> SessionEnd {
    if let Err(e) = write_batch(&mut stream, unsent).await {
        return SessionEnd::Lost(format!("send failed: {e}"));
    }
    let mut keepalive = Keepalive::default();
    loop {
        tokio::select! {
            read = stream.next(), if !stop_reading.is_cancelled() => match read {
                Some(Ok(el)) if is_stream_error(&el) => {
                    let (condition, text) = stream_error_condition(&el);
                    return SessionEnd::Lost(format!("server sent stream error {condition}{text}"));
                }
                Some(Ok(el)) if is_keepalive_echo(&el, &settings.domain) => keepalive.echoed(&el),
                Some(Ok(el)) if Kind::of(&el).is_some() => {
                    if let Err(mpsc::error::SendError(el)) = incoming.send(el).await {
                        // Shutting down: nobody takes stanzas any more; keep sending what is queued.
                        tracing::warn!(
                            from = el.attr("from").unwrap_or(""),
                            kind = el.name(),
                            id = el.attr("id").unwrap_or(""),
                            "stanza not handled: arrived as stanzahook was shutting down"
                        );
                        stop_reading.cancel();
                    }
                }
                Some(Ok(el)) => tracing::debug!("ignoring non-stanza <{}/> from the server", el.name()),
                Some(Err(ReadError::SoftTimeout)) => {
                    let mut pings = keepalive.pings(&settings.domain);
                    if let Err(e) = write_batch(&mut stream, &mut pings).await {
                        return SessionEnd::Lost(format!("keepalive failed: {e}"));
                    }
                }
                Some(Err(ReadError::ParseError(e))) => tracing::warn!("unparsable element from the server skipped: {e}"),
                Some(Err(ReadError::HardError(e))) if e.kind() == io::ErrorKind::TimedOut => {
                    return SessionEnd::Lost(format!("server silent for {} s after a keepalive ping", settings.dead_after.as_secs()));
                }
                Some(Err(ReadError::HardError(e))) if e.to_string().contains("eof") => {
                    return SessionEnd::Lost(format!("the server closed the connection ({e})"));
                }
                Some(Err(ReadError::HardError(e))) => return SessionEnd::Lost(format!("read failed: {e}")),
                Some(Err(ReadError::StreamFooterReceived)) | None => return SessionEnd::Lost("server closed the stream".into()),
            },
            next = outgoing.recv() => match next {
                Some(el) => {
                    unsent.push(el);
                    while unsent.len() < WRITE_BATCH && let Ok(el) = outgoing.try_recv() {
                        unsent.push(el);
                    }
                    if let Err(e) = write_batch(&mut stream, unsent).await {
                        return SessionEnd::Lost(format!("send failed: {e}"));
                    }
                }
                None => {
                    // Every producer is gone: shutdown after draining. Close politely.
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
                    return SessionEnd::Finished;
                }
            },
        }
    }
}

/// Stanzas written before one flush: replies that are ready together leave in one write
/// instead of one system call each.
const WRITE_BATCH: usize = 64;

/// Writes `batch` and flushes it; the stanzas stay in `batch` until the flush succeeded, so a
/// connection lost on the way loses none of them: they go out first on the next connection.
async fn write_batch(stream: &mut Stream, batch: &mut Vec<Element>) -> Result<(), io::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    for el in batch.iter() {
        stream.feed(el).await?;
    }
    SinkExt::<&Element>::flush(stream).await?;
    batch.clear();
    Ok(())
}

/// The keepalive of one session. A ping goes from an address at the domain to itself: it
/// travels through the server and back, so its echo proves the whole path is alive, on any
/// server, without knowing the server's own domain. Any data read proves it too (the stream's
/// timeouts count every read), so pings go out only after `keepalive` of silence.
///
/// Where several connections serve the domain (ejabberd's `domain_balancing`, README: "Running
/// more than one"), the server hands each stanza to one of them by a hash of its sender's bare
/// address: an echo may come back to another process. So each round sends several pings from
/// different addresses, and the addresses whose echo came back on this connection lead the next
/// rounds (under `bare_source` they always come back here). A ping that reaches another process
/// is ignored there.
#[derive(Debug, Default)]
struct Keepalive {
    sent: u64,
    /// Local parts whose echo came back on this connection, newest last.
    ours: Vec<String>,
}

/// Pings per round while no echo has come back on this connection: with two connections
/// splitting the domain, all of them go to the other one once in 65,536 rounds.
const PINGS_UNKNOWN: usize = 16;
/// Pings per round once an address is known to come back here.
const PINGS_KNOWN: usize = 4;

impl Keepalive {
    fn pings(&mut self, domain: &str) -> Vec<Element> {
        let count = if self.ours.is_empty() { PINGS_UNKNOWN } else { PINGS_KNOWN };
        let known = self.ours.iter().rev().cloned();
        let fresh = std::iter::repeat_with(|| format!("keepalive-{:08x}", rand::random::<u32>()));
        let locals: Vec<String> = known.chain(fresh).take(count).collect();
        locals
            .iter()
            .map(|local| {
                self.sent += 1;
                let address = format!("{local}@{domain}");
                let mut iq = stanza::new_stanza(Kind::Iq, &address, &address);
                stanza::set_attr(&mut iq, "type", "get");
                stanza::set_attr(&mut iq, "id", &format!("{KEEPALIVE_ID_PREFIX}{}", self.sent));
                iq.append_child(Element::bare("ping", NS_PING));
                iq
            })
            .collect()
    }

    /// An echo came back on this connection: its address leads the next rounds.
    fn echoed(&mut self, el: &Element) {
        let Some(local) = el.attr("from").and_then(|from| from.split_once('@')).map(|(local, _)| local) else {
            return;
        };
        if !self.ours.iter().any(|known| known == local) {
            self.ours.push(local.to_owned());
            // A few are enough; the oldest go.
            if self.ours.len() > PINGS_KNOWN {
                self.ours.remove(0);
            }
        }
    }
}

/// A keepalive ping of this or another stanzahook serving the domain (older ones ping from the
/// bare domain).
fn is_keepalive_echo(el: &Element, domain: &str) -> bool {
    el.name() == "iq"
        && el.attr("from").is_some_and(|from| stanza::is_at_domain(from, domain))
        && el.attr("id").is_some_and(|id| id.starts_with(KEEPALIVE_ID_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_under_a_second_and_caps_at_thirty() {
        for _ in 0..100 {
            assert!(backoff(0) <= Duration::from_secs(1));
            assert!(backoff(30) <= MAX_RETRY);
            assert!(backoff(30) >= MAX_RETRY / 2);
        }
    }

    #[test]
    fn stream_error_condition_and_text() {
        let el: Element = "<error xmlns='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>taken</text></error>"
            .parse()
            .expect("parses");
        assert!(is_stream_error(&el));
        assert_eq!(stream_error_condition(&el), ("conflict".to_owned(), " (taken)".to_owned()));
    }

    #[test]
    fn keepalive_pings_from_many_addresses_until_one_comes_back_then_leads_with_it() {
        let mut keepalive = Keepalive::default();
        let first = keepalive.pings("bot.x");
        let addresses: std::collections::BTreeSet<&str> = first.iter().filter_map(|p| p.attr("from")).collect();
        assert_eq!((first.len(), addresses.len()), (PINGS_UNKNOWN, PINGS_UNKNOWN), "each from its own address");
        assert!(first.iter().all(|p| p.attr("from") == p.attr("to") && is_keepalive_echo(p, "bot.x")));
        assert!(!is_keepalive_echo(&first[0], "other.x"));
        // The seventh came back here: it goes first from now on, with fewer pings.
        keepalive.echoed(&first[6]);
        let next = keepalive.pings("bot.x");
        assert_eq!(next.len(), PINGS_KNOWN);
        assert_eq!(next[0].attr("from"), first[6].attr("from"));
        let ids: std::collections::BTreeSet<&str> = first.iter().chain(&next).filter_map(|p| p.attr("id")).collect();
        assert_eq!(ids.len(), PINGS_UNKNOWN + PINGS_KNOWN, "ids are never reused");
        // An older stanzahook's ping, from the bare domain, is recognised and teaches nothing.
        let old = stanza::parse_received("<iq type='get' from='bot.x' to='bot.x' id='stanzahook-keepalive-1'/>")
            .expect("parses");
        assert!(is_keepalive_echo(&old, "bot.x"));
        keepalive.echoed(&old);
        assert_eq!(keepalive.ours.len(), 1);
    }
}
