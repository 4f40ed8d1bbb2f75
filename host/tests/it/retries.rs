//! Retries (README: "Retries"): with `webhook.retries` on, a webhook that fails for a moment is
//! tried again with the same `webhook-id`, `Retry-After` is waited, one sender's retries hold
//! back only that sender, and the sender gets the error only after the last attempt. A real
//! Prosody, a real client, a real HTTP webhook.

use std::time::{Duration, Instant};

use testkit::XmppClient;
use testkit::client::{body, error_of};

use crate::harness::{Bridge, DOMAIN, Options, WAIT, message};

async fn bridge(retries: &str) -> Option<Bridge> {
    let toml = format!("[webhook]\n{retries}\n");
    Bridge::start(Options { toml: &toml, api: true, ..Options::default() }).await
}

fn header(r: &testkit::webhook::Recorded, name: &str) -> String {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned()
}

#[tokio::test]
async fn a_webhook_that_fails_twice_is_tried_again_under_one_webhook_id() {
    let Some(mut b) = bridge("retries = 3\nretry_delay = \"200ms\"").await else { return };
    let reply = b.ask("flaky", "hello again").await;
    assert_eq!(body(&reply).as_deref(), Some("hello again"), "one reply, after the third attempt");
    let requests = b.webhook_saw(3).await;
    let ids: Vec<String> = requests.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids[0].starts_with("msg_") && ids.iter().all(|id| *id == ids[0]), "one webhook-id: {ids:?}");
    let attempts: Vec<String> = requests.iter().map(|r| header(r, "webhook-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert!(b.host.log().contains("attempt 1 failed, trying again in"), "{}", b.host.log());
    let api = b.api.clone().expect("api");
    let metrics = reqwest::get(format!("{api}/metrics")).await.expect("GET").text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "stanzahook_webhook_retries_total 2"), "{metrics}");
}

#[tokio::test]
async fn retry_after_is_waited() {
    // The schedule alone would try again after ~50 ms; the webhook asks for 2 s.
    let Some(mut b) = bridge("retries = 2\nretry_delay = \"50ms\"").await else { return };
    let sent = Instant::now();
    assert_eq!(body(&b.ask("busy", "later").await).as_deref(), Some("later"));
    assert!(sent.elapsed() >= Duration::from_secs(2), "answered after {:?}", sent.elapsed());
    assert_eq!(b.webhook_saw(2).await.len(), 2);
}

#[tokio::test]
async fn one_senders_retries_hold_back_only_that_sender() {
    let Some(mut b) = bridge("retries = 3\nretry_delay = \"1s\"").await else { return };
    let mut bob = XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in");
    // Alice's first message waits ~3 s for its third attempt; her second waits behind it.
    b.alice.send(&message(&format!("flaky@{DOMAIN}"), "first")).await.expect("send");
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "second")).await.expect("send");
    let sent = Instant::now();
    bob.send(&message(&format!("echo@{DOMAIN}"), "bob's")).await.expect("send");
    let (reply, _) = bob.expect(WAIT, "bob's echo", |el| body(el).is_some()).await.expect("bob's reply");
    assert_eq!(body(&reply).as_deref(), Some("bob's"));
    assert!(sent.elapsed() < Duration::from_secs(2), "bob waited {:?} behind alice's retries", sent.elapsed());
    let mut alice_got = Vec::new();
    while alice_got.len() < 2 {
        let (reply, _) = b.alice.expect(WAIT, "alice's replies", |el| body(el).is_some()).await.expect("reply");
        alice_got.extend(body(&reply));
    }
    assert_eq!(alice_got, ["first", "second"], "her order is kept");
}

#[tokio::test]
async fn the_error_comes_after_the_last_attempt_and_410_is_never_retried() {
    let Some(mut b) = bridge("retries = 2\nretry_delay = \"100ms\"").await else { return };
    let reply = b.ask("s503", "down").await;
    assert_eq!(error_of(&reply).map(|(condition, _)| condition).as_deref(), Some("remote-server-timeout"), "{reply:?}");
    assert_eq!(b.webhook_saw(3).await.len(), 3, "the first attempt and two retries");
    let reply = b.ask("s410", "gone").await;
    assert!(error_of(&reply).is_some(), "{reply:?}");
    assert_eq!(b.webhook_saw(4).await.len(), 4, "410 is not tried again");
    let log = b.host.log();
    assert!(log.contains("webhook answered HTTP 503; attempt 2 failed"), "{log}");
}

#[tokio::test]
async fn without_retries_a_failure_is_answered_at_once_and_requests_carry_no_attempt() {
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    let reply = b.ask("flaky", "once").await;
    assert_eq!(error_of(&reply).map(|(condition, _)| condition).as_deref(), Some("remote-server-timeout"), "{reply:?}");
    let requests = b.webhook_saw(1).await;
    assert_eq!(header(&requests[0], "webhook-attempt"), "(none)");
}
