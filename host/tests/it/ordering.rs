//! Ordering (SPEC §3.5): one sender's replies leave in the order of its stanzas, whatever the
//! webhook's timing; different senders do not wait for each other.

use std::time::Duration;

use testkit::XmppClient;
use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, Options, WAIT, message};

#[tokio::test]
async fn one_senders_replies_keep_its_order() {
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    let count = 30;
    for n in 0..count {
        b.alice.send(&message(&format!("jitter@{DOMAIN}"), &n.to_string())).await.expect("send");
    }
    let mut got = Vec::new();
    while got.len() < count {
        let (reply, _) = b.alice.expect(WAIT, "echo", |el| el.name() == "message").await.expect("reply");
        got.push(body(&reply).unwrap_or_default());
    }
    let expected: Vec<String> = (0..count).map(|n| n.to_string()).collect();
    assert_eq!(got, expected, "replies out of order");
}

#[tokio::test]
async fn a_slow_answer_does_not_hold_up_another_sender() {
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    let mut bob = XmppClient::login(b.prosody.c2s_port, "bob", "bobpw").await.expect("bob logs in");
    b.alice.send(&message(&format!("slow@{DOMAIN}"), "slow one")).await.expect("send");
    // Bob writes once alice's call is under way; the webhook takes 3 s for alice.
    b.webhook.wait_for(1, WAIT).await.expect("the webhook is working on alice's message");
    bob.send(&message(&format!("echo@{DOMAIN}"), "quick one")).await.expect("send");
    let (reply, _) = bob.expect(Duration::from_secs(2), "bob's echo", |el| el.name() == "message").await.expect("bob");
    assert_eq!(body(&reply).as_deref(), Some("quick one"));
    let (reply, _) = b.alice.expect(WAIT, "alice's slow echo", |el| el.name() == "message").await.expect("alice");
    assert_eq!(body(&reply).as_deref(), Some("slow one"));
}
