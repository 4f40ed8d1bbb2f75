//! Group chat: the rooms stanzahook is an occupant of. This module owns every room's
//! state (`state.rs`, one machine per room), the XEP-0045 stanzas that drive it (`muc.rs`), and the
//! task that joins on every connection and retries with backoff (`driver.rs`). The rest of the
//! host asks it what a stanza from a room is (`Rooms::intercept`: the bot's own presence or
//! reflection, a room message to forward, or nothing to do with rooms), whether an address is in
//! a room (`Rooms::is_room_address`: no stanza error may go there), and whether a room may get
//! another reply this minute (`Rooms::allow_reply`).

mod driver;
pub mod muc;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio_xmpp::jid::BareJid;
use tokio_xmpp::minidom::Element;

use crate::config::Secret;
use crate::stanza::{self, Kind};
use crate::store::{KeptRoom, Store};
use crate::xmpp::Outbox;

pub use driver::spawn;
pub use state::Phase;
use state::Room;

/// Ids of the stanzas the rooms module sends and whose answers it takes back.
const ID_PREFIX: &str = "sh-room-";
/// Ids of the self-pings, among them.
const PING_PREFIX: &str = "sh-room-ping-";

/// Which room messages reach the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    All,
    /// Only those that name the bot's nick or reference its occupant.
    Mentions,
}

/// One configured room, validated.
#[derive(Clone, Debug)]
pub struct RoomSettings {
    /// The room's bare address, `room@conference.example.org`.
    pub jid: BareJid,
    pub nick: String,
    pub password: Option<Secret>,
    /// The component address that is the occupant: the domain or a bare address at it.
    pub address: String,
    pub forward: Forward,
}

impl RoomSettings {
    /// The room an invitation names, joined as `address` (the address invited, at the
    /// component's domain) with the nick of that address's local part, else the identity's name.
    pub fn invited(
        invite: &muc::Invite,
        address: &str,
        config: &crate::config::Config,
    ) -> Result<RoomSettings, String> {
        let jid = BareJid::new(&invite.room)
            .ok()
            .filter(|j| j.node().is_some())
            .ok_or_else(|| format!("{:?} is not a room address", invite.room))?;
        if stanza::is_at_domain(jid.as_str(), &config.domain) {
            return Err("the room would be at the component's own domain".into());
        }
        let nick = match address.split_once('@') {
            Some((node, _)) => node.to_owned(),
            None => config.identity.name.clone(),
        };
        let password = invite.password.clone().filter(|p| !p.is_empty()).map(Secret::new);
        Ok(RoomSettings { jid, nick, password, address: address.to_owned(), forward: Forward::All })
    }

    /// A room kept in the store, if it still reads as one.
    fn from_kept(kept: &KeptRoom) -> Option<RoomSettings> {
        let jid = BareJid::new(&kept.jid).ok().filter(|j| j.node().is_some())?;
        Some(RoomSettings {
            jid,
            nick: kept.nick.clone(),
            password: kept.password.clone().map(Secret::new),
            address: kept.address.clone(),
            forward: Forward::All,
        })
    }

    fn to_kept(&self) -> KeptRoom {
        KeptRoom {
            jid: self.jid.to_string(),
            nick: self.nick.clone(),
            address: self.address.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_owned()),
        }
    }

    /// Whether a reload changed anything that needs a new join.
    fn same_join(&self, other: &RoomSettings) -> bool {
        self.jid == other.jid
            && self.nick == other.nick
            && self.address == other.address
            && self.password.as_ref().map(Secret::expose) == other.password.as_ref().map(Secret::expose)
    }
}

/// A message from an occupant of a room the bot is in: the event names the room and the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    /// The room's bare address.
    pub room: String,
    /// The sender's nick.
    pub nick: String,
    /// Whether the message names the bot.
    pub mentioned: bool,
}

/// What a stanza is to the rooms.
#[derive(Debug, PartialEq, Eq)]
pub enum Intercept {
    /// About the bot's own occupant (its presence, an answer to its own request): taken here.
    Consumed,
    /// A room message that is not forwarded, and why.
    Skip(&'static str),
    /// A room message to forward, with what the event says about the room.
    Room(Occupancy),
    /// Nothing to do with a room the bot is in.
    None,
}

/// One room's state as `/healthz` shows it.
#[derive(Clone, Debug)]
pub struct RoomStatus {
    pub jid: String,
    pub phase: Phase,
    pub nick: String,
    pub since: SystemTime,
    pub error: Option<String>,
}

/// Every room's state, shared by the pipeline, the API and the driver task.
#[derive(Debug)]
pub struct Rooms {
    inner: Mutex<Inner>,
    outbox: Outbox,
    /// Where the rooms joined at run time are kept across restarts.
    store: Arc<Store>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By the room's bare address in lower case.
    rooms: BTreeMap<String, Room>,
    connected: bool,
    /// When the replies of the last minute were sent, per room (README: "Group chat").
    replies: BTreeMap<String, VecDeque<Instant>>,
    next_id: u64,
    /// Rooms joined at run time (an invitation, `POST /rooms`), by key; kept in the state store.
    runtime: BTreeMap<String, RoomSettings>,
    /// The keys of the config file's rooms, as of the last `sync`.
    configured: std::collections::BTreeSet<String>,
}

/// What `Rooms::add` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A new room, to be joined (and kept).
    Joining,
    /// The bot is already in, or joining, that room.
    Already,
}

/// What `Rooms::remove` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Left (and to be forgotten).
    Left,
    /// The room is in the config file: only an edit of the file removes it.
    Configured,
    Unknown,
}

/// Where a room comes from, for `GET /rooms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    Runtime,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Runtime => "runtime",
        }
    }
}

fn key(room: &str) -> String {
    room.to_ascii_lowercase()
}

impl Rooms {
    pub fn new(outbox: Outbox, store: Arc<Store>) -> Arc<Rooms> {
        Arc::new(Rooms { inner: Mutex::default(), outbox, store })
    }

    /// The rooms joined at run time before a restart, from the store: joined again. Blocking.
    pub fn restore(&self) {
        let kept = match self.store.rooms() {
            Ok(kept) => kept,
            Err(e) => {
                tracing::error!("cannot read the rooms joined at run time: {e:#}; they are not joined again");
                return;
            }
        };
        let mut inner = self.lock();
        for room in kept {
            match RoomSettings::from_kept(&room) {
                Some(settings) => {
                    inner.runtime.insert(key(settings.jid.as_str()), settings);
                }
                None => tracing::warn!(room = room.jid, "a kept room is not a room address; ignored"),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the rooms those of `settings`: new entries are joined, removed ones left, changed
    /// ones joined again (a kicked room is tried again once its entry changes).
    pub fn sync(&self, settings: &[RoomSettings]) {
        let mut inner = self.lock();
        // The config file's rooms, and those joined at run time (the file wins for a room in both).
        let runtime = inner.runtime.clone();
        let mut wanted: BTreeMap<String, &RoomSettings> = runtime.iter().map(|(k, s)| (k.clone(), s)).collect();
        wanted.extend(settings.iter().map(|s| (key(s.jid.as_str()), s)));
        inner.configured = settings.iter().map(|s| key(s.jid.as_str())).collect();
        let gone: Vec<String> = inner.rooms.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        for k in gone {
            if let Some(room) = inner.rooms.remove(&k) {
                tracing::info!(room = %room.settings.jid, "leaving the room: it is no longer configured or asked for");
                if let Some(leave) = room.leave() {
                    self.outbox.send(leave);
                }
            }
        }
        let connected = inner.connected;
        for (k, new) in wanted {
            match inner.rooms.get_mut(&k) {
                Some(room) if room.settings.same_join(new) => room.settings = new.clone(),
                Some(room) => {
                    tracing::info!(room = %new.jid, "the room's entry changed: joining again");
                    if let Some(leave) = room.leave() {
                        self.outbox.send(leave);
                    }
                    *room = Room::new(new.clone(), connected);
                }
                None => {
                    inner.rooms.insert(k, Room::new(new.clone(), connected));
                }
            }
        }
    }

    /// Adds a room joined at run time (an invitation accepted, `POST /rooms`); it is joined within
    /// a second by the driver.
    pub fn add(&self, settings: RoomSettings) -> Added {
        let mut inner = self.lock();
        let k = key(settings.jid.as_str());
        if inner.configured.contains(&k) || inner.runtime.contains_key(&k) {
            return Added::Already;
        }
        let kept = settings.to_kept();
        inner.runtime.insert(k, settings);
        self.store.write_later(move |store| {
            if let Err(e) = store.keep_room(&kept) {
                tracing::error!(room = kept.jid, "cannot keep the room for the next start: {e:#}");
            }
        });
        Added::Joining
    }

    /// Removes a room joined at run time: the driver leaves it within a second.
    pub fn remove(&self, room: &str) -> Removed {
        let mut inner = self.lock();
        let k = key(room);
        if inner.configured.contains(&k) {
            return Removed::Configured;
        }
        match inner.runtime.remove(&k) {
            Some(settings) => {
                let jid = settings.jid.to_string();
                self.store.write_later(move |store| {
                    if let Err(e) = store.forget_room(&jid) {
                        tracing::error!(room = jid, "cannot forget the room: {e:#}; the next start joins it again");
                    }
                });
                Removed::Left
            }
            None => Removed::Unknown,
        }
    }

    /// Every room with where it comes from, for `GET /rooms`.
    pub fn list(&self) -> Vec<(RoomStatus, Source)> {
        let configured = self.lock().configured.clone();
        self.status()
            .into_iter()
            .map(|status| {
                let source = if configured.contains(&key(&status.jid)) { Source::Config } else { Source::Runtime };
                (status, source)
            })
            .collect()
    }

    /// A new connection is up: every room not kicked is joined again.
    pub fn connected(&self) {
        let mut inner = self.lock();
        inner.connected = true;
        let now = Instant::now();
        for room in inner.rooms.values_mut() {
            room.connected(now);
        }
    }

    pub fn disconnected(&self) {
        let mut inner = self.lock();
        inner.connected = false;
        for room in inner.rooms.values_mut() {
            room.disconnected();
        }
    }

    /// Sends the joins and self-pings that are due (a room quiet for `ping_interval` is asked
    /// whether the bot is still in it); returns when the next one may be.
    pub fn send_due(&self, ping_interval: Duration) -> Option<Instant> {
        let mut inner = self.lock();
        if !inner.connected {
            return None;
        }
        let now = Instant::now();
        let mut joins = Vec::new();
        let mut pings = Vec::new();
        for room in inner.rooms.values_mut() {
            if room.ping_timed_out(now) {
                tracing::warn!(room = %room.settings.jid, "the room did not answer a self-ping; joining again");
            }
            if room.join_due(now) {
                joins.push((room.settings.clone(), room.nick.clone()));
            } else if room.ping_due(now, ping_interval) {
                pings.push((room.settings.clone(), room.nick.clone()));
            }
        }
        for (settings, nick) in joins {
            let id = format!("{ID_PREFIX}join-{}", inner.next_id);
            inner.next_id += 1;
            tracing::debug!(room = %settings.jid, nick, "joining");
            let password = settings.password.as_ref().map(Secret::expose);
            self.outbox.send(muc::join(&settings.address, settings.jid.as_str(), &nick, password, &id));
        }
        for (settings, nick) in pings {
            let id = format!("{PING_PREFIX}{}", inner.next_id);
            inner.next_id += 1;
            self.outbox.send(muc::self_ping(&settings.address, settings.jid.as_str(), &nick, &id));
        }
        inner.rooms.values().filter_map(|room| room.next_wakeup(ping_interval)).min()
    }

    /// Leaves every joined room: at shutdown, so the rooms do not keep a ghost occupant.
    pub fn leave_all(&self) {
        let inner = self.lock();
        for leave in inner.rooms.values().filter_map(Room::leave) {
            self.outbox.send(leave);
        }
    }

    /// What `el` is to the rooms; the bot's own presences and answers change the room's state.
    pub fn intercept(&self, el: &Element) -> Intercept {
        let mut inner = self.lock();
        if inner.rooms.is_empty() {
            return Intercept::None;
        }
        let from = el.attr("from").unwrap_or("");
        let (room_jid, nick) = muc::split_occupant(from);
        let Some(room) = inner.rooms.get_mut(&key(room_jid)) else {
            return Intercept::None;
        };
        match Kind::of(el) {
            Some(Kind::Presence) => self.presence(room, el, nick),
            Some(Kind::Message) => message(room, el, nick),
            Some(Kind::Iq) if el.attr("id").is_some_and(|id| id.starts_with(PING_PREFIX)) => {
                let joined = muc::ping_says_joined(el);
                if joined {
                    tracing::debug!(room = %room.settings.jid, "a self-ping says the bot is in the room");
                } else {
                    let condition = muc::error_condition(el).unwrap_or_default();
                    tracing::warn!(room = %room.settings.jid, "a self-ping says the bot is not in the room ({condition}); joining again");
                }
                room.ping_answered(joined, "the room no longer counts the bot as an occupant".into(), Instant::now());
                Intercept::Consumed
            }
            Some(Kind::Iq) if el.attr("id").is_some_and(|id| id.starts_with(ID_PREFIX)) => {
                if muc::is_error(el) {
                    let condition = muc::error_condition(el).unwrap_or_else(|| "an error".into());
                    tracing::warn!(room = %room.settings.jid, "the room refused its default configuration: {condition}");
                }
                Intercept::Consumed
            }
            _ => Intercept::None,
        }
    }

    fn presence(&self, room: &mut Room, el: &Element, nick: Option<&str>) -> Intercept {
        let codes = muc::status_codes(el);
        // The bot's own occupant, or an error about its join from the room itself. ejabberd also
        // sends the room's own presence (from its bare address) to each occupant, and withdraws
        // it when the occupant leaves: that one says nothing about the bot.
        let own = match nick {
            Some(nick) => codes.contains(&110) || nick == room.nick,
            None => stanza::stanza_type(el) == Some("error"),
        };
        if !own {
            return if nick.is_none() { Intercept::Consumed } else { Intercept::None };
        }
        let jid = room.settings.jid.clone();
        match stanza::stanza_type(el) {
            Some("error") => {
                let condition = muc::error_condition(el).unwrap_or_else(|| "undefined-condition".into());
                let why = format!("{condition}: {}", muc::explain(&condition));
                tracing::warn!(room = %jid, nick = room.nick, "cannot join the room: {why}; trying again later");
                crate::metrics::metrics().room_join("failed");
                room.failed(why, Instant::now());
            }
            Some("unavailable") if codes.contains(&303) => {
                // A nick change: the next presence is the bot's under its new nick.
            }
            Some("unavailable") if codes.contains(&307) || codes.contains(&301) => {
                let what = if codes.contains(&301) { "banned from" } else { "kicked from" };
                let why = format!("{what} the room");
                tracing::warn!(room = %jid, nick = room.nick, "{why}; not joining again until its [[room]] entry changes");
                room.kicked(why);
            }
            Some("unavailable") => {
                let why =
                    if codes.contains(&332) { "the room's service shut down" } else { "the room removed the bot" };
                tracing::warn!(room = %jid, "{why}; joining again");
                room.lost(why.into(), Instant::now());
            }
            None if codes.contains(&110) || room.phase != Phase::Joined => {
                let nick = nick.unwrap_or(&room.nick).to_owned();
                if room.phase != Phase::Joined {
                    tracing::info!(room = %jid, nick, "joined the room");
                    crate::metrics::metrics().room_join("joined");
                }
                room.joined(&nick);
                if codes.contains(&201) {
                    // The join created the room: accept the default configuration, so that the
                    // room opens for others (an instant room, XEP-0045 §10.1.2).
                    let id = format!("{ID_PREFIX}instant");
                    self.outbox.send(muc::accept_default_configuration(&room.settings.address, jid.as_str(), &id));
                }
            }
            _ => {}
        }
        Intercept::Consumed
    }

    /// Whether `addr` (bare or full) is a room the bot is configured for: no stanza error may go
    /// there, since a room kicks an occupant that sends one (README: "Group chat").
    pub fn is_room_address(&self, addr: &str) -> bool {
        let (room, _) = muc::split_occupant(addr);
        self.lock().rooms.contains_key(&key(room))
    }

    /// The address the bot is an occupant of `room` as, while it is in the room.
    pub fn occupant_address(&self, room: &str) -> Option<String> {
        let inner = self.lock();
        let room = inner.rooms.get(&key(room))?;
        (room.phase == Phase::Joined).then(|| room.settings.address.clone())
    }

    /// Whether `room` may get another reply this minute (`limit` per minute, the README's "Group chat"); a reply
    /// allowed is counted.
    pub fn allow_reply(&self, room: &str, limit: usize) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        let sent = inner.replies.entry(key(room)).or_default();
        while sent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60)) {
            sent.pop_front();
        }
        if sent.len() >= limit {
            return false;
        }
        sent.push_back(now);
        true
    }

    /// Sets the `rooms` gauges from the rooms' states (at each scrape of `/metrics`).
    pub fn publish_metrics(&self) {
        let inner = self.lock();
        let count = |phase: Phase| inner.rooms.values().filter(|r| r.phase == phase).count() as i64;
        let counts = [Phase::Joining, Phase::Joined, Phase::Failed, Phase::Kicked].map(|p| (p.as_str(), count(p)));
        crate::metrics::metrics().rooms(&counts);
    }

    /// Every room's state, for `/healthz`.
    pub fn status(&self) -> Vec<RoomStatus> {
        self.lock()
            .rooms
            .values()
            .map(|r| RoomStatus {
                jid: r.settings.jid.to_string(),
                phase: r.phase,
                nick: r.nick.clone(),
                since: r.since,
                error: r.error.clone(),
            })
            .collect()
    }
}

/// A message from `room`: the bot's own reflection, history and subject changes are not
/// forwarded; with `forward = "mentions"`, only what mentions the bot is (README: "Group chat").
fn message(room: &mut Room, el: &Element, nick: Option<&str>) -> Intercept {
    let jid = room.settings.jid.as_str();
    match stanza::stanza_type(el) {
        Some("groupchat") => {
            let Some(nick) = nick else { return Intercept::Skip("a notice of the room itself") };
            if nick == room.nick {
                return Intercept::Skip("the bot's own message, reflected by the room");
            }
            if muc::is_history(el) {
                return Intercept::Skip("history");
            }
            if muc::is_subject_change(el) {
                return Intercept::Skip("a subject change");
            }
            let mentioned = muc::mentions(el, jid, &room.nick);
            if room.settings.forward == Forward::Mentions && !mentioned {
                return Intercept::Skip("it does not mention the bot");
            }
            Intercept::Room(Occupancy { room: jid.to_owned(), nick: nick.to_owned(), mentioned })
        }
        Some("error") => {
            if muc::error_condition(el).as_deref() == Some("not-acceptable") && room.phase == Phase::Joined {
                // The room no longer counts the bot as an occupant (a restart of its service).
                tracing::warn!(room = %jid, "the room says the bot is not an occupant; joining again");
                room.lost("the room lost the bot's occupant".into(), Instant::now());
            }
            Intercept::None
        }
        // A private message through the room is answered privately, as any chat.
        _ => match nick {
            Some(nick) => Intercept::Room(Occupancy {
                room: jid.to_owned(),
                nick: nick.to_owned(),
                mentioned: muc::mentions(el, jid, &room.nick),
            }),
            None => Intercept::None,
        },
    }
}
