//! Whether the component stream is up, since when, and the last connection error: what
//! `GET /healthz` reports (README: "The operator API"), and what the rooms follow to join again on every new
//! connection. The connection task writes it (and with it the `connected` and `reconnects`
//! metrics); the API and the rooms read it.

use std::sync::LazyLock;
use std::time::SystemTime;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Status {
    pub connected: bool,
    /// When the stream last came up or went down.
    pub since: SystemTime,
    pub last_error: Option<String>,
    /// Counts the connections made: a new value is a new stream (rooms must be joined again).
    pub session: u64,
}

/// The process's connection status.
fn health() -> &'static watch::Sender<Status> {
    static HEALTH: LazyLock<watch::Sender<Status>> = LazyLock::new(|| {
        watch::Sender::new(Status { connected: false, since: SystemTime::now(), last_error: None, session: 0 })
    });
    &HEALTH
}

/// The stream is up; `reconnect` when it is not the process's first.
pub fn set_up(reconnect: bool) {
    crate::metrics::metrics().connection_up(reconnect);
    health().send_modify(|status| {
        status.connected = true;
        status.since = SystemTime::now();
        status.session += 1;
    });
}

pub fn set_down(error: &str) {
    crate::metrics::metrics().connection_down();
    health().send_modify(|status| {
        if status.connected {
            status.since = SystemTime::now();
        }
        status.connected = false;
        status.last_error = Some(error.to_owned());
    });
}

pub fn current() -> Status {
    health().borrow().clone()
}

/// Changes of the status as they happen.
pub fn subscribe() -> watch::Receiver<Status> {
    health().subscribe()
}
