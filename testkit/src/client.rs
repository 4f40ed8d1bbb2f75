//! A real XMPP client (tokio-xmpp over plaintext TCP to the test Prosody) that sends stanzas
//! written as XML and hands back what it receives as XML elements.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use xmpp_client::connect::DnsConfig;
use xmpp_client::minidom::Element;
use xmpp_client::xmlstream::Timeouts;
use xmpp_client::{Client, Event, Stanza};

use crate::muc;

const NS_CLIENT: &str = "jabber:client";
/// How long the group chat helpers wait for a room's answer.
const ROOM_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct XmppClient {
    client: Client,
    /// The full JID the server bound.
    pub jid: String,
    /// For the ids of the iqs the client asks with.
    next_id: u64,
    /// Stanzas a group chat helper received while it waited for its answer, handed out first.
    pending: VecDeque<Element>,
    /// Whether typing notifications (a message with a chat state and no body) reach the test.
    /// Off: like a person's client, which shows them as an indicator, not as messages, so a test
    /// of something else is not told the bot was typing while its webhook was slow.
    pub sees_typing: bool,
}

/// A room joined (`XmppClient::join_room`).
#[derive(Debug)]
pub struct Joined {
    /// The room's presence about the client itself (status 110), which completed the join.
    pub presence: Element,
    /// Whether the join created the room (status 201).
    pub created: bool,
    /// The other occupants' presences, which the room sends before the client's own.
    pub occupants: Vec<Element>,
}

impl XmppClient {
    /// Logs in as `user@localhost` and announces availability.
    pub async fn login(c2s_port: u16, user: &str, password: &str) -> anyhow::Result<XmppClient> {
        let bare = format!("{user}@{}", crate::CLIENT_DOMAIN);
        let jid = xmpp_client::jid::BareJid::new(&bare)?;
        let mut client =
            Client::new_plaintext(jid, password, DnsConfig::addr(&format!("127.0.0.1:{c2s_port}")), Timeouts::tight());
        let bound = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = client.next().await {
                match event {
                    Event::Online { bound_jid, .. } => return Ok(bound_jid.to_string()),
                    Event::Disconnected(e) => return Err(anyhow!("login failed: {e}")),
                    Event::Stanza(_) => {}
                }
            }
            Err(anyhow!("client stream ended during login"))
        })
        .await
        .context("login timed out")??;
        let mut me = XmppClient { client, jid: bound, next_id: 0, pending: VecDeque::new(), sees_typing: false };
        me.send("<presence/>").await?;
        // The server reflects the initial presence back; wait for it so it is not mistaken later.
        let own = me.jid.clone();
        me.expect(Duration::from_secs(10), "own presence", |el| {
            el.name() == "presence" && el.attr("from") == Some(&own)
        })
        .await?;
        Ok(me)
    }

    /// Sends a stanza written as XML (in the client namespace unless it says otherwise).
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        let el = parse_client_xml(xml)?;
        let stanza = Stanza::try_from(el).map_err(|e| anyhow!("not a stanza the client can send: {e:?}"))?;
        self.client.send_stanza(stanza).await?;
        Ok(())
    }

    /// The next stanza received within `within`, or `None`; roster pushes and the server's
    /// reflections of our own presence are skipped.
    pub async fn recv(&mut self, within: Duration) -> anyhow::Result<Option<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) if self.is_noise(&el) => continue,
                other => return Ok(other),
            }
        }
    }

    fn is_noise(&self, el: &Element) -> bool {
        is_roster_push(el) || (el.name() == "presence" && el.attr("from") == Some(self.jid.as_str())) || self.hides(el)
    }

    /// A typing notification the test does not want to see (`sees_typing`).
    fn hides(&self, el: &Element) -> bool {
        !self.sees_typing
            && el.name() == "message"
            && body(el).is_none()
            && el.children().next().is_some()
            && el.children().all(|c| c.ns() == "http://jabber.org/protocol/chatstates")
    }

    /// The next stanza received within `within`, whatever it is.
    pub async fn recv_any(&mut self, within: Duration) -> anyhow::Result<Option<Element>> {
        if let Some(el) = self.pending.pop_front() {
            return Ok(Some(el));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.client.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("client stream ended"),
                Ok(Some(event)) => event,
            };
            match event {
                Event::Stanza(stanza) => return Ok(Some(Element::from(stanza))),
                Event::Disconnected(e) => bail!("client disconnected: {e}"),
                Event::Online { .. } => {}
            }
        }
    }

    /// The next stanza matching `pred` within `within` (roster pushes included); the others are
    /// returned too, less roster pushes and presence reflections, so a test can assert that
    /// nothing unexpected arrived.
    pub async fn expect(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<(Element, Vec<Element>)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) if self.hides(&el) => {}
                Some(el) if pred(&el) => return Ok((el, others)),
                Some(el) if self.is_noise(&el) => {}
                Some(el) => others.push(el),
                None => bail!(
                    "no {what} within {} ms; received instead: {:?}",
                    within.as_millis(),
                    others.iter().map(String::from).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything received within `within`.
    pub async fn drain(&mut self, within: Duration) -> anyhow::Result<Vec<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Some(el) => all.push(el),
                None => return Ok(all),
            }
        }
    }

    /// Joins `room` (its bare JID) as `nick`, with `password` if given, asking for no history.
    /// Waits for the room's answer: `Ok(Ok(_))` once its self-presence (status 110) has come,
    /// `Ok(Err(presence))` with the error presence of a refusal (wrong password, members only,
    /// locked). A room this join created (status 201) stays locked: see `join_room`.
    pub async fn try_join_room(
        &mut self,
        room: &str,
        nick: &str,
        password: Option<&str>,
    ) -> anyhow::Result<Result<Joined, Element>> {
        self.send(&muc::join(&format!("{room}/{nick}"), password)).await?;
        let what = format!("the answer of {room} to joining as {nick}");
        let mut occupants = Vec::new();
        let answer = loop {
            let el = self
                .wait_for(&what, |el| el.name() == "presence" && el.attr("from").is_some_and(|from| bare(from) == room))
                .await?;
            if el.attr("type") == Some("error") || muc::status_codes(&el).contains(&muc::status::SELF) {
                break el;
            }
            // ejabberd also sends the room's own presence (its bare JID, entity caps).
            if el.attr("from") != Some(room) {
                occupants.push(el);
            }
        };
        if answer.attr("type") == Some("error") {
            return Ok(Err(answer));
        }
        let created = muc::status_codes(&answer).contains(&muc::status::CREATED);
        Ok(Ok(Joined { presence: answer, created, occupants }))
    }

    /// Joins `room` as `try_join_room` does, a refusal being an error; when the join created the
    /// room, accepts its default configuration (an instant room) so that others can enter.
    pub async fn join_room(&mut self, room: &str, nick: &str, password: Option<&str>) -> anyhow::Result<Joined> {
        let joined = match self.try_join_room(room, nick, password).await? {
            Ok(joined) => joined,
            Err(refusal) => {
                bail!("{room} refused {nick}: {:?} in {}", error_of(&refusal), String::from(&refusal))
            }
        };
        if joined.created {
            self.iq("instant room", |id| muc::instant_room(room, id)).await?;
        }
        Ok(joined)
    }

    /// Sends a message of type `groupchat` with `body` to `room`.
    pub async fn send_groupchat(&mut self, room: &str, body: &str) -> anyhow::Result<()> {
        self.send(&muc::groupchat(room, body)).await
    }

    /// Changes `room`'s configuration as its owner (password, members only; see
    /// `muc::RoomConfig`).
    pub async fn configure_room(&mut self, room: &str, config: &muc::RoomConfig) -> anyhow::Result<()> {
        self.iq("room configuration", |id| muc::configure(room, id, config)).await.map(drop)
    }

    /// Kicks the occupant `nick` out of `room` as a moderator (its role set to `none`).
    pub async fn kick(&mut self, room: &str, nick: &str, reason: Option<&str>) -> anyhow::Result<()> {
        self.iq(&format!("kick of {nick}"), |id| muc::kick(room, id, nick, reason)).await.map(drop)
    }

    /// Destroys `room` as its owner.
    pub async fn destroy_room(&mut self, room: &str, reason: Option<&str>) -> anyhow::Result<()> {
        self.iq(&format!("destruction of {room}"), |id| muc::destroy(room, id, reason)).await.map(drop)
    }

    /// Leaves `room`, where the client is `nick`; returns the room's last self-presence (type
    /// `unavailable`, status 110).
    pub async fn leave_room(&mut self, room: &str, nick: &str) -> anyhow::Result<Element> {
        let occupant = format!("{room}/{nick}");
        self.send(&muc::leave(&occupant)).await?;
        self.wait_for(&format!("the end of {occupant}"), |el| {
            muc::is_self_presence(el, &occupant) && el.attr("type") == Some("unavailable")
        })
        .await
    }

    /// Sends the iq `build` writes for a fresh id and waits for its answer: the result, or an
    /// error naming the condition of an error answer.
    pub async fn iq(&mut self, what: &str, build: impl FnOnce(&str) -> String) -> anyhow::Result<Element> {
        self.next_id += 1;
        let id = format!("testkit-{}", self.next_id);
        self.send(&build(&id)).await?;
        let answer = self
            .wait_for(&format!("answer to the {what}"), |el| el.name() == "iq" && el.attr("id") == Some(id.as_str()))
            .await?;
        match answer.attr("type") {
            Some("result") => Ok(answer),
            _ => bail!("the {what} failed: {:?} in {}", error_of(&answer), String::from(&answer)),
        }
    }

    /// The next stanza matching `pred` within `ROOM_WAIT`; the others stay to be received
    /// (less roster pushes and presence reflections), so that a helper swallows nothing.
    async fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Element) -> bool) -> anyhow::Result<Element> {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        let mut others = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await {
                Ok(Some(el)) if pred(&el) => break Ok(el),
                Ok(Some(el)) if self.is_noise(&el) => {}
                Ok(Some(el)) => others.push(el),
                Ok(None) => break Err(anyhow!("no {what} within {} ms", ROOM_WAIT.as_millis())),
                Err(e) => break Err(e),
            }
        };
        let seen: Vec<String> = others.iter().map(String::from).collect();
        for el in others.into_iter().rev() {
            self.pending.push_front(el);
        }
        found.map_err(|e| anyhow!("{e}; received instead: {seen:?}"))
    }
}

/// The bare part of `jid`.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

fn parse_client_xml(xml: &str) -> anyhow::Result<Element> {
    let wrapped = format!("<wrapper xmlns='{NS_CLIENT}'>{xml}</wrapper>");
    let wrapper: Element = wrapped.parse().with_context(|| format!("bad test XML: {xml}"))?;
    wrapper.children().next().cloned().ok_or_else(|| anyhow!("no element in: {xml}"))
}

/// Prosody pushes roster changes to the client after a subscription.
pub fn is_roster_push(el: &Element) -> bool {
    el.name() == "iq" && el.children().any(|c| c.ns() == "jabber:iq:roster")
}

/// The text of the `<body/>` of a received message (from a client's or a component's stream).
pub fn body(el: &Element) -> Option<String> {
    el.get_child("body", el.ns().as_str()).map(Element::text)
}

/// The defined condition and type of a received stanza error, e.g. ("item-not-found", "cancel").
pub fn error_of(el: &Element) -> Option<(String, String)> {
    let error = el.get_child("error", el.ns().as_str())?;
    let condition = error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")?
        .name()
        .to_owned();
    Some((condition, error.attr("type").unwrap_or("").to_owned()))
}

/// The text of a received stanza error, if any.
pub fn error_text(el: &Element) -> Option<String> {
    el.get_child("error", el.ns().as_str())?.get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas").map(Element::text)
}
