//! Whether the component stream is up, since when, and the last connection error: what
//! `GET /healthz` reports (SPEC §10.2). The connection task writes it (and with it the
//! `connected` and `reconnects` metrics), the API reads it.

use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct Status {
    pub connected: bool,
    /// When the stream last came up or went down.
    pub since: SystemTime,
    pub last_error: Option<String>,
}

/// The process's connection status.
pub fn health() -> &'static Mutex<Status> {
    static HEALTH: LazyLock<Mutex<Status>> =
        LazyLock::new(|| Mutex::new(Status { connected: false, since: SystemTime::now(), last_error: None }));
    &HEALTH
}

/// The stream is up; `reconnect` when it is not the process's first.
pub fn set_up(reconnect: bool) {
    crate::metrics::metrics().connection_up(reconnect);
    if let Ok(mut status) = health().lock() {
        status.connected = true;
        status.since = SystemTime::now();
    }
}

pub fn set_down(error: &str) {
    crate::metrics::metrics().connection_down();
    if let Ok(mut status) = health().lock() {
        if status.connected {
            status.since = SystemTime::now();
        }
        status.connected = false;
        status.last_error = Some(error.to_owned());
    }
}

pub fn current() -> Status {
    health().lock().map(|s| s.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}
