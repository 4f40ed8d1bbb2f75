//! Delivery under faults (README: "Operations", "When something goes wrong"): an XMPP server that dies and comes back,
//! a webhook that is slow, answers garbage or 10 MB, or is down. Every stanza that reached stanzahook is answered
//! (reply or mapped error), the process stays up, and its memory stays bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testkit::XmppClient;
use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, FakeBridge, Options, Server, WAIT, message, on_each_server};

/// The promise of the README's "Operations", with room for a busy CI machine: reconnect within 2 s of the server being
/// back (backoff: first retry within 1 s, doubling).
const RECONNECT_WITHIN: Duration = Duration::from_secs(2);
/// How much more memory stanzahook may use at its peak while the faults run than it did at rest.
/// Measured in this debug build: ~4 MiB per 10 MB answer in flight (the 1 MiB answer cap, the
/// buffer's growth, the HTTP connection's buffers), ~60 MiB in all. Reading the ten 10 MB answers
/// whole would take over 100 MB more.
const PEAK_GROWTH_LIMIT: u64 = 80 << 20;

on_each_server!(
    a_server_restart_mid_call_reconnects_fast_and_delivers_the_held_reply,
    prosody_restart_mid_call_reconnects_fast_and_delivers_the_held_reply,
    ejabberd_restart_mid_call_reconnects_fast_and_delivers_the_held_reply
);

async fn a_server_restart_mid_call_reconnects_fast_and_delivers_the_held_reply(server: Server) {
    // The held reply may reach the server before alice is back (a slow restart, a loaded
    // machine): the server keeps it for her, as a real one does, rather than bouncing it.
    let Some(mut b) = Bridge::start(Options { server, offline: true, ..Options::default() }).await else { return };
    b.alice.send(&message(&format!("slow@{DOMAIN}"), "across the restart")).await.expect("send");
    b.webhook.wait_for(1, WAIT).await.expect("the call is under way");

    // Killed as a crash would; back on the same ports. The webhook answers 3 s after the send,
    // so the reply becomes ready around the restart and is held until stanzahook is back.
    b.server.kill();
    b.server.restart().expect("the server starts again");
    let back = Instant::now();
    if let Err(e) = b.host.wait_for_log_count("connected, serving", 2, WAIT).await {
        panic!("stanzahook did not reconnect: {e}\n{}", logs(&b));
    }
    let reconnected = back.elapsed();
    assert!(reconnected <= RECONNECT_WITHIN, "reconnected {reconnected:?} after the server was back:\n{}", logs(&b));
    eprintln!("reconnected {} ms after the server was back", reconnected.as_millis());

    // alice's own connection died with the server: she logs in again, and the held reply (to
    // her old resource) reaches her new one, at once or from the server's offline store.
    let mut alice = XmppClient::login(b.server.c2s_port(), "alice", "alicepw").await.expect("alice again");
    let (reply, _) = match alice.expect(WAIT, "the held reply", |el| el.name() == "message").await {
        Ok(got) => got,
        Err(e) => {
            let old = b.alice.drain(Duration::from_secs(1)).await;
            panic!("{e}\nthe first client (which reconnects by itself) got {old:?}\n{}", logs(&b))
        }
    };
    assert_eq!(body(&reply).as_deref(), Some("across the restart"));

    // And a steady stream afterwards is answered, once each, in order.
    for n in 0..20 {
        alice.send(&message(&format!("echo@{DOMAIN}"), &format!("after {n}"))).await.expect("send");
    }
    for n in 0..20 {
        let (reply, _) = alice.expect(WAIT, "an echo", |el| el.name() == "message").await.expect("reply");
        assert_eq!(body(&reply), Some(format!("after {n}")));
    }
    let stray = alice.drain(Duration::from_millis(300)).await.expect("client ok");
    assert!(stray.iter().all(|el| el.name() != "message"), "a reply came twice: {stray:?}");
}

/// stanzahook's and the server's logs, for a failure to explain itself.
fn logs(b: &Bridge) -> String {
    format!("host log:\n{}\n{} log:\n{}", b.host.log(), b.server.name(), b.server.log())
}

/// The stanza error condition of a reply, as the stream writes it.
fn condition(reply: &str) -> Option<&'static str> {
    ["undefined-condition", "remote-server-timeout", "service-unavailable", "internal-server-error"]
        .into_iter()
        .find(|c| reply.contains(&format!("<{c} ")))
}

/// An attribute of the outermost element, as the stream writes it (single quotes).
fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let head = &xml[..xml.find('>')?];
    let start = head.find(&format!(" {name}='"))? + name.len() + 3;
    head[start..].split('\'').next()
}

#[tokio::test]
async fn webhook_faults_get_their_errors_and_memory_stays_bounded() {
    let mut b = FakeBridge::start("[webhook]\ntimeout = \"1s\"\n").await;
    let mut session = b.server.accept(WAIT).await.expect("connects");
    let at_rest = b.host.peak_rss().expect("peak RSS");
    // Each from its own sender, so they run at once: 10 MB answers in flight together.
    let faults = [
        ("tenmeg", "undefined-condition", "larger than"),
        ("garbage", "undefined-condition", "not valid JSON"),
        ("slow", "remote-server-timeout", "Connection failure"),
        ("s503", "remote-server-timeout", "Service temporarily unavailable"),
    ];
    let rounds = 10;
    let mut expected = BTreeMap::new();
    for i in 0..rounds * faults.len() {
        let (node, condition, text) = faults[i % faults.len()];
        session
            .send(&format!(
                "<message from='user{i}@localhost/r' to='{node}@{DOMAIN}' type='chat' id='f{i}'><body>{i}</body></message>"
            ))
            .await
            .expect("send");
        expected.insert(format!("f{i}"), (node, condition, text));
    }
    // The webhook goes down; stanzas keep coming.
    b.webhook.wait_for(rounds * faults.len(), WAIT).await.expect("all calls made");
    b.webhook.stop().await;
    for i in 0..rounds {
        session
            .send(&format!(
                "<message from='late{i}@localhost/r' to='echo@{DOMAIN}' type='chat' id='d{i}'><body>{i}</body></message>"
            ))
            .await
            .expect("send");
        expected.insert(format!("d{i}"), ("down", "remote-server-timeout", "Connection failure"));
    }

    let mut answered = BTreeMap::new();
    while answered.len() < expected.len() {
        let reply = match session.read_until("</message>", WAIT).await {
            Ok(reply) => reply,
            Err(e) => panic!("{e}; answered so far: {answered:?}\nhost log:\n{}", b.host.log()),
        };
        let Some(id) = attr(&reply, "id") else { panic!("no id in {reply}") };
        let id = id.to_owned();
        assert!(answered.insert(id.clone(), reply).is_none(), "{id} answered twice");
    }
    for (id, (node, condition, text)) in &expected {
        let reply = &answered[id];
        assert_eq!(attr(reply, "type"), Some("error"), "{node}: {reply}");
        assert_eq!(self::condition(reply), Some(*condition), "{node}: {reply}");
        assert!(reply.contains(text), "{node}: {reply}");
    }
    let peak = b.host.peak_rss().expect("peak RSS");
    eprintln!("stanzahook peak RSS: {} MiB at rest, {} MiB under the faults", at_rest >> 20, peak >> 20);
    assert!(peak - at_rest < PEAK_GROWTH_LIMIT, "peak RSS grew from {} to {} MiB", at_rest >> 20, peak >> 20);
    assert!(b.host.is_running(), "stanzahook stays up; log:\n{}", b.host.log());
}

/// `senders` stanzas at once, each from its own sender to the 3-second webhook, with `toml`: only
/// `running` calls may be under way at a time, and every sender is answered once.
async fn only_some_calls_run(toml: &str, senders: usize, running: usize, bound: &str) {
    let b = FakeBridge::start(toml).await;
    let mut session = b.server.accept(WAIT).await.expect("connects");
    for i in 0..senders {
        session
            .send(&format!(
                "<message from='user{i}@localhost/r' to='slow@{DOMAIN}' type='chat' id='w{i}'><body>{i}</body></message>"
            ))
            .await
            .expect("send");
    }
    b.webhook.wait_for(running, WAIT).await.expect("the first calls start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.webhook.requests().len(), running, "no more than {bound} calls at once");
    let mut answered = Vec::new();
    for _ in 0..senders {
        let reply = session.read_until("</message>", Duration::from_secs(20)).await.expect("every stanza answered");
        assert_ne!(attr(&reply, "type"), Some("error"), "{reply}");
        answered.push(attr(&reply, "to").expect("to").to_owned());
    }
    answered.sort();
    let mut expected: Vec<String> = (0..senders).map(|i| format!("user{i}@localhost/r")).collect();
    expected.sort();
    assert_eq!(answered, expected, "each sender answered once");
}

#[tokio::test]
async fn beyond_max_in_flight_stanzas_wait_and_none_is_lost() {
    only_some_calls_run("[webhook]\nmax_in_flight = 4\n", 10, 4, "max_in_flight").await;
}

#[tokio::test]
async fn beyond_max_connections_stanzas_wait_for_a_connection() {
    only_some_calls_run("[webhook]\nmax_in_flight = 10\nmax_connections = 2\n", 4, 2, "max_connections").await;
}

#[tokio::test]
async fn an_answer_with_a_control_character_is_refused_and_the_stream_stays_up() {
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    // The `json` node answers the message body verbatim: a JSON text whose \f is a form feed.
    let reply = b.ask("json", r#"{"body": "page\fbreak"}"#).await;
    let (condition, _) = testkit::client::error_of(&reply).expect("an error reply");
    assert_eq!(condition, "undefined-condition");
    assert!(testkit::client::error_text(&reply).unwrap_or_default().contains("U+000C"), "{reply:?}");
    assert_eq!(body(&b.ask("echo", "still here").await).as_deref(), Some("still here"));
    assert_eq!(b.host.log().matches("connected, serving").count(), 1, "{}", b.host.log());
}
