//! Each webhook outcome of the README's "The answer", through a real Prosody and a real client.

use serde_json::json;
use testkit::Element;
use testkit::client::{body, error_of, error_text};

use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, message, on_each_server};

fn first_message(el: &Element) -> bool {
    el.name() == "message"
}

/// Sends `body` to `node@DOMAIN` and returns the single message that comes back.
#[tokio::test]
async fn json_answers_with_overrides() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };

    let answer = json!({"body": 42, "type": "headline", "from": format!("other@{DOMAIN}/r")}).to_string();
    let reply = b.ask("json", &answer).await;
    assert_eq!(body(&reply).as_deref(), Some("42"));
    assert_eq!(reply.attr("type"), Some("headline"));
    assert_eq!(reply.attr("from"), Some(format!("other@{DOMAIN}/r").as_str()));

    let reply = b.ask("json", &json!({"body": true}).to_string()).await;
    assert_eq!(body(&reply).as_deref(), Some("true"));
    assert_eq!(reply.attr("type"), Some("chat"), "type defaults to chat");
    assert_eq!(reply.attr("from"), Some(format!("json@{DOMAIN}").as_str()), "from defaults to the original to");

    let reply = b.ask("charset", "x").await;
    assert_eq!(body(&reply).as_deref(), Some("charset ok"), "a charset parameter is accepted");
}

#[tokio::test]
async fn stanza_override_is_sent_with_defaults_filled() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    let answer = json!({"stanza": "<message xmlns='jabber:client' type='headline'><body>raw &amp; ready</body><x xmlns='urn:example:x'/></message>"});
    let reply = b.ask("json", &answer.to_string()).await;
    assert_eq!(body(&reply).as_deref(), Some("raw & ready"));
    assert_eq!(reply.attr("type"), Some("headline"));
    assert_eq!(reply.attr("from"), Some(format!("json@{DOMAIN}").as_str()));
    assert!(reply.has_child("x", "urn:example:x"));

    let answer = json!({"stanza": "<message from='custom@bot.localhost/res'><body>own from</body></message>"});
    let reply = b.ask("json", &answer.to_string()).await;
    assert_eq!(reply.attr("from"), Some("custom@bot.localhost/res"), "a given from is kept");

    let reply = b.ask("json", &json!({"stanza": "<message><body>unclosed</message>"}).to_string()).await;
    assert_eq!(error_of(&reply), Some(("undefined-condition".into(), "cancel".into())));
    assert!(error_text(&reply).unwrap_or_default().contains("not well-formed"), "{:?}", error_text(&reply));
}

#[tokio::test]
async fn no_reply_for_other_success_answers() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    for node in ["s202", "s204", "s201", "plain"] {
        b.alice.send(&message(&format!("{node}@{DOMAIN}"), "x")).await.expect("send");
    }
    // An empty 200 JSON answer asks for nothing either.
    b.alice.send(&message(&format!("json@{DOMAIN}"), "")).await.expect("send");
    b.webhook_saw(5).await;
    b.expect_silence().await;
}

#[tokio::test]
async fn a_200_that_is_not_json_is_explained_once() {
    // An HTML error page or a framework's default route answers 200 text/html: nothing is sent
    // back, and nothing said why.
    let Some(mut b) = Bridge::start(Options::default()).await else { return };
    for _ in 0..3 {
        b.alice.send(&message(&format!("plain@{DOMAIN}"), "x")).await.expect("send");
    }
    b.webhook_saw(3).await;
    b.expect_silence().await;
    let log = b.host.log();
    let warnings: Vec<&str> =
        log.lines().filter(|l| l.contains("only Content-Type application/json produces a reply")).collect();
    assert_eq!(warnings.len(), 1, "once per content type:\n{log}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("text/plain"), "{}", warnings[0]);
}

on_each_server!(
    each_http_status_maps_to_its_stanza_error_on,
    each_http_status_maps_to_its_stanza_error,
    each_http_status_maps_to_its_stanza_error_through_ejabberd
);

async fn each_http_status_maps_to_its_stanza_error_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    let table = [
        ("s400", "bad-request", "modify", None),
        ("s401", "not-authorized", "auth", None),
        ("s402", "forbidden", "auth", Some("Payment required")),
        ("s403", "forbidden", "auth", None),
        ("s404", "item-not-found", "cancel", None),
        ("s410", "gone", "cancel", None),
        ("s500", "internal-server-error", "cancel", None),
        ("s501", "feature-not-implemented", "cancel", None),
        ("s502", "remote-server-timeout", "cancel", Some("Bad gateway")),
        ("s503", "remote-server-timeout", "wait", Some("Service temporarily unavailable")),
        ("s504", "remote-server-timeout", "wait", Some("Gateway timeout")),
        ("s418", "service-unavailable", "cancel", None),
        ("s301", "service-unavailable", "cancel", None),
        ("redirect", "service-unavailable", "cancel", None),
    ];
    for (node, condition, error_type, text) in table {
        b.alice
            .send(&format!("<message to='{node}@{DOMAIN}' type='chat' id='id-{node}'><body>x</body></message>"))
            .await
            .expect("send");
        let (reply, others) = b.alice.expect(WAIT, node, first_message).await.expect("error reply");
        assert!(others.is_empty(), "{node}: unexpected {others:?}");
        assert_eq!(reply.attr("type"), Some("error"), "{node}");
        assert_eq!(reply.attr("id"), Some(format!("id-{node}").as_str()), "{node}: error keeps the id");
        assert_eq!(error_of(&reply), Some((condition.to_owned(), error_type.to_owned())), "{node}");
        assert_eq!(error_text(&reply).as_deref(), text, "{node}");
    }
}

#[tokio::test]
async fn invalid_answers_become_undefined_condition() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    let cases = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{\"kind\": \"nonsense\"}", "is not message, presence or iq"),
        ("{\"body\": {\"a\": 1}}", "must be a string, number or boolean"),
        ("{\"to\": \"@@@\"}", "is not an XMPP address"),
    ];
    let deep = json!({"stanza": format!("<message>{}{}</message>", "<a>".repeat(10_000), "</a>".repeat(10_000))});
    let deep = deep.to_string();
    let cases = cases.into_iter().chain([(deep.as_str(), "nested deeper than 128 levels")]);
    for (answer, expected) in cases {
        let reply = b.ask("json", answer).await;
        assert_eq!(error_of(&reply), Some(("undefined-condition".into(), "cancel".into())), "{answer}");
        let text = error_text(&reply).unwrap_or_default();
        assert!(text.contains(expected), "{answer}: text {text:?} should say {expected:?}");
    }
    assert!(b.host.log().contains("answer refused"), "a log line per refusal:\n{}", b.host.log());
}

on_each_server!(
    foreign_from_is_refused_and_the_component_stays_connected_on,
    foreign_from_is_refused_and_the_component_stays_connected,
    foreign_from_is_refused_and_the_component_stays_connected_through_ejabberd
);

async fn foreign_from_is_refused_and_the_component_stays_connected_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    for from in ["mallory@evil.example", &format!("x@sub.{DOMAIN}"), "localhost"] {
        let reply = b.ask("json", &json!({"from": from, "body": "spoof"}).to_string()).await;
        assert_eq!(error_of(&reply), Some(("not-allowed".into(), "cancel".into())), "from {from}");
    }
    // The stream survived: an ordinary echo still works, and nothing reconnected.
    let reply = b.ask("echo", "still here").await;
    assert_eq!(body(&reply).as_deref(), Some("still here"));
    let log = b.host.log();
    assert_eq!(log.matches("connected, serving").count(), 1, "the component reconnected:\n{log}");
    assert!(log.contains("is not at this component's domain"), "{log}");
}

on_each_server!(
    a_reply_to_the_own_domain_is_refused_instead_of_looping_on,
    a_reply_to_the_own_domain_is_refused_instead_of_looping,
    a_reply_to_the_own_domain_is_refused_instead_of_looping_through_ejabberd
);

/// A reply addressed to the component's own domain came back from the server as a new stanza,
/// was forwarded, and answered again: thousands of round trips a second until SIGTERM.
async fn a_reply_to_the_own_domain_is_refused_instead_of_looping_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, ..Options::default() }).await else {
        return;
    };
    for to in [format!("someone@{DOMAIN}"), format!("json@{DOMAIN}/r"), DOMAIN.to_owned()] {
        let reply = b.ask("json", &json!({"to": to, "body": "x"}).to_string()).await;
        assert_eq!(error_of(&reply), Some(("undefined-condition".into(), "cancel".into())), "to {to}");
        assert!(error_text(&reply).unwrap_or_default().contains("its own address"), "{:?}", error_text(&reply));
    }
    b.expect_silence().await;
    assert_eq!(b.webhook.requests().len(), 3, "one request per message, no loop; host log:\n{}", b.host.log());
    assert!(b.host.log().contains("at this component's own domain"), "{}", b.host.log());
}

#[tokio::test]
async fn a_stanza_from_the_own_domain_is_not_forwarded() {
    let b = crate::harness::FakeBridge::start("").await;
    let mut session = b.server.accept(WAIT).await.expect("connection");
    // What another stanzahook (or an older one) serving this domain would send.
    session
        .send(&format!(
            "<message from='loop@{DOMAIN}/x' to='echo@{DOMAIN}' type='chat'><body>me again</body></message>"
        ))
        .await
        .expect("send");
    session
        .send(&format!("<message from='alice@localhost/r' to='echo@{DOMAIN}' type='chat'><body>hello</body></message>"))
        .await
        .expect("send");
    let reply = session.read_until("</message>", WAIT).await.expect("the reply to alice");
    assert!(reply.contains("<body>hello</body>"), "{reply}");
    let seen = b.webhook.requests();
    assert_eq!(seen.len(), 1, "only alice's message reached the webhook: {seen:?}");
    assert!(b.host.log().contains("comes from this component's own domain"), "{}", b.host.log());
}

/// A webhook that cannot be reached in time gives the sender remote-server-timeout, and the log
/// says which failure it was.
async fn assert_connection_failure(b: &mut Bridge, node: &str, logged: &str) {
    let reply = b.ask(node, "x").await;
    assert_eq!(error_of(&reply), Some(("remote-server-timeout".into(), "cancel".into())));
    assert_eq!(error_text(&reply).as_deref(), Some("Connection failure"));
    assert!(b.host.log().contains(logged), "{}", b.host.log());
}

#[tokio::test]
async fn webhook_timeout_answers_remote_server_timeout() {
    let options = Options { toml: "[webhook]\ntimeout = \"1s\"\n", ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else {
        return;
    };
    assert_connection_failure(&mut b, "slow", "webhook timed out").await;
}

#[tokio::test]
async fn refused_webhook_connection_answers_remote_server_timeout() {
    let closed = testkit::free_port().expect("port");
    let options = Options { post_url: Some(format!("http://127.0.0.1:{closed}/")), ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else {
        return;
    };
    assert_connection_failure(&mut b, "echo", "webhook connection failed").await;
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let Some(mut b) = Bridge::start(Options::default()).await else {
        return;
    };
    let reply = b.ask("huge", "x").await;
    assert_eq!(error_of(&reply), Some(("undefined-condition".into(), "cancel".into())));
    assert!(error_text(&reply).unwrap_or_default().contains("larger than"), "{:?}", error_text(&reply));

    // Within the HTTP limit but over the stanza cap: not sent, the sender is told.
    let reply = b.ask("bigreply", "x").await;
    assert_eq!(error_of(&reply), Some(("undefined-condition".into(), "cancel".into())));
    assert!(error_text(&reply).unwrap_or_default().contains("too large"), "{:?}", error_text(&reply));
}
