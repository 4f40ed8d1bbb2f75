//! The XEP-0114 connection: refused handshakes are explained (README: "Operations").

use std::time::Duration;

use testkit::{HostProcess, ServerSetup, TestServer};

use crate::harness::{DOMAIN, FakeBridge, SECRET, Server, WAIT, on_each_server, stanzahook_bin};

fn run_args(server: &dyn TestServer, domain: &str, secret: &str) -> Vec<String> {
    testkit::host::run_args(domain, &server.component_addr(), secret, "http://127.0.0.1:9/", None)
}

on_each_server!(wrong_secret_on, wrong_secret_is_one_clear_line, wrong_secret_is_one_clear_line_with_ejabberd);

async fn wrong_secret_on(server: Server) {
    let Some(server) = server.start(&ServerSetup::default().component(DOMAIN, SECRET)) else { return };
    let mut host = HostProcess::start(stanzahook_bin(), &run_args(&*server, DOMAIN, "wrong")).expect("start");
    host.wait_for_log("handshake refused", WAIT).await.expect("refusal logged");
    let log = host.log();
    let line = log.lines().find(|l| l.contains("handshake refused")).expect("line");
    assert!(line.contains("not-authorized"), "names the server's condition: {line}");
    assert!(line.contains("check that the secret matches"), "says what to check: {line}");
    assert!(!log.contains("wrong"), "the secret must never be logged:\n{log}");
    // It keeps trying, with one short line per attempt instead of the explanation again.
    host.wait_for_log_count("failed the same way", 2, WAIT).await.expect("later attempts");
    let log = host.log();
    assert_eq!(log.matches("handshake refused").count(), 1, "explained once:\n{log}");
}

on_each_server!(
    unknown_domain_on,
    unknown_domain_and_second_connection_are_explained,
    unknown_domain_and_second_connection_are_explained_with_ejabberd
);

async fn unknown_domain_on(kind: Server) {
    let Some(server) = kind.start(&ServerSetup::default().component(DOMAIN, SECRET)) else { return };
    let mut unknown =
        HostProcess::start(stanzahook_bin(), &run_args(&*server, "nope.localhost", SECRET)).expect("start");
    unknown.wait_for_log("handshake refused", WAIT).await.expect("refusal logged");
    // Prosody says the domain is unknown; ejabberd says not-authorized, as for a wrong secret.
    let line = unknown.log().lines().find(|l| l.contains("handshake refused")).expect("line").to_owned();
    assert!(line.contains("host-unknown") || line.contains("not-authorized"), "{line}");
    assert!(line.contains("ejabberd_service listener's hosts"), "says where the domain is configured: {line}");

    let mut first = HostProcess::start(stanzahook_bin(), &run_args(&*server, DOMAIN, SECRET)).expect("start");
    first.wait_for_log("connected, serving", WAIT).await.expect("first connects");
    let mut second = HostProcess::start(stanzahook_bin(), &run_args(&*server, DOMAIN, SECRET)).expect("start");
    match kind {
        Server::Prosody => {
            second.wait_for_log("handshake refused", WAIT).await.expect("second refused");
            assert!(second.log().contains("conflict"), "{}", second.log());
            assert!(second.log().contains("another connection is already serving"), "{}", second.log());
        }
        // ejabberd takes both and spreads the domain's stanzas among them, as the README warns.
        Server::Ejabberd => second.wait_for_log("connected, serving", WAIT).await.expect("second connects too"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.log().contains("connection lost"), "the first stays up:\n{}", first.log());
    if kind == Server::Prosody {
        // The second waits as a hot standby and takes over once the first is gone.
        assert!(second.log().contains("standby: handshake refused"), "{}", second.log());
        first.terminate().expect("SIGTERM");
        first.wait_exit(WAIT).await.expect("the first exits");
        let gone = std::time::Instant::now();
        second.wait_for_log("standby over", WAIT).await.expect("the second takes over");
        let took = gone.elapsed();
        eprintln!("standby: took over {} ms after the first exited", took.as_millis());
        assert!(took < Duration::from_secs(2), "took over {took:?} after the first exited:\n{}", second.log());
        assert_eq!(second.log().matches("standby: handshake refused").count(), 1, "said once:\n{}", second.log());
    }
}

#[tokio::test]
async fn sigterm_closes_the_stream_and_exits_cleanly() {
    let Some(server) = Server::Prosody.start(&ServerSetup::default().component(DOMAIN, SECRET)) else { return };
    let mut host = HostProcess::start(stanzahook_bin(), &run_args(&*server, DOMAIN, SECRET)).expect("start");
    host.wait_for_log("connected, serving", WAIT).await.expect("connects");
    host.terminate().expect("SIGTERM");
    let status = host.wait_exit(WAIT).await.expect("exits");
    assert!(status.success(), "exit status {status}; log:\n{}", host.log());
    assert!(host.log().contains("stream closed"), "{}", host.log());
}

#[tokio::test]
async fn deeply_nested_stanza_from_the_server_cannot_crash_the_host() {
    let mut b = FakeBridge::start("").await;
    let mut first = b.server.accept(WAIT).await.expect("first connection");
    // 10,000 levels in 70 KB: within any server's stanza size limit, and enough to overflow a
    // recursive parser's stack.
    let deep = format!(
        "<message from='alice@localhost/r' to='echo@{DOMAIN}' type='chat'><body>deep</body>{}{}</message>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    first.send(&deep).await.expect("send");
    b.host.wait_for_log("nested deeper than", WAIT).await.expect("refused with a clear line");

    // The host reconnects and serves the next stanza normally.
    let mut second = b.server.accept(WAIT).await.expect("reconnect");
    second
        .send(&format!(
            "<message from='alice@localhost/r' to='echo@{DOMAIN}' type='chat' id='n1'><body>normal</body></message>"
        ))
        .await
        .expect("send");
    let reply = second.read_until("</message>", WAIT).await.expect("reply");
    assert!(reply.contains("<body>normal</body>"), "{reply}");
    assert_eq!(b.webhook.requests().len(), 1, "only the normal stanza reached the webhook");
    assert!(!b.host.log().contains("panicked"), "{}", b.host.log());
}

#[tokio::test]
async fn a_silent_server_is_noticed_and_left() {
    let mut b = FakeBridge::start("[connection]\nkeepalive = \"500ms\"\ndead_after = \"1s\"\n").await;
    // The fake server never answers: the keepalive ping (to the domain itself) is not echoed.
    let mut silent = b.server.accept(WAIT).await.expect("first connection");
    let ping = silent.read_until("</iq>", WAIT).await.expect("keepalive ping");
    assert!(ping.contains("urn:xmpp:ping"), "{ping}");
    b.host.wait_for_log("server silent", WAIT).await.expect("dead server noticed");
    b.server.accept(WAIT).await.expect("reconnects after giving up on the silent server");
}

#[tokio::test]
async fn replies_ready_while_disconnected_are_sent_after_the_reconnect() {
    let mut b = FakeBridge::start("").await;
    let mut first = b.server.accept(WAIT).await.expect("first connection");
    // The webhook takes 3 s to answer; the connection drops meanwhile.
    b.slow_call_under_way(&mut first, "held").await;
    drop(first);
    b.host.wait_for_log("connection lost", WAIT).await.expect("drop noticed");
    let mut second = b.server.accept(WAIT).await.expect("reconnect");
    let reply = second.read_until("</message>", WAIT).await.expect("held reply");
    assert!(reply.contains("<body>held</body>") && reply.contains("to='alice@localhost/r'"), "{reply}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_stanzas_finish_and_sends_their_replies() {
    let mut b = FakeBridge::start("").await;
    let mut session = b.server.accept(WAIT).await.expect("connection");
    // The webhook takes 3 s; SIGTERM comes while it works.
    b.slow_call_under_way(&mut session, "late").await;
    b.host.terminate().expect("SIGTERM");
    let reply = session.read_until("</message>", WAIT).await.expect("the in-flight reply");
    assert!(reply.contains("<body>late</body>"), "{reply}");
    session.read_until("</stream:stream>", WAIT).await.expect("then the stream is closed");
    let status = b.host.wait_exit(WAIT).await.expect("exits");
    assert!(status.success(), "{status}\n{}", b.host.log());
}

on_each_server!(
    the_client_port_on,
    pointed_at_the_client_port_the_log_says_so,
    pointed_at_the_client_port_the_log_says_so_through_ejabberd
);

/// `--server` at the client port (5222 and the like) was reported as a missing component entry.
async fn the_client_port_on(server: crate::harness::Server) {
    let setup = testkit::ServerSetup::default().component(DOMAIN, crate::harness::SECRET);
    let Some(server) = server.start(&setup) else { return };
    let client_port = format!("127.0.0.1:{}", server.c2s_port());
    let args = testkit::host::run_args(DOMAIN, &client_port, crate::harness::SECRET, "http://127.0.0.1:9/", None);
    let mut host = testkit::HostProcess::start(crate::harness::stanzahook_bin(), &args).expect("starts");
    host.wait_for_log("next attempt", WAIT).await.expect("the refusal is logged");
    let log = host.log();
    let line = log.lines().find(|l| l.contains("next attempt")).unwrap_or_default();
    assert!(line.contains("a client") && line.contains("the component port is usually 5347"), "{line}\n{log}");
}
