//! The XEP-0114 connection: refused handshakes are explained (SPEC §1.2).

use std::time::Duration;

use testkit::{HostProcess, Prosody, ProsodySetup};

use crate::harness::{DOMAIN, SECRET, WAIT, stanzahook_bin};

fn run_args(prosody: &Prosody, domain: &str, secret: &str) -> Vec<String> {
    [
        "run",
        "--domain",
        domain,
        "--server",
        &prosody.component_addr(),
        "--secret",
        secret,
        "--post-url",
        "http://127.0.0.1:9/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test]
async fn wrong_secret_is_one_clear_line() {
    if !testkit::require_program("prosody", "apt-get install prosody") {
        return;
    }
    let prosody =
        Prosody::start(&ProsodySetup::default().component(DOMAIN, SECRET)).expect("prosody");
    let mut host =
        HostProcess::start(stanzahook_bin(), &run_args(&prosody, DOMAIN, "wrong")).expect("start");
    host.wait_for_log("handshake refused", WAIT)
        .await
        .expect("refusal logged");
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("handshake refused"))
        .expect("line");
    assert!(
        line.contains("not-authorized"),
        "names the server's condition: {line}"
    );
    assert!(
        line.contains("check that the secret matches"),
        "says what to check: {line}"
    );
    assert!(
        !log.contains("wrong"),
        "the secret must never be logged:\n{log}"
    );
}

#[tokio::test]
async fn unknown_domain_and_second_connection_are_explained() {
    if !testkit::require_program("prosody", "apt-get install prosody") {
        return;
    }
    let prosody =
        Prosody::start(&ProsodySetup::default().component(DOMAIN, SECRET)).expect("prosody");
    let mut unknown = HostProcess::start(
        stanzahook_bin(),
        &run_args(&prosody, "nope.localhost", SECRET),
    )
    .expect("start");
    unknown
        .wait_for_log("handshake refused", WAIT)
        .await
        .expect("refusal logged");
    assert!(unknown.log().contains("host-unknown"), "{}", unknown.log());

    let mut first =
        HostProcess::start(stanzahook_bin(), &run_args(&prosody, DOMAIN, SECRET)).expect("start");
    first
        .wait_for_log("connected, serving", WAIT)
        .await
        .expect("first connects");
    let mut second =
        HostProcess::start(stanzahook_bin(), &run_args(&prosody, DOMAIN, SECRET)).expect("start");
    second
        .wait_for_log("handshake refused", WAIT)
        .await
        .expect("second refused");
    assert!(second.log().contains("conflict"), "{}", second.log());
    assert!(
        second
            .log()
            .contains("another connection is already serving"),
        "{}",
        second.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.log().contains("connection lost"),
        "the first stays up:\n{}",
        first.log()
    );
}

#[tokio::test]
async fn sigterm_closes_the_stream_and_exits_cleanly() {
    if !testkit::require_program("prosody", "apt-get install prosody") {
        return;
    }
    let prosody =
        Prosody::start(&ProsodySetup::default().component(DOMAIN, SECRET)).expect("prosody");
    let mut host =
        HostProcess::start(stanzahook_bin(), &run_args(&prosody, DOMAIN, SECRET)).expect("start");
    host.wait_for_log("connected, serving", WAIT)
        .await
        .expect("connects");
    host.terminate().expect("SIGTERM");
    let status = host.wait_exit(WAIT).await.expect("exits");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        host.log()
    );
    assert!(host.log().contains("stream closed"), "{}", host.log());
}

#[tokio::test]
async fn deeply_nested_stanza_from_the_server_cannot_crash_the_host() {
    let server = testkit::FakeComponentServer::bind().await.expect("bind");
    let webhook = testkit::TestWebhook::start().await.expect("webhook");
    let args: Vec<String> = [
        "run",
        "--domain",
        DOMAIN,
        "--server",
        &server.addr,
        "--secret",
        SECRET,
        "--post-url",
        &webhook.url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut host = HostProcess::start(stanzahook_bin(), &args).expect("start");
    let mut first = server.accept(WAIT).await.expect("first connection");
    // 10,000 levels in 70 KB: within any server's stanza size limit, and enough to overflow a
    // recursive parser's stack.
    let deep = format!(
        "<message from='alice@localhost/r' to='echo@{DOMAIN}' type='chat'><body>deep</body>{}{}</message>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    first.send(&deep).await.expect("send");
    host.wait_for_log("nested deeper than", WAIT)
        .await
        .expect("refused with a clear line");

    // The host reconnects and serves the next stanza normally.
    let mut second = server.accept(WAIT).await.expect("reconnect");
    second
        .send(&format!("<message from='alice@localhost/r' to='echo@{DOMAIN}' type='chat' id='n1'><body>normal</body></message>"))
        .await
        .expect("send");
    let reply = second.read_until("</message>", WAIT).await.expect("reply");
    assert!(reply.contains("<body>normal</body>"), "{reply}");
    assert_eq!(
        webhook.requests().len(),
        1,
        "only the normal stanza reached the webhook"
    );
    assert!(!host.log().contains("panicked"), "{}", host.log());
}
