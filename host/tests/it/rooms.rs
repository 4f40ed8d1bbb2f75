//! Group chat with a real Prosody (its `muc` component) and a real ejabberd (mod_muc),
//! real clients as the other occupants, and the test webhook: the bot joins without history,
//! answers in the room, never answers itself, and never sends a stanza error into a room.

use std::time::Duration;

use serde_json::json;
use testkit::XmppClient;
use testkit::client::body;
use testkit::muc;

use crate::harness::{API_TOKEN, Bridge, CONNECT_WAIT, DOMAIN, MUC, Options, Server, WAIT, on_each_server};

fn room() -> String {
    format!("dev@{MUC}")
}

/// A `[[room]]` entry for `dev@MUC` as `Bot`, with `extra` settings.
fn entry(extra: &str) -> String {
    format!("[[room]]\njid = {:?}\nnick = \"Bot\"\n{extra}\n", room())
}

/// True for a groupchat message with a body from `from` (`room/nick`).
fn groupchat_from(el: &testkit::Element, from: &str) -> bool {
    muc::is_groupchat_body(el) && el.attr("from") == Some(from)
}

async fn bob(b: &Bridge) -> XmppClient {
    XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in")
}

/// The next message `client` gets from the bot's occupant, skipping others' room traffic.
async fn from_bot(client: &mut XmppClient, what: &str) -> testkit::Element {
    let bot = format!("{}/Bot", room());
    let (el, _) = client
        .expect(WAIT, what, |el| el.name() == "message" && el.attr("from") == Some(bot.as_str()))
        .await
        .expect(what);
    el
}

on_each_server!(
    a_bot_in_a_room_on,
    a_bot_in_a_room_answers_there_and_never_answers_itself,
    a_bot_in_a_room_answers_there_and_never_answers_itself_through_ejabberd
);

async fn a_bot_in_a_room_on(server: Server) {
    // No room at start: the entry is added by a reload, after the room has history.
    let options = Options { server, muc: true, toml: "watch = true\n", url_in_file: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    let mut bob = bob(&b).await;
    b.alice.join_room(&room(), "alice", None).await.expect("alice makes the room");
    bob.join_room(&room(), "bob", None).await.expect("bob joins");
    b.alice.send_groupchat(&room(), "said before the bot came").await.expect("send");
    bob.expect(WAIT, "alice's message", |el| groupchat_from(el, &format!("{}/alice", room()))).await.expect("history");

    let url = b.webhook.url.clone();
    std::fs::write(&b.config, format!("watch = true\npost_url = {url:?}\n{}", entry(""))).expect("add the room");
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins on reload");
    bob.expect(WAIT, "the bot's arrival", |el| {
        el.name() == "presence" && el.attr("from") == Some(&format!("{}/Bot", room()))
    })
    .await
    .expect("bob sees the bot arrive");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.webhook.requests().is_empty(), "history reached the webhook: {:?}", b.webhook.requests());

    b.alice.send_groupchat(&room(), "hello room").await.expect("send");
    let events = b.webhook_saw(1).await;
    let event = &events[0].event;
    assert_eq!(event["room"], room());
    assert_eq!(event["nick"], "alice");
    assert_eq!(event["mentioned"], false);
    assert_eq!(event["type"], "groupchat");
    for client in [&mut b.alice, &mut bob] {
        let reply = from_bot(client, "the bot's answer in the room").await;
        assert_eq!(reply.attr("type"), Some("groupchat"));
        assert_eq!(body(&reply).as_deref(), Some("hello room"));
    }
    // The room reflects the bot's answer to the bot: it must not reach the webhook.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.webhook.requests().len(), 1, "one request per human message; host log:\n{}", b.host.log());

    // A private message through the room is answered privately.
    b.alice.send(&format!("<message to='{}/Bot' type='chat'><body>psst</body></message>", room())).await.expect("send");
    let reply = from_bot(&mut b.alice, "the private answer").await;
    assert_eq!(reply.attr("type"), Some("chat"));
    assert_eq!(body(&reply).as_deref(), Some("psst"));
    assert_eq!(b.webhook_saw(2).await[1].event["nick"], "alice");
}

on_each_server!(
    a_failing_webhook_on,
    a_failing_webhook_never_gets_the_bot_kicked_from_its_room,
    a_failing_webhook_never_gets_the_bot_kicked_from_its_room_through_ejabberd
);

async fn a_failing_webhook_on(server: Server) {
    // The occupant `s500@` makes the test webhook answer 500: an internal-server-error stanza
    // error would go into the room, and the room would kick the bot for it.
    let toml =
        format!("room_error_text = \"Sorry, that did not work.\"\n{}", entry(&format!("address = \"s500@{DOMAIN}\"")));
    let options = Options { server, muc: true, toml: &toml, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    for text in ["first", "second"] {
        b.alice.send_groupchat(&room(), text).await.expect("send");
        let reply = from_bot(&mut b.alice, "the bot's plain apology").await;
        assert_eq!(reply.attr("type"), Some("groupchat"), "{}", String::from(&reply));
        assert_eq!(body(&reply).as_deref(), Some("Sorry, that did not work."));
    }
    b.alice.send(&format!("<message to='{}/Bot' type='chat'><body>psst</body></message>", room())).await.expect("send");
    let reply = from_bot(&mut b.alice, "the private apology").await;
    assert_eq!(reply.attr("type"), Some("chat"));
    let log = b.host.log();
    assert!(log.contains("not sending the stanza error internal-server-error into the room"), "{log}");
    assert!(!log.contains("kicked"), "the bot was kicked:\n{log}");
    assert_eq!(log.matches("joined the room").count(), 1, "the bot had to join again:\n{log}");
}

on_each_server!(
    mentions_on,
    with_forward_mentions_only_what_names_the_bot_is_forwarded,
    with_forward_mentions_only_what_names_the_bot_is_forwarded_through_ejabberd
);

async fn mentions_on(server: Server) {
    let toml = entry("forward = \"mentions\"");
    let Some(mut b) = Bridge::start(Options { server, muc: true, toml: &toml, ..Options::default() }).await else {
        return;
    };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    b.alice.send_groupchat(&room(), "just chatting").await.expect("send");
    b.alice.send_groupchat(&room(), "bot, what time is it?").await.expect("send");
    let reply = from_bot(&mut b.alice, "the answer to the mention").await;
    assert_eq!(body(&reply).as_deref(), Some("bot, what time is it?"));
    let events = b.webhook_saw(1).await;
    assert_eq!(events[0].event["mentioned"], true);
}

on_each_server!(send_on, send_posts_into_a_room_the_bot_is_in, send_posts_into_a_room_the_bot_is_in_through_ejabberd);

async fn send_on(server: Server) {
    let toml = entry("");
    let Some(mut b) = Bridge::start(Options { server, muc: true, api: true, toml: &toml, ..Options::default() }).await
    else {
        return;
    };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    let base = b.api.clone().expect("api");
    let send = |body: serde_json::Value| {
        let url = format!("{base}/send");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(API_TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("api answers");
            response.status().as_u16()
        }
    };
    assert_eq!(send(json!({"room": room(), "body": "deploy finished"})).await, 202);
    let got = from_bot(&mut b.alice, "the message sent through the API").await;
    assert_eq!(body(&got).as_deref(), Some("deploy finished"));
    assert_eq!(got.attr("type"), Some("groupchat"));
    assert_eq!(send(json!({"room": format!("elsewhere@{MUC}"), "body": "x"})).await, 409, "not in that room");
}

#[tokio::test]
async fn a_wrong_room_password_is_one_clear_line_and_a_fixed_one_joins() {
    let options = Options { muc: true, toml: "watch = true\n", url_in_file: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    b.alice.join_room(&room(), "alice", None).await.expect("alice makes the room");
    let locked = muc::RoomConfig { password: Some("right".into()), members_only: false };
    b.alice.configure_room(&room(), &locked).await.expect("alice sets a password");
    let url = b.webhook.url.clone();
    let write = |password: &str| {
        let toml = format!("watch = true\npost_url = {url:?}\n{}", entry(&format!("password = {password:?}")));
        std::fs::write(&b.config, toml).expect("write config");
    };
    write("wrong");
    b.host.wait_for_log("cannot join the room", CONNECT_WAIT).await.expect("the refusal is logged");
    let log = b.host.log();
    let line = log.lines().find(|l| l.contains("cannot join the room")).unwrap_or_default();
    assert!(line.contains(&room()) && line.contains("not-authorized"), "{line}");
    assert!(line.contains("needs a password, or the configured one is wrong"), "{line}");
    assert!(!log.contains("\"wrong\""), "the password is not logged:\n{log}");
    write("right");
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the fixed entry joins");
}

on_each_server!(a_kicked_bot_on, a_kicked_bot_does_not_join_again, a_kicked_bot_does_not_join_again_through_ejabberd);

async fn a_kicked_bot_on(server: Server) {
    let Some(mut b) = Bridge::start(Options { server, muc: true, ..Options::default() }).await else { return };
    // alice owns the room, so she may kick; the bot joins it once it is configured.
    b.alice.join_room(&room(), "alice", None).await.expect("alice makes the room");
    let url = b.webhook.url.clone();
    std::fs::write(&b.config, format!("watch = true\npost_url = {url:?}\n{}", entry(""))).expect("add the room");
    b.host.hangup().expect("SIGHUP");
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.kick(&room(), "Bot", Some("enough")).await.expect("alice kicks the bot");
    b.host.wait_for_log("kicked from the room", WAIT).await.expect("the kick is logged");
    // What alice saw up to the kick (the bot's arrival included) is behind her; past the first
    // retry's backoff (2 s), no join comes.
    b.alice.drain(Duration::from_millis(200)).await.expect("client ok");
    let bot = format!("{}/Bot", room());
    let seen = b.alice.drain(Duration::from_secs(4)).await.expect("client ok");
    let returned = seen
        .iter()
        .any(|el| el.name() == "presence" && el.attr("from") == Some(bot.as_str()) && el.attr("type").is_none());
    assert!(!returned, "the bot joined again after a kick; host log:\n{}", b.host.log());
    assert_eq!(b.host.log().matches("joined the room").count(), 1, "{}", b.host.log());
}

on_each_server!(
    a_server_restart_on,
    after_a_server_restart_the_bot_is_back_in_its_room,
    after_a_server_restart_the_bot_is_back_in_its_room_through_ejabberd
);

async fn a_server_restart_on(server: Server) {
    let toml = entry("");
    let Some(mut b) = Bridge::start(Options { server, muc: true, toml: &toml, ..Options::default() }).await else {
        return;
    };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.server.restart().expect("the server restarts");
    let back = std::time::Instant::now();
    b.host.wait_for_log_count("joined the room", 2, CONNECT_WAIT).await.expect("the bot joins again");
    let took = back.elapsed();
    assert!(took < Duration::from_secs(5), "back in the room {took:?} after the server; host log:\n{}", b.host.log());
    let mut alice = XmppClient::login(b.server.c2s_port(), "alice", "alicepw").await.expect("alice logs in again");
    alice.join_room(&room(), "alice", None).await.expect("alice joins");
    alice.send_groupchat(&room(), "anyone here?").await.expect("send");
    let reply = from_bot(&mut alice, "the bot's answer after the restart").await;
    assert_eq!(body(&reply).as_deref(), Some("anyone here?"));
}

#[tokio::test]
async fn replies_beyond_the_room_reply_limit_are_dropped() {
    let toml = format!("room_reply_limit = 2\n{}", entry(""));
    let Some(mut b) = Bridge::start(Options { muc: true, toml: &toml, ..Options::default() }).await else { return };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    for n in 1..=3 {
        b.alice.send_groupchat(&room(), &format!("m{n}")).await.expect("send");
    }
    b.webhook_saw(3).await;
    for n in 1..=2 {
        assert_eq!(body(&from_bot(&mut b.alice, "an answer").await), Some(format!("m{n}")));
    }
    let bot = format!("{}/Bot", room());
    let third = b.alice.expect(Duration::from_millis(800), "a third answer", |el| groupchat_from(el, &bot));
    assert!(third.await.is_err(), "the third answer was sent");
    assert!(b.host.log().contains("reply dropped: the room had 2 replies this minute"), "{}", b.host.log());
}

on_each_server!(
    self_pings_on,
    self_pings_keep_a_bot_that_is_in_its_room_where_it_is,
    self_pings_keep_a_bot_that_is_in_its_room_where_it_is_through_ejabberd
);

/// XEP-0410: each server answers the bot's self-ping in a way that says "joined" (the room
/// passes the ping to the bot's own occupant address, where stanzahook answers it).
async fn self_pings_on(server: Server) {
    let toml = format!("room_ping_interval = \"500ms\"\n{}", entry(""));
    let options =
        Options { server, muc: true, toml: &toml, log: Some("info,stanzahook::rooms=debug"), ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = b.host.log();
    assert!(
        !log.contains("self-ping says the bot is not") && !log.contains("did not answer a self-ping"),
        "a self-ping went wrong:\n{log}"
    );
    assert!(
        log.matches("a self-ping says the bot is in the room").count() >= 2,
        "the room answered no self-ping:\n{log}"
    );
    assert_eq!(log.matches("joined the room").count(), 1, "{log}");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    b.alice.send_groupchat(&room(), "still there?").await.expect("send");
    assert_eq!(body(&from_bot(&mut b.alice, "the answer").await).as_deref(), Some("still there?"));
}

#[tokio::test]
async fn healthz_and_metrics_show_each_room() {
    let toml = format!("watch = true\n{}", entry(""));
    let options = Options { muc: true, api: true, url_in_file: true, toml: &toml, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins dev");
    // A second room where alice already has the nick the bot is given.
    let taken = format!("taken@{MUC}");
    b.alice.join_room(&taken, "alice", None).await.expect("alice joins");
    let url = b.webhook.url.clone();
    let toml = format!("watch = true\npost_url = {url:?}\n{}[[room]]\njid = {taken:?}\nnick = \"alice\"\n", entry(""));
    std::fs::write(&b.config, toml).expect("add the room");
    b.host.wait_for_log("cannot join the room", CONNECT_WAIT).await.expect("the taken nick is refused");
    let base = b.api.clone().expect("api");
    let health: serde_json::Value = reqwest::get(format!("{base}/healthz")).await.expect("healthz").json_body().await;
    let rooms = &health["rooms"];
    assert_eq!(rooms[room()]["state"], "joined", "{health}");
    assert_eq!(rooms[room()]["nick"], "Bot");
    assert!(rooms[room()]["since"].as_str().is_some(), "{health}");
    assert_eq!(rooms[&taken]["state"], "failed", "{health}");
    assert!(rooms[&taken]["error"].as_str().is_some_and(|e| e.contains("conflict")), "{health}");
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("stanzahook_rooms{state=\"joined\"} 1"), "{metrics}");
    assert!(metrics.contains("stanzahook_rooms{state=\"failed\"} 1"), "{metrics}");
    assert!(metrics.contains("stanzahook_room_joins_total{result=\"joined\"} 1"), "{metrics}");
}

/// The JSON of a response body.
trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_str(&self.text().await.expect("body")).expect("JSON")
    }
}

on_each_server!(
    an_invitation_on,
    an_invitation_is_accepted_and_the_room_joined_again_after_a_restart,
    an_invitation_is_accepted_and_the_room_joined_again_after_a_restart_through_ejabberd
);

async fn an_invitation_on(server: Server) {
    let state = tempfile::tempdir().expect("tempdir");
    let toml = format!("accept_invites = true\nstate_dir = {:?}\n", state.path().display().to_string());
    let Some(mut b) = Bridge::start(Options { server, muc: true, toml: &toml, ..Options::default() }).await else {
        return;
    };
    let party = format!("party@{MUC}");
    b.alice.join_room(&party, "alice", None).await.expect("alice makes the room");
    // A direct invitation (XEP-0249) to an address of the bot's: it joins as that address.
    b.alice
        .send(&format!(
            "<message to='helper@{DOMAIN}'><x xmlns='jabber:x:conference' jid='{party}' reason='join us'/></message>"
        ))
        .await
        .expect("invite");
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot accepts");
    let invite = &b.webhook_saw(1).await[0].event["invite"];
    assert_eq!(
        (invite["room"].as_str(), invite["reason"].as_str()),
        (Some(party.as_str()), Some("join us")),
        "{invite}"
    );
    b.alice.send_groupchat(&party, "welcome").await.expect("send");
    let helper = format!("{party}/helper");
    let (reply, _) = b.alice.expect(WAIT, "the bot's answer", |el| groupchat_from(el, &helper)).await.expect("answer");
    assert_eq!(body(&reply).as_deref(), Some("welcome"));

    b.restart_host().await;
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("joined again after the restart");
    b.alice.send_groupchat(&party, "still with us?").await.expect("send");
    let (reply, _) =
        b.alice.expect(WAIT, "the answer after the restart", |el| groupchat_from(el, &helper)).await.expect("answer");
    assert_eq!(body(&reply).as_deref(), Some("still with us?"));
    assert!(state.path().join("stanzahook.sqlite3").exists(), "kept in the state directory");
}

#[tokio::test]
async fn the_rooms_api_joins_lists_and_leaves() {
    let toml = entry("");
    let Some(mut b) = Bridge::start(Options { muc: true, api: true, toml: &toml, ..Options::default() }).await else {
        return;
    };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins dev");
    let base = b.api.clone().expect("api");
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>, token: Option<&str>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        async move {
            let response = request.send().await.expect("the API answers");
            let status = response.status().as_u16();
            (status, response.json_body().await)
        }
    };
    let ops = format!("ops@{MUC}");
    assert_eq!(call(reqwest::Method::GET, "/rooms", None, None).await.0, 401, "behind the token");
    let (status, error) =
        call(reqwest::Method::POST, "/rooms", Some(json!({"jid": "not a room", "nick": "Bot"})), Some(API_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().is_some_and(|e| e.starts_with("`jid`")), "{error}");
    let (status, _) =
        call(reqwest::Method::POST, "/rooms", Some(json!({"jid": ops, "nick": "Bot"})), Some(API_TOKEN)).await;
    assert_eq!(status, 202);
    b.host.wait_for_log_count("joined the room", 2, CONNECT_WAIT).await.expect("the bot joins ops");
    assert_eq!(
        call(reqwest::Method::POST, "/rooms", Some(json!({"jid": room(), "nick": "Bot"})), Some(API_TOKEN)).await.0,
        409
    );
    let (status, listed) = call(reqwest::Method::GET, "/rooms", None, Some(API_TOKEN)).await;
    assert_eq!(status, 200);
    let rooms = listed["rooms"].as_array().expect("a list");
    let find =
        |jid: &str| rooms.iter().find(|r| r["jid"] == jid).unwrap_or_else(|| panic!("{jid} in {listed}")).clone();
    assert_eq!((find(&room())["source"].clone(), find(&room())["state"].clone()), (json!("config"), json!("joined")));
    assert_eq!((find(&ops)["source"].clone(), find(&ops)["state"].clone()), (json!("runtime"), json!("joined")));
    assert_eq!(
        call(reqwest::Method::DELETE, &format!("/rooms/{}", room()), None, Some(API_TOKEN)).await.0,
        409,
        "in the file"
    );
    assert_eq!(call(reqwest::Method::DELETE, &format!("/rooms/{ops}"), None, Some(API_TOKEN)).await.0, 200);
    b.host.wait_for_log("leaving the room", CONNECT_WAIT).await.expect("the bot leaves ops");
    assert_eq!(call(reqwest::Method::DELETE, &format!("/rooms/{ops}"), None, Some(API_TOKEN)).await.0, 404);
    let (_, listed) = call(reqwest::Method::GET, "/rooms", None, Some(API_TOKEN)).await;
    assert_eq!(listed["rooms"].as_array().map(Vec::len), Some(1), "{listed}");
    let _ = &mut b;
}

#[tokio::test]
async fn a_webhook_timing_out_on_a_room_message_never_gets_the_bot_kicked() {
    // `slow@` makes the test webhook take 3 s, past a 1 s timeout: remote-server-timeout, an
    // error Prosody kicks for.
    let toml = format!("[webhook]\ntimeout = \"1s\"\n{}", entry(&format!("address = \"slow@{DOMAIN}\"")));
    let Some(mut b) = Bridge::start(Options { muc: true, toml: &toml, ..Options::default() }).await else { return };
    b.host.wait_for_log("joined the room", CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room(), "alice", None).await.expect("alice joins");
    b.alice.send_groupchat(&room(), "slow one").await.expect("send");
    b.host
        .wait_for_log("not sending the stanza error remote-server-timeout into the room", WAIT)
        .await
        .expect("withheld");
    b.alice.send(&format!("<message to='{}/Bot' type='chat'><body>psst</body></message>", room())).await.expect("send");
    b.host
        .wait_for_log_count("not sending the stanza error remote-server-timeout into the room", 2, WAIT)
        .await
        .expect("withheld for the private message too");
    let seen = b.alice.drain(crate::harness::QUIET).await.expect("client ok");
    let bot = format!("{}/Bot", room());
    assert!(
        !seen.iter().any(|el| el.attr("from") == Some(bot.as_str()) && el.attr("type") == Some("unavailable")),
        "the bot was kicked: {seen:?}"
    );
    assert!(!b.host.log().contains("kicked"), "{}", b.host.log());
}
