//! The operator's HTTP API and logs (README: "Operations"): `/healthz` follows the component stream,
//! `/metrics` parses as Prometheus text and counts the traffic sent, `POST /send` is guarded by
//! its token and checked like a webhook's answer, and JSON log lines carry the stanza's fields.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::client::body;

use crate::harness::{API_TOKEN, Bridge, DOMAIN, Options, SECRET, Server, WAIT, on_each_server};

/// A bridge on `server` with the API; returns it with the API's base URL.
async fn bridge_with_api(server: Server) -> Option<(Bridge, String)> {
    let b = Bridge::start(Options { server, api: true, ..Options::default() }).await?;
    let base = b.api.clone().expect("the API is on");
    Some((b, base))
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the API answers");
    (response.status().as_u16(), response.text().await.expect("body"))
}

async fn send(base: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/send"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `/healthz` until it answers `code`.
async fn healthz_becomes(base: &str, code: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) = get(&format!("{base}/healthz")).await;
        if status == code {
            return serde_json::from_str(&text).expect("healthz answers JSON");
        }
        assert!(Instant::now() < deadline, "/healthz stayed {status}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn healthz_follows_the_component_stream() {
    let Some((mut b, base)) = bridge_with_api(Server::Prosody).await else { return };
    let up = healthz_becomes(&base, 200).await;
    assert_eq!(up["connected"], true);

    b.server.kill();
    let down = healthz_becomes(&base, 503).await;
    assert_eq!(down["connected"], false);
    assert!(down["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{down}");

    b.server.restart().expect("prosody again");
    let back = healthz_becomes(&base, 200).await;
    assert_eq!(back["connected"], true);
    assert!(back["since"].as_str().is_some(), "{back}");
}

#[tokio::test]
async fn metrics_parse_and_count_the_traffic() {
    let Some((mut b, base)) = bridge_with_api(Server::Prosody).await else { return };
    for text in ["one", "two", "three"] {
        b.ask("echo", text).await;
    }
    b.ask("s500", "fails").await;

    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {label:?} in:\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("stanzahook_stanzas_received_total", Some(("kind", "message"))), 4.0);
    assert_eq!(value("stanzahook_stanzas_sent_total", Some(("kind", "message"))), 4.0, "3 echoes, 1 error");
    assert_eq!(value("stanzahook_webhook_calls_total", Some(("status", "2xx"))), 3.0);
    assert_eq!(value("stanzahook_webhook_calls_total", Some(("status", "5xx"))), 1.0);
    assert_eq!(value("stanzahook_connected", None), 1.0);
    assert_eq!(value("stanzahook_in_flight", None), 0.0);
    assert!(text.contains("stanzahook_webhook_duration_seconds_count 4"), "{text}");
}

// Through ejabberd too: these messages start at the component, with no stanza to answer.
on_each_server!(
    send_on,
    send_needs_its_token_and_the_components_domain,
    send_needs_its_token_and_the_components_domain_through_ejabberd
);

async fn send_on(server: Server) {
    let Some((mut b, base)) = bridge_with_api(server).await else { return };
    let alice = b.alice.jid.clone();
    let later = json!({"to": alice, "body": "an answer that took a while"});

    assert_eq!(send(&base, None, &later).await.0, 401, "no token");
    assert_eq!(send(&base, Some("wrong-token-wrong-token"), &later).await.0, 401, "wrong token");
    let (status, error) = send(&base, Some(API_TOKEN), &json!({"body": "to whom?"})).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().is_some_and(|e| e.contains("`to` (or `room`) is required")), "{error}");
    let foreign = json!({"to": alice, "from": "evil@localhost", "body": "x"});
    assert_eq!(send(&base, Some(API_TOKEN), &foreign).await.0, 403, "a foreign from is refused");
    // The server would route a stanza to the own domain back to stanzahook, which would answer it.
    for own in [format!("someone@{DOMAIN}"), DOMAIN.to_owned()] {
        let (status, error) = send(&base, Some(API_TOKEN), &json!({"to": own, "body": "loop?"})).await;
        assert_eq!(status, 400, "to {own}");
        assert!(error["error"].as_str().is_some_and(|e| e.contains("own domain")), "{error}");
    }
    b.expect_silence().await;
    assert_eq!(b.webhook.requests().len(), 0, "nothing came back to the webhook");

    let (status, answer) = send(&base, Some(API_TOKEN), &later).await;
    assert_eq!((status, answer), (202, json!({"queued": 1})));
    let (got, _) = b.alice.expect(WAIT, "the sent message", |el| el.name() == "message").await.expect("delivered");
    assert_eq!(body(&got).as_deref(), Some("an answer that took a while"));
    assert_eq!(got.attr("from"), Some(DOMAIN));

    let from_bot = json!({"to": alice, "from": format!("weather@{DOMAIN}/x"), "type": "chat", "body": "sunny"});
    assert_eq!(send(&base, Some(API_TOKEN), &from_bot).await.0, 202);
    let (got, _) = b.alice.expect(WAIT, "from the bot", |el| el.name() == "message").await.expect("delivered");
    assert_eq!(got.attr("from"), Some(format!("weather@{DOMAIN}/x").as_str()));
    let log = b.host.log();
    assert!(!log.contains(API_TOKEN), "the token must never be logged:\n{log}");
}

#[tokio::test]
async fn json_log_lines_carry_the_stanzas_sender_kind_and_id() {
    let Some(mut b) = Bridge::start(Options { json_log: true, ..Options::default() }).await else { return };
    b.alice
        .send(&format!("<message to='s500@{DOMAIN}' type='chat' id='json-1'><body>x</body></message>"))
        .await
        .expect("send");
    b.alice.expect(WAIT, "the error", |el| el.name() == "message").await.expect("error reply");
    b.host.wait_for_log("webhook answered HTTP 500", WAIT).await.expect("failure logged");
    let log = b.host.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let failure = lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("webhook answered HTTP 500")))
        .expect("the failure line");
    assert_eq!(failure["level"], "WARN", "{failure}");
    let span = &failure["span"];
    assert_eq!(span["from"].as_str(), Some(b.alice.jid.as_str()), "{failure}");
    assert_eq!(span["kind"], "message", "{failure}");
    assert_eq!(span["id"], "json-1", "{failure}");
    assert!(!log.contains(SECRET), "the secret must never be logged");
}
