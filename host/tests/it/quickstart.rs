//! The README's first command: the quick-start demo tells a real round trip.

use crate::harness::stanzahook_bin;

#[tokio::test]
async fn quickstart_demo_shows_a_round_trip() {
    if !testkit::require_program("prosody", "apt-get install prosody")
        || !testkit::require_program("python3", "apt-get install python3")
    {
        return;
    }
    let transcript = testkit::demo::Transcript::default();
    let result = testkit::demo::run(stanzahook_bin(), &transcript).await;
    let text = transcript.text();
    let Ok(running) = result else { panic!("demo failed: {result:?}\n{text}") };
    assert!(text.contains("[webhook]    ← POST {"), "the webhook's request is shown:\n{text}");
    assert!(
        text.contains("[alice]      ← echo@bot.localhost: Hello from the stanzahook quick start!"),
        "the echo is shown:\n{text}"
    );
    assert!(text.contains("stanzahook::way: POST → 200 application/json"), "the --dev line is shown:\n{text}");

    // `--keep`: what it tells is enough for a client of the reader's own to log in and chat.
    running.tell(&transcript);
    let text = transcript.text();
    let port: u16 = text
        .split("server    127.0.0.1, port ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("the client port is told:\n{text}"));
    assert!(text.contains("address   alice@localhost") && text.contains("password  alicepw"), "{text}");
    let mut client = testkit::XmppClient::login(port, "alice", "alicepw").await.expect("the told login works");
    let to = "echo@bot.localhost";
    client.send(&crate::harness::message(to, "my own client")).await.expect("send");
    let (reply, _) = client.expect(crate::harness::WAIT, "the echo", |el| el.name() == "message").await.expect("echo");
    assert_eq!(testkit::client::body(&reply).as_deref(), Some("my own client"));
    let deadline = std::time::Instant::now() + crate::harness::WAIT;
    while !transcript.text().contains("[stanzahook] ") || !transcript.text().contains("\"my own client\"") {
        assert!(std::time::Instant::now() < deadline, "stanzahook's log is followed:\n{}", transcript.text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
