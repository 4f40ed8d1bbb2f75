//! How the webhook is reached (README: "The request"): HTTPS checked against the system's trust
//! store, and a URL's `user:password@` sent as Basic authorization.

use testkit::TestWebhook;

use crate::harness::{DOMAIN, FakeBridge, WAIT};

fn message(id: &str, body: &str) -> String {
    format!("<message from='alice@localhost/r' to='echo@{DOMAIN}' id='{id}' type='chat'><body>{body}</body></message>")
}

#[tokio::test]
async fn an_https_webhook_with_a_trusted_certificate_is_called() {
    let (webhook, certificate) = TestWebhook::start_tls().await.expect("https webhook");
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = dir.path().join("ca.pem");
    std::fs::write(&trusted, certificate).expect("write certificate");
    let trusted = trusted.to_str().expect("a UTF-8 path");
    // The certificate trusted the way an operator adds a private CA: the system's trust store
    // variables, read by the same code that reads /etc/ssl/certs.
    let b = FakeBridge::start_with("", webhook, None, &[("SSL_CERT_FILE", trusted)]).await;
    let mut session = b.server.accept(WAIT).await.expect("connection");
    for n in 0..3 {
        session.send(&message(&format!("m{n}"), &format!("over tls {n}"))).await.expect("send");
        let reply = session.read_until("</message>", WAIT).await.unwrap_or_else(|e| panic!("{e}\n{}", b.host.log()));
        assert!(reply.contains(&format!("<body>over tls {n}</body>")), "{reply}\n{}", b.host.log());
    }
    assert_eq!(b.webhook.requests().len(), 3);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connection_failure_that_says_why() {
    let (webhook, _certificate) = TestWebhook::start_tls().await.expect("https webhook");
    let mut b = FakeBridge::start_with("", webhook, None, &[]).await;
    let mut session = b.server.accept(WAIT).await.expect("connection");
    session.send(&message("m1", "hello")).await.expect("send");
    let reply = session.read_until("</message>", WAIT).await.expect("an error reply");
    assert!(reply.contains("type='error'") && reply.contains("remote-server-timeout"), "{reply}");
    b.host.wait_for_log("webhook connection failed", WAIT).await.expect("logged");
    let log = b.host.log();
    let line = log.lines().find(|l| l.contains("webhook connection failed")).expect("the line");
    eprintln!("the log says: {line}");
    assert!(line.contains("connecting to localhost:"), "names where: {line}");
    assert!(line.contains("invalid peer certificate") && line.contains("UnknownIssuer"), "says why: {line}");
    assert!(b.webhook.requests().is_empty(), "nothing was sent over a connection that was not trusted");
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_as_basic_authorization_and_never_logged() {
    let webhook = TestWebhook::start().await.expect("webhook");
    // `s:cret` percent-encoded in the URL, as it must be.
    let url = webhook.url.replacen("http://", "http://bot:s%3Acret@", 1);
    let b = FakeBridge::start_with("", webhook, Some(&url), &[]).await;
    let mut session = b.server.accept(WAIT).await.expect("connection");
    session.send(&message("m1", "hello")).await.expect("send");
    session.read_until("</message>", WAIT).await.expect("reply");
    let requests = b.webhook.requests();
    let authorization = requests[0].headers.get("authorization").expect("an Authorization header");
    // base64("bot:s:cret")
    assert_eq!(authorization, "Basic Ym90OnM6Y3JldA==");
    assert!(!b.host.log().contains("s%3Acret"), "{}", b.host.log());
}
