//! The task that keeps the bot in its rooms: joins them when a connection comes up, sends the
//! joins that are due (retries after a backoff), follows the config through reloads, and leaves
//! every room at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Rooms;
use crate::live::LiveCell;

/// How often the room list is compared with the config (a reload applies within this long).
const RESYNC: Duration = Duration::from_secs(1);

/// Runs until `shutdown`, then leaves the rooms.
pub fn spawn(rooms: Arc<Rooms>, live: LiveCell, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut health = crate::health::subscribe();
        let mut session = None;
        loop {
            let status = health.borrow_and_update().clone();
            match (status.connected, session) {
                (true, seen) if seen != Some(status.session) => {
                    session = Some(status.session);
                    rooms.connected();
                }
                (false, Some(_)) => {
                    session = None;
                    rooms.disconnected();
                }
                _ => {}
            }
            let config = live.load().config.clone();
            rooms.sync(&config.rooms);
            let next = rooms.send_due(config.room_ping_interval);
            let wake = tokio::time::Instant::now() + RESYNC;
            let wake = next.map_or(wake, |at| wake.min(tokio::time::Instant::from_std(at)));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    rooms.leave_all();
                    return;
                }
                _ = health.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    })
}
