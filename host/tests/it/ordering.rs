//! Ordering (README: "The request"): one sender's replies leave in the order of its stanzas, whatever the
//! webhook's timing; different senders do not wait for each other.

use std::time::Duration;

use testkit::XmppClient;
use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, message, on_each_server};

on_each_server!(
    each_senders_replies_keep_its_order_under_random_delays_on,
    each_senders_replies_keep_its_order_under_random_delays,
    each_senders_replies_keep_its_order_under_random_delays_through_ejabberd
);

async fn each_senders_replies_keep_its_order_under_random_delays_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else { return };
    let mut bob = XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in");
    // The webhook answers each numbered body after its own delay of 0–40 ms; alice's and bob's
    // stanzas interleave.
    let count = 100;
    for n in 0..count {
        b.alice.send(&message(&format!("jitter@{DOMAIN}"), &n.to_string())).await.expect("send");
        bob.send(&message(&format!("jitter@{DOMAIN}"), &(1000 + n).to_string())).await.expect("send");
    }
    for (who, client, first) in [("alice", &mut b.alice, 0), ("bob", &mut bob, 1000)] {
        let mut got = Vec::new();
        while got.len() < count {
            let (reply, _) = client.expect(WAIT, "echo", |el| el.name() == "message").await.expect("reply");
            got.push(body(&reply).unwrap_or_default());
        }
        let expected: Vec<String> = (first..first + count).map(|n| n.to_string()).collect();
        assert_eq!(got, expected, "{who}'s replies out of order");
    }
}

#[tokio::test]
async fn a_slow_answer_does_not_hold_up_another_sender() {
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    let mut bob = XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in");
    b.alice.send(&message(&format!("slow@{DOMAIN}"), "slow one")).await.expect("send");
    // Bob writes once alice's call is under way; the webhook takes 3 s for alice.
    b.webhook.wait_for(1, WAIT).await.expect("the webhook is working on alice's message");
    bob.send(&message(&format!("echo@{DOMAIN}"), "quick one")).await.expect("send");
    let (reply, _) = bob.expect(Duration::from_secs(2), "bob's echo", |el| el.name() == "message").await.expect("bob");
    assert_eq!(body(&reply).as_deref(), Some("quick one"));
    let (reply, _) = b.alice.expect(WAIT, "alice's slow echo", |el| el.name() == "message").await.expect("alice");
    assert_eq!(body(&reply).as_deref(), Some("slow one"));
}
