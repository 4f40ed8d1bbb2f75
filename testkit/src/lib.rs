//! Real servers for stanzahook's integration tests, benchmarks and demo: Prosody or ejabberd
//! (or a cluster of ejabberd nodes) started on free loopback ports in a temp dir, a real XMPP client (tokio-xmpp), a scriptable webhook
//! (axum), the stanzahook binary as a child process, and the component side of XEP-0114 for probing
//! a server without stanzahook.

pub mod client;
pub mod component_client;
pub mod demo;
pub mod ejabberd;
pub mod ejabberd_cluster;
pub mod fake_server;
pub mod guests;
pub mod host;
pub mod muc;
pub mod prosody;
pub mod server;
pub mod webhook;

use std::net::TcpListener;

pub use client::XmppClient;
pub use component_client::ComponentClient;
pub use ejabberd::Ejabberd;
pub use ejabberd_cluster::EjabberdCluster;
pub use fake_server::FakeComponentServer;
pub use host::HostProcess;
pub use prosody::Prosody;
pub use server::{CLIENT_DOMAIN, ServerProcess, ServerSetup, TestServer};
pub use webhook::TestWebhook;
/// The XML element type the test client hands out.
pub use xmpp_client::minidom::Element;

/// CPU time process `pid` has used so far (user + system, all threads), from `/proc`.
pub(crate) fn cpu_time_of(pid: u32) -> anyhow::Result<std::time::Duration> {
    use anyhow::Context;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("unexpected /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).context("short /proc stat")?.parse().context("unexpected /proc stat field")
    };
    // utime and stime (fields 14 and 15 of stat(5)), in USER_HZ = 100 ticks per second.
    Ok(std::time::Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// A TCP port free on loopback right now, and never handed out before in this process. The
/// kernel may give a port just released to the next `bind(0)`: two tests of one binary could
/// then start servers on the same port, and the second test would find the first one's server
/// answering there (seen in CI: a handshake refused with `host-unknown` by another test's
/// Prosody).
pub fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no loopback port left that this process has not handed out"))
}

/// A child process (an example webhook, say) killed and reaped when dropped, so a failing test
/// leaves nothing running.
#[derive(Debug)]
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when the tests run under CI, where a missing dependency is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a test that needs `program` can run. Without it the test is skipped with a loud
/// message, except under CI, where it fails: CI must install everything the tests need.
pub fn require_program(program: &str, install_hint: &str) -> bool {
    require(on_path(program), &format!("`{program}`"), install_hint)
}

/// Whether a test that needs `what` can run, given whether it is `installed`; as
/// `require_program`, for what is not one program on `PATH`.
pub fn require(installed: bool, what: &str, install_hint: &str) -> bool {
    if installed {
        return true;
    }
    let message = format!("{what} is not installed ({install_hint})");
    assert!(!under_ci(), "{message}: under CI=true this is a failure");
    eprintln!("\n!!!!! SKIPPED: {message}; this test did not run !!!!!\n");
    false
}

/// Whether `program` is a file in one of `PATH`'s directories. The benchmarks, which CI does not
/// run, use it to skip a section with a message of their own where `require_program` would fail.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
