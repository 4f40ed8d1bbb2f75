//! Group chat (XEP-0045) on the real servers, before stanzahook takes part: the test kit's room
//! helpers work on both, and what each server does with a component as a room occupant, the
//! facts the README's "Group chat" is designed on. The component here is the test itself (`ComponentClient`).

use std::time::Duration;

use testkit::client::{body, error_of};
use testkit::muc::{self, RoomConfig, status};
use testkit::{ComponentClient, Element, ServerSetup, TestServer, XmppClient};

use crate::harness::{DOMAIN, QUIET, SECRET, Server, WAIT, on_each_server};

const MUC: &str = "rooms.localhost";
/// An address on the component's domain other than the domain itself.
const USER_ON_DOMAIN: &str = "someone@bot.localhost";

fn setup() -> ServerSetup {
    ServerSetup::default().component(DOMAIN, SECRET).user("alice", "alicepw").user("bob", "bobpw").muc(MUC)
}

fn room(name: &str) -> String {
    format!("{name}@{MUC}")
}

async fn login(server: &dyn TestServer, user: &str) -> XmppClient {
    match XmppClient::login(server.c2s_port(), user, &format!("{user}pw")).await {
        Ok(client) => client,
        Err(e) => panic!("{user} cannot log in: {e:#}\n{} log:\n{}", server.name(), server.log()),
    }
}

async fn component(server: &dyn TestServer) -> ComponentClient {
    match ComponentClient::connect(&server.component_addr(), DOMAIN, SECRET).await {
        Ok(client) => client,
        Err(e) => panic!("the component cannot connect: {e:#}\n{} log:\n{}", server.name(), server.log()),
    }
}

fn xml(els: &[Element]) -> Vec<String> {
    els.iter().map(String::from).collect()
}

/// The status codes of a room's stanza, sorted.
fn codes(el: &Element) -> Vec<u16> {
    let mut codes = muc::status_codes(el);
    codes.sort_unstable();
    codes
}

/// Whether `el` is a message of type `error`.
fn is_error_message(el: &Element) -> bool {
    el.name() == "message" && el.attr("type") == Some("error")
}

/// The component joins `occupant` (`room@service/nick`) from its address `from`; returns the
/// room's self-presence. The join ends with the room's subject, which both servers send after
/// the self-presence; what came before it is returned too (ejabberd: the room's own presence).
async fn bot_joins(bot: &mut ComponentClient, from: &str, occupant: &str) -> (Element, Vec<Element>) {
    bot.send_from(from, &muc::join(occupant, None)).await.expect("send");
    let (me, before) = bot
        .expect(WAIT, &format!("self-presence of {occupant}"), |el| muc::is_self_presence(el, occupant))
        .await
        .expect("the component joins");
    assert_eq!(me.attr("to"), Some(from), "the room answers the address that joined");
    let room = testkit::client::bare(occupant);
    bot.expect(WAIT, "the subject", |el| {
        muc::is_subject(el) && el.attr("from") == Some(room) && el.attr("to") == Some(from)
    })
    .await
    .expect("the subject ends the join");
    (me, before)
}

/// The room's own presence (its bare JID, with entity caps) that ejabberd sends an occupant
/// before the self-presence, and withdraws (type `unavailable`) when the occupant is out.
fn is_room_presence(el: &Element, room: &str) -> bool {
    el.name() == "presence" && el.attr("from") == Some(room)
}

/// The `<status/>` text of a presence.
fn status_text(el: &Element) -> String {
    el.get_child("status", el.ns().as_str()).map(Element::text).unwrap_or_default()
}

on_each_server!(clients_chat_on, clients_chat_in_a_room, clients_chat_in_a_room_on_ejabberd);

/// Two clients in one room hear each other, and a join with `maxstanzas='0'` gets no history.
async fn clients_chat_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    assert_eq!(server.muc_domain(), Some(MUC));
    let mut alice = login(&*server, "alice").await;
    let mut bob = login(&*server, "bob").await;
    let lobby = room("lobby");

    let joined = alice.join_room(&lobby, "alice", None).await.expect("alice joins");
    assert!(joined.created, "alice's join created the room: {}", String::from(&joined.presence));
    assert!(joined.occupants.is_empty(), "{:?}", xml(&joined.occupants));
    alice.send_groupchat(&lobby, "before bob").await.expect("send");
    let (copy, _) = alice.expect(WAIT, "the room's copy", muc::is_groupchat_body).await.expect("copy");
    assert_eq!(copy.attr("from"), Some(format!("{lobby}/alice").as_str()));

    let joined = bob.join_room(&lobby, "bob", None).await.expect("bob joins");
    assert!(!joined.created);
    let others: Vec<_> = joined.occupants.iter().filter_map(|p| p.attr("from")).collect();
    assert_eq!(others, [format!("{lobby}/alice")], "bob sees alice in the room");
    // maxstanzas='0': no history; the subject is all that follows the self-presence.
    let after = bob.drain(QUIET).await.expect("bob ok");
    assert!(after.iter().all(|el| !muc::is_groupchat_body(el)), "no history for bob: {:?}", xml(&after));
    alice
        .expect(WAIT, "bob's arrival", |el| muc::is_presence_from(el, &format!("{lobby}/bob")))
        .await
        .expect("alice sees bob arrive");

    alice.send_groupchat(&lobby, "hello bob").await.expect("send");
    let (heard, _) = bob.expect(WAIT, "alice's message", muc::is_groupchat_body).await.expect("bob hears alice");
    assert_eq!(heard.attr("from"), Some(format!("{lobby}/alice").as_str()));
    assert_eq!(body(&heard).as_deref(), Some("hello bob"));
    bob.send_groupchat(&lobby, "hi alice").await.expect("send");
    let (heard, _) = alice
        .expect(WAIT, "bob's message", |el| muc::is_groupchat_body(el) && body(el).as_deref() == Some("hi alice"))
        .await
        .expect("alice hears bob");
    assert_eq!(heard.attr("from"), Some(format!("{lobby}/bob").as_str()));

    // The history is there for a join that does not decline it, so bob's empty one was the
    // maxstanzas' doing.
    let mut alice2 = login(&*server, "alice").await;
    alice2.send(&format!("<presence to='{lobby}/alice2'><x xmlns='{}'/></presence>", muc::NS_MUC)).await.expect("send");
    let (old, _) = alice2
        .expect(WAIT, "history", |el| muc::is_groupchat_body(el) && body(el).as_deref() == Some("before bob"))
        .await
        .expect("history without maxstanzas");
    assert!(old.has_child("delay", "urn:xmpp:delay"), "history is delayed: {}", String::from(&old));

    let gone = bob.leave_room(&lobby, "bob").await.expect("bob leaves");
    assert!(codes(&gone).contains(&status::SELF));
    alice
        .expect(WAIT, "bob's departure", |el| {
            muc::is_presence_from(el, &format!("{lobby}/bob")) && el.attr("type") == Some("unavailable")
        })
        .await
        .expect("alice sees bob leave");
}

on_each_server!(
    owner_settings_on,
    owner_password_members_only_and_kick,
    owner_password_members_only_and_kick_on_ejabberd
);

/// The owner's helpers: a password-protected room, a members-only one, a kick.
async fn owner_settings_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    let mut alice = login(&*server, "alice").await;
    let mut bob = login(&*server, "bob").await;

    let vault = room("vault");
    assert!(alice.join_room(&vault, "alice", None).await.expect("alice joins").created);
    let config = RoomConfig { password: Some("sesame".into()), members_only: false };
    alice.configure_room(&vault, &config).await.expect("password set");
    let refused = bob.try_join_room(&vault, "bob", None).await.expect("answer").expect_err("no password, no entry");
    assert_eq!(error_of(&refused), Some(("not-authorized".into(), "auth".into())), "{}", String::from(&refused));
    let refused =
        bob.try_join_room(&vault, "bob", Some("wrong")).await.expect("answer").expect_err("wrong password, no entry");
    assert_eq!(error_of(&refused), Some(("not-authorized".into(), "auth".into())), "{}", String::from(&refused));
    bob.join_room(&vault, "bob", Some("sesame")).await.expect("bob joins with the password");

    alice.kick(&vault, "bob", Some("out")).await.expect("kick");
    let (kicked, _) = bob
        .expect(WAIT, "bob's kick", |el| muc::is_self_presence(el, &format!("{vault}/bob")))
        .await
        .expect("bob is told");
    assert_eq!(kicked.attr("type"), Some("unavailable"));
    assert!(codes(&kicked).contains(&status::KICKED), "{}", String::from(&kicked));

    let club = room("club");
    assert!(alice.join_room(&club, "alice", None).await.expect("alice joins").created);
    alice.configure_room(&club, &RoomConfig { password: None, members_only: true }).await.expect("members only");
    let refused = bob.try_join_room(&club, "bob", None).await.expect("answer").expect_err("not a member");
    assert_eq!(error_of(&refused), Some(("registration-required".into(), "auth".into())), "{}", String::from(&refused));
    alice.leave_room(&club, "alice").await.expect("alice leaves");
}

on_each_server!(component_joins_on, component_joins_a_room, component_joins_a_room_on_ejabberd);

/// (a) A component joins as its bare domain and as addresses on it; (c) a room its join created
/// is locked for others on Prosody until it accepts the default configuration, not on ejabberd.
async fn component_joins_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    let mut bot = component(&*server).await;
    let mut alice = login(&*server, "alice").await;

    // (a) As the bare domain, with `to='room@service/nick'`: both servers accept it and answer
    // `bot.localhost`. The self-presence has 201 (created) and 110, no 100 (the default room is
    // semi-anonymous), and the item shows owner/moderator with the real JID `bot.localhost`.
    // Prosody adds an XEP-0421 occupant-id; ejabberd first sends the room's own presence (bare
    // room JID, entity caps).
    let bare = room("bare");
    let (me, before) = bot_joins(&mut bot, DOMAIN, &format!("{bare}/bot")).await;
    assert_eq!(codes(&me), [status::SELF, status::CREATED], "{}", String::from(&me));
    let item = muc::item(&me).expect("item");
    assert_eq!(
        (item.attr("affiliation"), item.attr("role"), item.attr("jid")),
        (Some("owner"), Some("moderator"), Some(DOMAIN))
    );
    match kind {
        Server::Prosody => {
            assert!(before.is_empty(), "{:?}", xml(&before));
            assert!(me.has_child("occupant-id", "urn:xmpp:occupant-id:0"));
        }
        Server::Ejabberd => assert!(before.iter().all(|el| is_room_presence(el, &bare)), "{:?}", xml(&before)),
    }

    // (c) The room the component's join created, before it answers the 201:
    match kind {
        // Prosody (muc_room_locking, default on) refuses others with item-not-found (cancel,
        // by='rooms.localhost'), the error presence coming from the nick they asked for.
        Server::Prosody => {
            let refused = alice.try_join_room(&bare, "alice", None).await.expect("answer").expect_err("locked");
            assert_eq!(error_of(&refused), Some(("item-not-found".into(), "cancel".into())));
            assert_eq!(refused.attr("from"), Some(format!("{bare}/alice").as_str()));
        }
        // ejabberd 23.01 does not lock it: alice is in at once (and out again for what follows).
        Server::Ejabberd => {
            let joined = alice.try_join_room(&bare, "alice", None).await.expect("answer").expect("not locked");
            assert!(!joined.created);
            alice.leave_room(&bare, "alice").await.expect("alice leaves");
        }
    }
    // The instant room (an empty submitted form, XEP-0045 §10.1.2): an empty iq result from the
    // room's bare JID, on both.
    bot.send_from(DOMAIN, &muc::instant_room(&bare, "instant-1")).await.expect("send");
    let (answer, _) =
        bot.expect(WAIT, "instant room answer", |el| el.attr("id") == Some("instant-1")).await.expect("answer");
    assert_eq!((answer.attr("type"), answer.attr("from")), (Some("result"), Some(bare.as_str())));
    // Now anyone may enter, and the component sees them arrive.
    alice.join_room(&bare, "alice", None).await.expect("alice joins once configured");
    bot.expect(WAIT, "alice's arrival", |el| muc::is_presence_from(el, &format!("{bare}/alice")))
        .await
        .expect("the component sees alice");

    // (a) As an address on the domain (`someone@bot.localhost`), and as a full JID on it: the
    // same, the room answering exactly the JID that joined, which the item shows.
    for (from, name) in [(USER_ON_DOMAIN.to_owned(), "user"), (format!("{USER_ON_DOMAIN}/res"), "full")] {
        let occupant = format!("{}/{name}", room(name));
        let (me, _) = bot_joins(&mut bot, &from, &occupant).await;
        assert_eq!(codes(&me), [status::SELF, status::CREATED], "{}", String::from(&me));
        assert_eq!(muc::item(&me).and_then(|item| item.attr("jid")), Some(from.as_str()));
    }
}

on_each_server!(
    exact_occupant_on,
    groupchat_only_from_the_occupant_jid,
    groupchat_only_from_the_occupant_jid_on_ejabberd
);

/// (b) A room takes a component's groupchat message only from the occupant's exact JID.
async fn exact_occupant_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    let mut bot = component(&*server).await;
    let mut alice = login(&*server, "alice").await;
    let chat = room("chat");
    alice.join_room(&chat, "alice", None).await.expect("alice joins");
    // The component is in the room twice: as its domain and as an address on it.
    bot_joins(&mut bot, DOMAIN, &format!("{chat}/bot")).await;
    bot_joins(&mut bot, USER_ON_DOMAIN, &format!("{chat}/someone")).await;

    // From an occupant's exact JID, the room takes it (alice hears it from the nick) and sends a
    // copy to every occupant JID of the component: the room's messages arrive once per address
    // the component joined with.
    for (from, nick) in [(DOMAIN, "bot"), (USER_ON_DOMAIN, "someone")] {
        let text = format!("from {from}");
        bot.send_from(from, &muc::groupchat(&chat, &text)).await.expect("send");
        let (heard, _) = alice.expect(WAIT, "the message", muc::is_groupchat_body).await.expect("alice hears it");
        assert_eq!((heard.attr("from"), body(&heard)), (Some(format!("{chat}/{nick}").as_str()), Some(text.clone())));
        let mut copies = Vec::new();
        for _ in 0..2 {
            let (copy, _) = bot.expect(WAIT, "a copy", muc::is_groupchat_body).await.expect("a copy per occupant JID");
            assert_eq!(copy.attr("from"), Some(format!("{chat}/{nick}").as_str()));
            copies.push(copy.attr("to").unwrap_or_default().to_owned());
        }
        copies.sort();
        assert_eq!(copies, [DOMAIN, USER_ON_DOMAIN]);
    }

    // From any other JID on the domain (another resource of the domain or of the address, or an
    // address that did not join), the room refuses it: an error message from the room's bare
    // JID back to that JID, not-acceptable; Prosody: type cancel, "You are not currently
    // connected to this chat"; ejabberd: type modify, "Only occupants are allowed to send
    // messages to the conference", with the body sent back. Nobody in the room sees it.
    for from in [format!("{DOMAIN}/other"), format!("{USER_ON_DOMAIN}/res"), "nobody@bot.localhost".to_owned()] {
        bot.send_from(&from, &muc::groupchat(&chat, "not an occupant")).await.expect("send");
        let (refused, _) = bot
            .expect(WAIT, "the refusal", |el| is_error_message(el) && el.attr("to") == Some(&*from))
            .await
            .expect("refused");
        assert_eq!(refused.attr("from"), Some(chat.as_str()));
        let (condition, kind_, text) = match kind {
            Server::Prosody => ("not-acceptable", "cancel", "You are not currently connected to this chat"),
            Server::Ejabberd => {
                ("not-acceptable", "modify", "Only occupants are allowed to send messages to the conference")
            }
        };
        assert_eq!(error_of(&refused), Some((condition.into(), kind_.into())), "{}", String::from(&refused));
        assert_eq!(testkit::client::error_text(&refused).as_deref(), Some(text));
        assert_eq!(body(&refused).is_some(), kind == Server::Ejabberd, "{}", String::from(&refused));
    }
    let heard = alice.drain(QUIET).await.expect("ok");
    assert!(heard.is_empty(), "nobody hears a refused message: {:?}", xml(&heard));
}

on_each_server!(
    error_kick_on,
    an_error_from_the_component_gets_it_kicked,
    an_error_from_the_component_gets_it_kicked_on_ejabberd
);

/// (d) A component occupant that sends a message of type error to the room or to another
/// occupant: which conditions get it kicked, and how the kick looks.
async fn error_kick_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    let mut bot = component(&*server).await;
    let mut alice = login(&*server, "alice").await;
    let errs = room("errs");
    alice.join_room(&errs, "alice", None).await.expect("alice joins");
    let occupant = format!("{errs}/bot");
    let to_alice = format!("{errs}/alice");

    // Tried: service-unavailable (what a failed webhook call can answer) and undefined-condition.
    // service-unavailable to the room or to an occupant: both kick. undefined-condition to the
    // room: ejabberd kicks (for any condition, its code says), Prosody drops it silently and
    // keeps the occupant (its muc/util.lib.lua kicks only for gone, internal-server-error,
    // item-not-found, jid-malformed, recipient-unavailable, redirect, remote-server-not-found,
    // remote-server-timeout, service-unavailable and a malformed error). undefined-condition to
    // an occupant: both pass it on to that occupant as an error message from the component's
    // nick, and keep the component.
    for (to, condition, kicked) in [
        (&errs, "service-unavailable", true),
        (&errs, "undefined-condition", kind == Server::Ejabberd),
        (&to_alice, "service-unavailable", true),
        (&to_alice, "undefined-condition", false),
    ] {
        bot_joins(&mut bot, DOMAIN, &occupant).await;
        alice
            .expect(WAIT, "the component's arrival", |el| muc::is_presence_from(el, &occupant))
            .await
            .expect("alice sees the component");
        let error = format!(
            "<message type='error' to='{to}' id='e1'><error type='cancel'><{condition} \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        );
        bot.send_from(DOMAIN, &error).await.expect("send");
        let case = format!("{condition} to {to}");
        if kicked {
            let (out, before) = bot
                .expect(WAIT, &format!("the kick for {case}"), |el| {
                    muc::is_self_presence(el, &occupant) && el.attr("type") == Some("unavailable")
                })
                .await
                .expect("kicked");
            let (seen, _) = alice
                .expect(WAIT, "the component's exit", |el| {
                    muc::is_presence_from(el, &occupant) && el.attr("type") == Some("unavailable")
                })
                .await
                .expect("alice sees it go");
            assert_eq!(muc::item(&out).and_then(|item| item.attr("role")), Some("none"));
            match kind {
                // Prosody: status 333 (with 110 for the component itself), status text
                // "Kicked: service unavailable".
                Server::Prosody => {
                    assert_eq!(codes(&out), [status::SELF, status::ERROR_KICK], "{case}: {}", String::from(&out));
                    assert_eq!(codes(&seen), [status::ERROR_KICK]);
                    assert_eq!(status_text(&out), format!("Kicked: {}", condition.replace('-', " ")));
                }
                // ejabberd: no status code but 110, only a text; before it the room withdraws its
                // own presence (unavailable from the bare room JID).
                Server::Ejabberd => {
                    assert_eq!(codes(&out), [status::SELF], "{case}: {}", String::from(&out));
                    assert_eq!(codes(&seen), Vec::<u16>::new());
                    assert_eq!(
                        status_text(&out),
                        format!(
                            "It is not allowed to send error messages to the room. The participant (bot) has \
                             sent an error message ({condition}) and got kicked from the room"
                        )
                    );
                    assert!(
                        before.iter().any(|el| is_room_presence(el, &errs) && el.attr("type") == Some("unavailable"))
                    );
                }
            }
        } else {
            if to == &to_alice {
                let (passed, _) = alice.expect(WAIT, "the error", is_error_message).await.expect("passed on");
                assert_eq!(passed.attr("from"), Some(occupant.as_str()));
                assert_eq!(error_of(&passed), Some((condition.into(), "cancel".into())));
            }
            // Still in: the room takes its groupchat message; nothing else reached alice (an
            // error to the room is not passed on to anyone).
            bot.send_from(DOMAIN, &muc::groupchat(&errs, "still here")).await.expect("send");
            let (_, before) =
                alice.expect(WAIT, "the component's message", muc::is_groupchat_body).await.expect("still an occupant");
            assert!(before.is_empty(), "{case}: {:?}", xml(&before));
            bot.send_from(DOMAIN, &muc::leave(&occupant)).await.expect("send");
            bot.expect(WAIT, "the component's exit", |el| {
                muc::is_self_presence(el, &occupant) && el.attr("type") == Some("unavailable")
            })
            .await
            .expect("left");
        }
    }
}

on_each_server!(
    removal_on,
    the_component_is_told_of_kick_destroy_and_shutdown,
    the_component_is_told_of_kick_destroy_and_shutdown_on_ejabberd
);

/// (e) What a component occupant receives when kicked, when its room is destroyed, and when the
/// server (and with it the group chat service) stops and starts again.
async fn removal_on(kind: Server) {
    let Some(server) = kind.start(&setup()) else { return };
    let mut bot = component(&*server).await;
    let mut alice = login(&*server, "alice").await;
    let doomed = room("doomed");
    let occupant = format!("{doomed}/bot");
    let is_out = |el: &Element| muc::is_presence_from(el, &occupant) && el.attr("type") == Some("unavailable");
    alice.join_room(&doomed, "alice", None).await.expect("alice joins");

    // Kicked: an unavailable presence from its nick with 307 and 110, the item with role none,
    // affiliation none, the actor's nick and the reason. ejabberd withdraws its room presence
    // first, as for every exit.
    bot_joins(&mut bot, DOMAIN, &occupant).await;
    alice.kick(&doomed, "bot", Some("enough")).await.expect("kick");
    let (kicked, before) = bot.expect(WAIT, "the kick", is_out).await.expect("kicked");
    assert_eq!(codes(&kicked), [status::SELF, status::KICKED], "{}", String::from(&kicked));
    let item = muc::item(&kicked).expect("item");
    assert_eq!((item.attr("role"), item.attr("affiliation")), (Some("none"), Some("none")));
    assert_eq!(item.get_child("actor", muc::NS_MUC_USER).and_then(|a| a.attr("nick")), Some("alice"));
    assert_eq!(item.get_child("reason", muc::NS_MUC_USER).map(Element::text).as_deref(), Some("enough"));
    if kind == Server::Ejabberd {
        assert!(before.iter().any(|el| is_room_presence(el, &doomed)), "{:?}", xml(&before));
    }

    // Destroyed: an unavailable presence from its nick with <destroy><reason/></destroy>, and
    // 110 on Prosody only; ejabberd has no status code at all (and no jid in the item). So it is
    // the <destroy/> that tells, not a status code.
    bot_joins(&mut bot, DOMAIN, &occupant).await;
    alice.destroy_room(&doomed, Some("closing")).await.expect("destroy");
    let (gone, _) = bot.expect(WAIT, "the destruction", is_out).await.expect("told");
    let destroy = muc::destroyed(&gone).expect("a destroy element");
    assert_eq!(destroy.get_child("reason", muc::NS_MUC_USER).map(Element::text).as_deref(), Some("closing"));
    match kind {
        Server::Prosody => assert_eq!(codes(&gone), [status::SELF], "{}", String::from(&gone)),
        Server::Ejabberd => assert_eq!(codes(&gone), Vec::<u16>::new(), "{}", String::from(&gone)),
    }

    // The server stops (SIGTERM): neither sends the component a 332 or any presence of its own
    // exit. It may hear the other occupants leave as their client streams close first (Prosody:
    // status "Disconnected: Received SIGTERM"); ejabberd may send a system-shutdown stream
    // error. Then the connection just closes, without </stream:stream>. Seen in 24 runs, 12 of
    // them beside other tests: Prosody 11 times alice's exit, once nothing; ejabberd 8 times
    // nothing, 3 times alice's exit, once alice's exit and the stream error.
    let last = room("last");
    let occupant = format!("{last}/bot");
    alice.join_room(&last, "alice", None).await.expect("alice joins");
    bot_joins(&mut bot, DOMAIN, &occupant).await;
    let mut server = server;
    let stopping = tokio::task::spawn_blocking(move || {
        let stopped = server.stop();
        (server, stopped)
    });
    let got = bot.until_closed(Duration::from_secs(30)).await;
    let (mut server, stopped) = stopping.await.expect("stop task");
    stopped.expect("stops");
    let got = got.expect("the stream ends");
    let alice_leaves =
        |el: &&Element| muc::is_presence_from(el, &format!("{last}/alice")) && el.attr("type") == Some("unavailable");
    let system_shutdown = |el: &&Element| {
        kind == Server::Ejabberd
            && el.name() == "error"
            && el.has_child("system-shutdown", "urn:ietf:params:xml:ns:xmpp-streams")
    };
    let (leaves, errors) = (got.iter().filter(alice_leaves).count(), got.iter().filter(system_shutdown).count());
    assert!(leaves <= 1 && errors <= 1 && leaves + errors == got.len(), "{:?}", xml(&got));
    assert!(got.iter().all(|el| codes(el).is_empty()), "no 332: {:?}", xml(&got));
    assert!(!bot.closed_cleanly(), "the connection closes without </stream:stream>");

    // Started again: Prosody saved its live rooms at shutdown, temporary ones included, so the
    // room is back, empty (alice still its owner): the rejoin gets just 110, as a participant.
    // ejabberd's temporary room is gone: the rejoin creates it anew (201, owner).
    server.restart().expect("starts again");
    let mut bot = component(&*server).await;
    let (me, _) = bot_joins(&mut bot, DOMAIN, &occupant).await;
    let item = muc::item(&me).expect("item");
    let affiliation = (item.attr("affiliation"), item.attr("role"));
    match kind {
        Server::Prosody => {
            assert_eq!(codes(&me), [status::SELF], "{}", String::from(&me));
            assert_eq!(affiliation, (Some("none"), Some("participant")));
        }
        Server::Ejabberd => {
            assert_eq!(codes(&me), [status::SELF, status::CREATED], "{}", String::from(&me));
            assert_eq!(affiliation, (Some("owner"), Some("moderator")));
        }
    }
}
