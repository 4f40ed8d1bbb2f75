//! One room's state as an explicit machine: joining → joined, and from there kicked (no rejoin
//! until its settings change), failed (retried with backoff) or back to joining (the connection
//! dropped, the room went away). Pure: it is told what happened and when, and says what to send.

use std::time::{Duration, Instant, SystemTime};

use super::RoomSettings;

/// First retry after a failed join; doubled per failure up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// A join the room has not answered in this long is sent again.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A self-ping the room has not answered in this long means the bot is not in the room.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the connection, or for the room's answer to a join, or for the next try.
    Joining,
    Joined,
    /// The last join was refused; it is tried again at `next_join`.
    Failed,
    /// Kicked or banned: not rejoined until the room's settings change.
    Kicked,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Joining => "joining",
            Phase::Joined => "joined",
            Phase::Failed => "failed",
            Phase::Kicked => "kicked",
        }
    }
}

#[derive(Debug)]
pub struct Room {
    pub settings: RoomSettings,
    pub phase: Phase,
    /// When `phase` last changed (for `/healthz`).
    pub since: SystemTime,
    /// Why the room is failed or kicked.
    pub error: Option<String>,
    /// The nick the room knows the bot by (a room may change it on entry).
    pub nick: String,
    failures: u32,
    /// When to send the next join; `None` while one is awaited or none is wanted.
    next_join: Option<Instant>,
    /// When the join awaited was sent.
    join_sent: Option<Instant>,
    /// When the bot last heard that it is in the room (joined, or a self-ping answered).
    confirmed: Option<Instant>,
    /// When the self-ping awaited was sent (XEP-0410).
    ping_sent: Option<Instant>,
}

impl Room {
    /// A room to join: at once while `connected`, else on the next connection.
    pub fn new(settings: RoomSettings, connected: bool) -> Room {
        let nick = settings.nick.clone();
        let mut room = Room {
            settings,
            phase: Phase::Joining,
            since: SystemTime::now(),
            error: None,
            nick,
            failures: 0,
            next_join: Some(Instant::now()),
            join_sent: None,
            confirmed: None,
            ping_sent: None,
        };
        if !connected {
            room.disconnected();
        }
        room
    }

    /// The presence that leaves the room, while the bot is in it.
    pub fn leave(&self) -> Option<tokio_xmpp::minidom::Element> {
        (self.phase == Phase::Joined)
            .then(|| super::muc::leave(&self.settings.address, self.settings.jid.as_str(), &self.nick))
    }

    fn enter(&mut self, phase: Phase, error: Option<String>) {
        if self.phase != phase {
            self.since = SystemTime::now();
        }
        self.phase = phase;
        self.error = error;
        if phase != Phase::Joined {
            self.confirmed = None;
            self.ping_sent = None;
        }
    }

    /// A new connection: join at once, unless kicked.
    pub fn connected(&mut self, now: Instant) {
        if self.phase == Phase::Kicked {
            return;
        }
        self.enter(Phase::Joining, None);
        self.nick.clone_from(&self.settings.nick);
        self.next_join = Some(now);
        self.join_sent = None;
    }

    /// The connection dropped: the room will be joined again on the next one.
    pub fn disconnected(&mut self) {
        if self.phase == Phase::Joined {
            self.enter(Phase::Joining, None);
        }
        self.next_join = None;
        self.join_sent = None;
    }

    /// Whether a join should be sent now; if so, it counts as sent.
    pub fn join_due(&mut self, now: Instant) -> bool {
        let timed_out = self.join_sent.is_some_and(|sent| now.duration_since(sent) >= JOIN_TIMEOUT);
        let due = self.next_join.is_some_and(|at| at <= now) || timed_out;
        if due && self.phase != Phase::Kicked {
            self.next_join = None;
            self.join_sent = Some(now);
            return true;
        }
        false
    }

    /// The room's self-presence: the bot is in, as `nick`.
    pub fn joined(&mut self, nick: &str) {
        self.enter(Phase::Joined, None);
        self.confirmed = Some(Instant::now());
        nick.clone_into(&mut self.nick);
        self.failures = 0;
        self.next_join = None;
        self.join_sent = None;
    }

    /// The join was refused (or the room went away): try again after a backoff.
    pub fn failed(&mut self, why: String, now: Instant) {
        self.enter(Phase::Failed, Some(why));
        self.failures = self.failures.saturating_add(1);
        self.next_join = Some(now + retry_after(self.failures));
        self.join_sent = None;
    }

    /// The room is gone for now (shut down, destroyed, the bot's occupant lost): rejoin after a
    /// backoff, as `joining`.
    pub fn lost(&mut self, why: String, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.enter(Phase::Joining, Some(why));
        self.next_join = Some(now + retry_after(self.failures));
        self.join_sent = None;
    }

    /// Whether a self-ping should be sent now (the bot has been in the room for `interval`
    /// without hearing from it); if so, it counts as sent.
    pub fn ping_due(&mut self, now: Instant, interval: Duration) -> bool {
        let quiet_since = match (self.phase, self.confirmed, self.ping_sent) {
            (Phase::Joined, Some(at), None) => at,
            _ => return false,
        };
        if now.duration_since(quiet_since) < interval {
            return false;
        }
        self.ping_sent = Some(now);
        true
    }

    /// The room answered the self-ping: `in_room` unless it said the bot is not an occupant.
    pub fn ping_answered(&mut self, in_room: bool, why: String, now: Instant) {
        self.ping_sent = None;
        if in_room {
            self.confirmed = Some(now);
        } else if self.phase == Phase::Joined {
            self.lost(why, now);
        }
    }

    /// A self-ping unanswered for `PING_TIMEOUT`: the room (or its service) is gone.
    pub fn ping_timed_out(&mut self, now: Instant) -> bool {
        if self.ping_sent.is_some_and(|sent| now.duration_since(sent) >= PING_TIMEOUT) {
            self.lost("the room did not answer a self-ping".into(), now);
            return true;
        }
        false
    }

    pub fn kicked(&mut self, why: String) {
        self.enter(Phase::Kicked, Some(why));
        self.next_join = None;
        self.join_sent = None;
    }

    /// When the room wants attention next (a join or a ping due, an answer overdue), for the
    /// driver's timer.
    pub fn next_wakeup(&self, ping_interval: Duration) -> Option<Instant> {
        [
            self.next_join,
            self.join_sent.map(|sent| sent + JOIN_TIMEOUT),
            self.ping_sent.map(|sent| sent + PING_TIMEOUT),
            self.confirmed.filter(|_| self.ping_sent.is_none()).map(|at| at + ping_interval),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Backoff after `failures` failures in a row: 2 s, 4 s, 8 s, … at most 5 minutes.
fn retry_after(failures: u32) -> Duration {
    FIRST_RETRY.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16))).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Forward;

    fn room() -> Room {
        let settings = RoomSettings {
            jid: tokio_xmpp::jid::BareJid::new("r@muc.example").expect("jid"),
            nick: "Bot".into(),
            password: None,
            address: "bot.example".into(),
            forward: Forward::All,
        };
        Room::new(settings, true)
    }

    #[test]
    fn a_room_is_joined_on_connect_and_again_after_a_drop() {
        let mut r = room();
        let now = Instant::now();
        r.disconnected();
        assert!(!r.join_due(now), "no join without a connection");
        r.connected(now);
        assert!(r.join_due(now));
        assert!(!r.join_due(now), "one join at a time");
        r.joined("Bot");
        assert_eq!(r.phase, Phase::Joined);
        r.disconnected();
        assert_eq!(r.phase, Phase::Joining);
        r.connected(now);
        assert!(r.join_due(now));
    }

    #[test]
    fn a_refused_join_is_retried_with_growing_backoff() {
        let mut r = room();
        let now = Instant::now();
        assert!(r.join_due(now));
        r.failed("conflict".into(), now);
        assert_eq!(r.phase, Phase::Failed);
        assert!(!r.join_due(now + Duration::from_secs(1)));
        assert!(r.join_due(now + Duration::from_secs(2)));
        r.failed("conflict".into(), now);
        assert!(!r.join_due(now + Duration::from_secs(3)));
        assert!(r.join_due(now + Duration::from_secs(4)));
        assert_eq!(retry_after(100), MAX_RETRY);
    }

    #[test]
    fn a_kicked_room_is_not_rejoined() {
        let mut r = room();
        let now = Instant::now();
        assert!(r.join_due(now));
        r.joined("Bot");
        r.kicked("kicked by a moderator".into());
        r.disconnected();
        r.connected(now);
        assert_eq!(r.phase, Phase::Kicked);
        assert!(!r.join_due(now + MAX_RETRY));
    }

    #[test]
    fn a_quiet_room_is_pinged_and_left_for_lost_when_it_says_so() {
        let mut r = room();
        let now = Instant::now();
        let interval = Duration::from_secs(60);
        assert!(r.join_due(now));
        r.joined("Bot");
        assert!(!r.ping_due(now, interval), "just joined");
        let later = now + interval * 2;
        assert!(r.ping_due(later, interval));
        assert!(!r.ping_due(later, interval), "one ping at a time");
        r.ping_answered(true, String::new(), later);
        assert_eq!(r.phase, Phase::Joined);
        assert!(!r.ping_due(later, interval));
        let much_later = later + interval;
        assert!(r.ping_due(much_later, interval));
        r.ping_answered(false, "not-acceptable".into(), much_later);
        assert_eq!(r.phase, Phase::Joining, "joined again after a backoff");
        assert!(r.join_due(much_later + MAX_RETRY));
    }

    #[test]
    fn an_unanswered_ping_means_the_room_is_gone() {
        let mut r = room();
        let now = Instant::now();
        assert!(r.join_due(now));
        r.joined("Bot");
        let later = now + Duration::from_secs(600);
        assert!(r.ping_due(later, Duration::from_secs(60)));
        assert!(!r.ping_timed_out(later + Duration::from_secs(10)));
        assert!(r.ping_timed_out(later + PING_TIMEOUT));
        assert_eq!(r.phase, Phase::Joining);
    }

    #[test]
    fn an_unanswered_join_is_sent_again() {
        let mut r = room();
        let now = Instant::now();
        assert!(r.join_due(now));
        assert!(!r.join_due(now + Duration::from_secs(29)));
        assert!(r.join_due(now + JOIN_TIMEOUT));
    }
}
