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
    assert!(result.is_ok(), "demo failed: {result:?}\n{text}");
    assert!(text.contains("[webhook]    ← POST {"), "the webhook's request is shown:\n{text}");
    assert!(
        text.contains("[alice]      ← echo@bot.localhost: Hello from the stanzahook quick start!"),
        "the echo is shown:\n{text}"
    );
}
