//! Real servers for stanzahook's integration tests, benchmarks and demo: a Prosody started on
//! free loopback ports in a temp dir, a real XMPP client (tokio-xmpp), a scriptable webhook
//! (axum), and the stanzahook binary as a child process.

pub mod client;
pub mod demo;
pub mod fake_server;
pub mod guests;
pub mod host;
pub mod prosody;
pub mod webhook;

use std::net::TcpListener;

pub use client::XmppClient;
pub use fake_server::FakeComponentServer;
pub use host::HostProcess;
pub use prosody::{Prosody, ProsodySetup};
pub use webhook::TestWebhook;
/// The XML element type the test client hands out.
pub use xmpp_client::minidom::Element;

/// A TCP port free on loopback right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True when the tests run under CI, where a missing dependency is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a test that needs `program` can run. Without it the test is skipped with a loud
/// message, except under CI, where it fails: CI must install everything the tests need.
pub fn require_program(program: &str, install_hint: &str) -> bool {
    if on_path(program) {
        return true;
    }
    let message = format!("`{program}` is not installed ({install_hint})");
    assert!(!under_ci(), "{message}: under CI=true this is a failure");
    eprintln!("\n!!!!! SKIPPED: {message}; this test did not run !!!!!\n");
    false
}

/// Whether `program` is a file in one of `PATH`'s directories. The benchmarks, which CI does not
/// run, use it to skip a section with a message of their own where `require_program` would fail.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
