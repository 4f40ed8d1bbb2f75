//! The README's first command: the quick-start demo shows a real round trip.

use std::process::Command;

#[test]
fn quickstart_demo_shows_a_round_trip() {
    if !testkit::require_program("prosody", "apt-get install prosody")
        || !testkit::require_program("python3", "apt-get install python3")
    {
        return;
    }
    // The demo runs the stanzahook binary of this workspace; make sure it is built and current.
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "stanzahook", "--bin", "stanzahook"])
        .status()
        .expect("cargo runs");
    assert!(build.success(), "building stanzahook failed");
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).output().expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("[webhook]    ← POST {"), "the webhook's request is shown:\n{stdout}");
    assert!(
        stdout.contains("[alice]      ← echo@bot.localhost: Hello from the stanzahook quick start!"),
        "the echo is shown:\n{stdout}"
    );
}
