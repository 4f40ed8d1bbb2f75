//! A stanza's way through stanzahook: forwarded kinds go to the webhook and its answer comes back
//! as replies; other kinds get the built-in answers. Every reply passes the same gate (never
//! answer errors or results, cap the size) before it reaches the outbox.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::minidom::Element;
use tracing::Instrument;

use crate::builtin;
use crate::deliveries::{Deliveries, Record, Redelivery, Status};
use crate::filter::{AfterOutcome, BeforeOutcome, Trail};
use crate::lanes::Lanes;
use crate::live::{Live, LiveCell};
use crate::payload;
use crate::rooms::{Intercept, Occupancy, Rooms};
use crate::stanza::{self, ErrorType, Kind, StanzaError};
use crate::way::Way;
use crate::webhook::Outcome;
use crate::xmpp::Outbox;

/// Everything a stanza's task needs; shared by all tasks.
#[derive(Debug)]
struct Shared {
    live: LiveCell,
    outbox: Outbox,
    rooms: Arc<Rooms>,
    deliveries: Arc<Deliveries>,
}

#[derive(Debug)]
pub struct Pipeline {
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    lanes: Arc<Lanes<Queued>>,
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace period is over: remaining webhook calls are abandoned.
    abandon: CancellationToken,
}

impl Pipeline {
    /// `max_in_flight` is read once: a reload cannot resize it (it reports a restart is needed).
    pub fn new(live: LiveCell, outbox: Outbox, rooms: Arc<Rooms>, deliveries: Arc<Deliveries>) -> Pipeline {
        let in_flight = Arc::new(Semaphore::new(live.load().config.webhook.max_in_flight));
        Pipeline {
            shared: Arc::new(Shared { live, outbox, rooms, deliveries }),
            in_flight,
            lanes: Arc::default(),
            tasks: TaskTracker::new(),
            abandon: CancellationToken::new(),
        }
    }

    /// Handles stanzas (and the kept ones redelivered, README: "Deliveries") until `stop` is
    /// cancelled or the connection ends, then lets in-flight webhook calls finish for the
    /// configured grace period and sends their replies.
    pub async fn run(
        self,
        mut incoming: mpsc::Receiver<Element>,
        mut redeliveries: mpsc::Receiver<Redelivery>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                next = incoming.recv() => match next {
                    Some(el) => self.dispatch(el, None).await,
                    None => break,
                },
                Some(again) = redeliveries.recv() => self.dispatch(again.el, Some((again.id, again.of))).await,
            }
        }
        // Stanzas already read from the server are in flight for their senders, and redeliveries
        // asked for are marked as such: handle them too (what the grace period cuts short is
        // recorded as failed, and kept).
        incoming.close();
        while let Some(el) = incoming.recv().await {
            self.dispatch(el, None).await;
        }
        redeliveries.close();
        while let Some(again) = redeliveries.recv().await {
            self.dispatch(again.el, Some((again.id, again.of))).await;
        }
        self.tasks.close();
        let grace = self.shared.live.load().config.shutdown_grace;
        if !self.tasks.is_empty() {
            tracing::info!("waiting up to {} s for the stanzas of {} senders", grace.as_secs(), self.tasks.len());
        }
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("shutdown grace period over: abandoning the stanzas of {} senders", self.tasks.len());
            self.abandon.cancel();
            self.tasks.wait().await;
        }
    }

    /// Queues the stanza in its sender's lane; the lane's task handles it after the sender's
    /// earlier stanzas (README: "The request"). `redelivery`: the new delivery's id and the
    /// one it redelivers.
    async fn dispatch(&self, el: Element, redelivery: Option<(u64, u64)>) {
        let Some(kind) = Kind::of(&el) else { return };
        crate::metrics::metrics().stanza_received(kind.as_str());
        let from = el.attr("from").unwrap_or("");
        if stanza::is_at_domain(from, &self.shared.live.load().config.domain) {
            // Only stanzahook itself sends from its domain (its keepalive echo is handled by the
            // connection): answering this would start a loop (README: "When something goes wrong").
            tracing::warn!(from, kind = kind.as_str(), "not handled: it comes from this component's own domain");
            return;
        }
        // The rooms see a stanza in arrival order: their state follows the room's presences.
        let occupancy = match self.shared.rooms.intercept(&el) {
            Intercept::Consumed => return,
            Intercept::Skip(why) => {
                tracing::debug!(from, "room message not forwarded: {why}");
                return;
            }
            Intercept::Room(occupancy) => Some(occupancy),
            Intercept::None => None,
        };
        if kind == Kind::Message
            && let Some(invite) = crate::rooms::muc::invite(&el)
        {
            self.shared.accept_invite(&el, invite);
        }
        // Backpressure: when this many stanzas wait or run, stop reading from the server. The
        // permit travels with the stanza, so a chatty sender's queue is bounded too.
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else { return };
        let sender = el.attr("from").unwrap_or("").to_owned();
        let queued =
            Queued { el, occupancy, redelivery, _permit: permit, _counted: crate::metrics::metrics().in_flight() };
        let Some(first) = self.lanes.enter(&sender, queued) else { return };
        let shared = self.shared.clone();
        let lanes = self.lanes.clone();
        let abandon = self.abandon.clone();
        self.tasks.spawn(async move {
            let mut next = Some(first);
            while let Some(queued) = next {
                let span = stanza_span(&queued.el);
                shared.handle(&queued, &abandon).instrument(span).await;
                drop(queued);
                next = lanes.next(&sender);
            }
        });
    }
}

/// Where the filters and the webhook leave a stanza.
enum Decided {
    /// The webhook's outcome, or a filter's answer, as the `after` hooks left it.
    Outcome(Outcome),
    Dropped(String),
    Rejected(String),
}

/// A stanza waiting in its sender's lane, holding its place in `webhook.max_in_flight`.
#[derive(Debug)]
struct Queued {
    el: Element,
    /// For a message from a room's occupant: what its event says about the room.
    occupancy: Option<Occupancy>,
    redelivery: Option<(u64, u64)>,
    _permit: OwnedSemaphorePermit,
    _counted: crate::metrics::InFlight,
}

/// One span per stanza: every log line about it names its sender, kind and id.
fn stanza_span(el: &Element) -> tracing::Span {
    tracing::info_span!(
        "stanza",
        from = el.attr("from").unwrap_or(""),
        kind = el.name(),
        id = el.attr("id").unwrap_or(""),
    )
}

impl Shared {
    /// With `accept_invites`, joins the room an invitation names, as the address invited; the
    /// invitation is still forwarded (README: "Group chat").
    fn accept_invite(&self, el: &Element, invite: crate::rooms::muc::Invite) {
        let live = self.live.load();
        if !live.config.accept_invites {
            return;
        }
        let invited = el.attr("to").unwrap_or(&live.config.domain);
        let address = stanza::bare(invited);
        match crate::rooms::RoomSettings::invited(&invite, address, &live.config) {
            Ok(settings) => {
                let room = settings.jid.to_string();
                if self.rooms.add(settings) == crate::rooms::Added::Joining {
                    tracing::info!(room, by = invite.from, "invited: joining the room");
                }
            }
            Err(why) => tracing::warn!(room = invite.room, by = invite.from, "invitation not accepted: {why}"),
        }
    }

    /// Answers one stanza with the snapshot current when its handling starts.
    async fn handle(&self, queued: &Queued, abandon: &CancellationToken) {
        let live = self.live.load_full();
        let handling = Handling { live: &live, outbox: &self.outbox, rooms: &self.rooms, deliveries: &self.deliveries };
        handling.handle(&queued.el, queued.occupancy.as_ref(), queued.redelivery, abandon).await;
    }
}

/// One stanza's handling: everything it uses comes from one snapshot, so a reload in the middle
/// (README: "Reloading while serving") cannot give its `after` hooks another chain than its `before` hooks.
struct Handling<'a> {
    live: &'a Live,
    outbox: &'a Outbox,
    rooms: &'a Rooms,
    deliveries: &'a Deliveries,
}

impl Handling<'_> {
    /// Answers one stanza: built-in for kinds not forwarded, through the webhook otherwise (a
    /// delivery, which the log records).
    async fn handle(
        &self,
        el: &Element,
        occupancy: Option<&Occupancy>,
        redelivery: Option<(u64, u64)>,
        abandon: &CancellationToken,
    ) {
        let Some(kind) = Kind::of(el) else { return };
        let mut way = Way::start();
        if !self.live.config.forwards(kind) {
            let replies = match kind {
                Kind::Presence => builtin::presence(el),
                Kind::Iq => builtin::iq(el, &self.live.config.identity),
                Kind::Message => Vec::new(),
            };
            way.note("answered built-in");
            self.send_replies(el, replies, way);
            return;
        }
        let mut record = self.deliveries.begin(self.live.config.deliveries.keep_bodies, redelivery);
        let abandoned = tokio::select! {
            _ = self.forward(el, occupancy, &mut way, &mut record) => false,
            _ = abandon.cancelled() => true,
        };
        if abandoned {
            tracing::error!("abandoned at shutdown: the webhook did not answer within the grace period");
            // Kept as failed: with a state directory, the next start can redeliver it.
            record.failed(|| "abandoned at shutdown: the webhook did not answer within shutdown_grace".into());
            if let Some(delivery) = record.finish(el, Some(Status::Failed), &[]) {
                self.deliveries.record(delivery);
            }
        } else {
            way.end();
        }
    }

    /// Filters before → webhook → filters after → replies (README: "Filters"), with the
    /// courtesy of a receipt and of `composing` while it takes long.
    async fn forward(&self, el: &Element, occupancy: Option<&Occupancy>, way: &mut Way, record: &mut Record) {
        let courtesy = &self.live.config.courtesy;
        let work = self.decide(el, occupancy, way, record);
        let (decided, typing) = crate::courtesy::typing_while(courtesy, el, work, |composing| {
            // Through the gate like any reply (a chat message is answerable: only those type).
            if let Some(composing) = self.gated(el, composing) {
                self.outbox.send(composing);
            }
        })
        .await;
        if typing {
            way.note(&format!("composing shown after {} ms", courtesy.typing_after.as_millis()));
        }
        let mut replies = Vec::new();
        let status = match decided {
            Decided::Outcome(outcome) => {
                if matches!(outcome, Outcome::Answer(_) | Outcome::NoReply { .. })
                    && let Some(receipt) = crate::courtesy::receipt(courtesy, el)
                {
                    replies.push(receipt);
                }
                replies.extend(self.replies_for(el, outcome, record));
                None
            }
            Decided::Dropped(filter) => {
                replies.extend(self.dropped(el, &filter, way));
                Some(Status::Dropped)
            }
            Decided::Rejected(filter) => {
                replies.push(self.rejected(el, &filter, way));
                Some(Status::Rejected)
            }
        };
        if typing {
            crate::courtesy::end_typing(el, &mut replies);
        }
        // The replies are copied into the record only when it keeps bodies.
        let delivery = std::mem::replace(record, Record::off()).finish(el, status, &replies);
        self.send(el, replies, way);
        if let Some(delivery) = delivery {
            self.deliveries.record(delivery);
        }
    }

    /// What the filters and the webhook make of a stanza.
    async fn decide(&self, el: &Element, occupancy: Option<&Occupancy>, way: &mut Way, record: &mut Record) -> Decided {
        let (body, identified) = payload::event(el, occupancy).into_parts();
        let identified = identified.as_deref();
        let (outcome, status, trail) = if self.live.filters.is_empty() {
            let posted = self.post(identified, body, way, record).await;
            let status = posted.outcome.status();
            (posted.outcome, status, Trail::default())
        } else {
            let (before, verdicts) = self.live.filters.before(body).await;
            way.verdicts(&verdicts);
            record.verdicts(&verdicts);
            match before {
                BeforeOutcome::Post { event: body, trail } => {
                    let posted = self.post(identified, body, way, record).await;
                    let status = posted.outcome.status();
                    (posted.outcome, status, trail)
                }
                // No HTTP call was made: the `after` hooks see status 0.
                BeforeOutcome::Answer { reply, trail } => (Outcome::Answer(reply), 0, trail),
                BeforeOutcome::Drop { filter } => return Decided::Dropped(filter),
                BeforeOutcome::Reject { filter } => return Decided::Rejected(filter),
            }
        };
        if trail.is_empty() {
            return Decided::Outcome(outcome);
        }
        let reply = match &outcome {
            Outcome::Answer(reply) => Some(reply.to_string()),
            _ => None,
        };
        let (after, verdicts) = self.live.filters.after(trail, status, reply).await;
        way.verdicts(&verdicts);
        record.verdicts(&verdicts);
        match after {
            AfterOutcome::Keep => Decided::Outcome(outcome),
            AfterOutcome::Replace(reply) => Decided::Outcome(Outcome::Answer(reply)),
            AfterOutcome::Drop { filter } => Decided::Dropped(filter),
            AfterOutcome::Reject { filter } => Decided::Rejected(filter),
        }
    }

    /// The webhook call, told to the way and the record. `identified`: the stanza's XML if it has an `id`.
    async fn post(
        &self,
        identified: Option<&str>,
        body: String,
        way: &mut Way,
        record: &mut Record,
    ) -> crate::webhook::Posted {
        if record.keeps_bodies() {
            record.posting(body.clone());
        }
        let posted = self.live.webhook.post(identified, body).await;
        way.posted(&posted);
        record.posted(&posted);
        posted
    }

    fn replies_for(&self, el: &Element, outcome: Outcome, record: &mut Record) -> Vec<Element> {
        match outcome {
            Outcome::Answer(answer) => match payload::replies(&answer, el, &self.live.config.domain) {
                Ok(replies) => replies,
                Err(e) => {
                    tracing::warn!("answer refused: {e}");
                    record.failed(|| format!("answer refused: {e}"));
                    vec![stanza::error_reply(el, &e.to_stanza_error())]
                }
            },
            Outcome::NoReply { status } => {
                tracing::debug!("webhook answered {status} without a reply");
                if stanza::is_iq_request(el) { vec![payload::empty_result(el)] } else { Vec::new() }
            }
            Outcome::Failed { error, detail, .. } => {
                tracing::warn!("{detail}; answering {error}");
                vec![stanza::error_reply(el, &error)]
            }
        }
    }

    /// A filter dropped the stanza: nothing is sent, except that an iq request still gets its
    /// one answer (RFC 6120 §8.2.3), a refusal.
    fn dropped(&self, el: &Element, filter: &str, way: &mut Way) -> Option<Element> {
        tracing::debug!(filter, "dropped by a filter");
        way.note(&format!("dropped by {filter}"));
        stanza::is_iq_request(el)
            .then(|| stanza::error_reply(el, &StanzaError::new(ErrorType::Cancel, "service-unavailable")))
    }

    /// A filter failed with `on_error = "reject"` (README: "Filters").
    fn rejected(&self, el: &Element, filter: &str, way: &mut Way) -> Element {
        tracing::warn!(filter, "answering internal-server-error: the filter failed and rejects on error");
        way.note(&format!("rejected: {filter} failed"));
        stanza::error_reply(el, &StanzaError::new(ErrorType::Cancel, "internal-server-error"))
    }

    /// Sends `replies` and ends the stanza's way.
    fn send_replies(&self, original: &Element, replies: Vec<Element>, mut way: Way) {
        self.send(original, replies, &mut way);
        way.end();
    }

    /// The one gate every reply passes (README: "The JSON contract", "When something goes wrong", "The answer", "Group
    /// chat").
    fn send(&self, original: &Element, replies: Vec<Element>, way: &mut Way) {
        if stanza::is_unanswerable(original) {
            if !replies.is_empty() {
                tracing::debug!("not answering a stanza of type {:?}", original.attr("type").unwrap_or(""));
                way.note("not answered: a stanza of type error or result");
            }
            return;
        }
        for reply in replies {
            if let Some(reply) = self.gated(original, reply) {
                way.sending(&reply);
                self.outbox.send(reply);
            }
        }
    }

    /// One reply through the gate's checks: what may leave in its place, if anything. The
    /// caller has checked that `original` may be answered at all.
    fn gated(&self, original: &Element, reply: Element) -> Option<Element> {
        let reply = self.fit_for_rooms(original, reply)?;
        let max = self.live.config.connection.max_stanza_bytes;
        let size = stanza::xml_len(&reply);
        if size > max {
            tracing::warn!("reply of {size} bytes exceeds connection.max_stanza_size ({max}); not sent");
            let error = StanzaError::new(ErrorType::Cancel, "undefined-condition")
                .with_text(format!("The bot's reply was too large ({size} bytes, at most {max})"));
            return Some(stanza::error_reply(original, &error));
        }
        Some(reply)
    }

    /// A room kicks an occupant that sends it a stanza error, to the room or to an occupant:
    /// such an error is withheld, and with `room_error_text` a plain message goes in its place.
    /// Replies to a room beyond `room_reply_limit` a minute are dropped.
    fn fit_for_rooms(&self, original: &Element, reply: Element) -> Option<Element> {
        let to = reply.attr("to").unwrap_or("");
        if !self.rooms.is_room_address(to) {
            return Some(reply);
        }
        let config = &self.live.config;
        if reply.attr("type") == Some("error") {
            crate::metrics::metrics().room_withheld("error");
            let condition = crate::rooms::muc::error_condition(&reply).unwrap_or_default();
            tracing::warn!(to, "not sending the stanza error {condition} into the room (a room kicks for it)");
            // In place of a failed answer to a message only (an iq wants an iq, not a chat line).
            let text = config.room_error_text.as_deref().filter(|_| original.name() == "message")?;
            let from = original.attr("to").unwrap_or(&config.domain);
            let sender = original.attr("from").unwrap_or("");
            let (to, kind) = match original.attr("type") {
                Some("groupchat") => (stanza::bare(sender), "groupchat"),
                _ => (sender, "chat"),
            };
            let mut plain = stanza::new_stanza(Kind::Message, from, to);
            stanza::set_attr(&mut plain, "type", kind);
            plain.append_child(Element::builder("body", stanza::NS_COMPONENT).append(text).build());
            return self.fit_for_rooms(original, plain);
        }
        if reply.attr("type") == Some("groupchat") && !self.rooms.allow_reply(to, config.room_reply_limit) {
            crate::metrics::metrics().room_withheld("limit");
            tracing::warn!(
                room = to,
                "reply dropped: the room had {} replies this minute (room_reply_limit)",
                config.room_reply_limit
            );
            return None;
        }
        Some(reply)
    }
}
