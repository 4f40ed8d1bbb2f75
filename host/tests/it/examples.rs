//! The example webhooks a newcomer copies, run for real behind a real Prosody.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::client::{body, error_of};

use crate::harness::{Bridge, DOMAIN, Options, WAIT, message};

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webhooks")
}

async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "example webhook did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn round_trip(post_url: String) {
    let Some(mut b) = Bridge::start(Options { post_url: Some(post_url), ..Options::default() }).await else {
        return;
    };
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "ping from alice ☃")).await.expect("send");
    let (reply, _) = b.alice.expect(WAIT, "echo", |el| el.name() == "message").await.expect("echo");
    assert_eq!(body(&reply).as_deref(), Some("ping from alice ☃"), "host log:\n{}", b.host.log());
    // A chat state without a body gets no reply.
    b.alice
        .send(&format!(
            "<message to='echo@{DOMAIN}' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .await
        .expect("send");
    b.expect_silence().await;
}

/// Starts an example webhook with `program args…` (environment `env`) on a free port, the
/// `{port}` argument, and waits for it to listen. `None` where the program is missing.
async fn serve(
    program: &str,
    install_hint: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Option<(testkit::KilledOnDrop, String)> {
    if !testkit::require_program(program, install_hint) {
        return None;
    }
    let port = testkit::free_port().expect("port");
    let args: Vec<String> = args.iter().map(|a| a.replace("{port}", &port.to_string())).collect();
    let child = Command::new(program)
        .args(&args)
        .envs(env.iter().copied())
        .current_dir(examples_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let server = testkit::KilledOnDrop(child);
    wait_for_port(port).await;
    Some((server, format!("http://127.0.0.1:{port}/")))
}

async fn serve_and_round_trip(program: &str, install_hint: &str, args: &[&str]) {
    let Some((_server, url)) = serve(program, install_hint, args, &[]).await else { return };
    round_trip(url).await;
}

/// Signing (README: "The request"), checked by an independent implementation: the Python example verifies
/// the Standard Webhooks signature with nothing but Python's hmac module.
#[tokio::test]
async fn python_echo_webhook_verifies_the_signature() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = [("STANDARD_WEBHOOKS_SECRET", SECRET)];
    let Some((_server, url)) = serve("python3", "apt-get install python3", &["echo.py", "{port}"], &env).await else {
        return;
    };
    // Rotation: the right key is the second of two.
    let toml = format!("[webhook]\nsigning_secrets = [\"whsec_AAAAAAAA\", \"{SECRET}\"]\n");
    let Some(mut b) = Bridge::start(Options { post_url: Some(url.clone()), toml: &toml, ..Options::default() }).await
    else {
        return;
    };
    let reply = b.ask("echo", "signed").await;
    assert_eq!(body(&reply).as_deref(), Some("signed"), "host log:\n{}", b.host.log());

    let toml = "[webhook]\nsigning_secrets = [\"whsec_AAAAAAAA\"]\n";
    let Some(mut b) = Bridge::start(Options { post_url: Some(url), toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "forged").await;
    assert_eq!(error_of(&reply), Some(("not-authorized".into(), "auth".into())), "a wrong key is refused with 401");
}

#[tokio::test]
async fn python_echo_webhook() {
    serve_and_round_trip("python3", "apt-get install python3", &["echo.py", "{port}"]).await;
}

#[tokio::test]
async fn php_echo_webhook() {
    serve_and_round_trip("php", "apt-get install php-cli", &["-S", "127.0.0.1:{port}", "echo.php"]).await;
}

/// The room bot answers its commands in the room and nothing else, through a real MUC.
#[tokio::test]
async fn python_room_bot_answers_its_commands_in_the_room() {
    let Some((_server, url)) = serve("python3", "apt-get install python3", &["roombot.py", "{port}"], &[]).await else {
        return;
    };
    let room = format!("dev@{}", crate::harness::MUC);
    let toml = format!("[[room]]\njid = {room:?}\nnick = \"Bot\"\n");
    let options = Options { post_url: Some(url), toml: &toml, muc: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    b.host.wait_for_log("joined the room", crate::harness::CONNECT_WAIT).await.expect("the bot joins");
    b.alice.join_room(&room, "alice", None).await.expect("alice joins");
    let bot = format!("{room}/Bot");
    b.alice.send_groupchat(&room, "nice weather").await.expect("send");
    b.alice.send_groupchat(&room, "!roll").await.expect("send");
    let (reply, _) = b
        .alice
        .expect(WAIT, "the die", |el| el.name() == "message" && el.attr("from") == Some(bot.as_str()))
        .await
        .expect("the bot answers !roll");
    let text = body(&reply).unwrap_or_default();
    assert!(
        text.starts_with("🎲 ") && text.trim_start_matches("🎲 ").parse::<u8>().is_ok_and(|n| (1..=6).contains(&n)),
        "{text}"
    );
    assert_eq!(reply.attr("type"), Some("groupchat"));
    let more = b.alice.drain(crate::harness::QUIET).await.expect("client ok");
    assert!(
        !more.iter().any(|el| el.attr("from") == Some(bot.as_str()) && body(el).is_some()),
        "the bot answered small talk: {more:?}"
    );
}

/// The server configs of `examples/servers/`, only their ports moved: the server starts, takes a
/// user made the way the file says (`prosodyctl register`, `ejabberdctl register`), serves
/// stanzahook's component with the file's secret, a round trip through the webhook, and rooms.
async fn the_example_server_config_on(server: crate::harness::Server) {
    use testkit::server::{EXAMPLE_DOMAIN, EXAMPLE_MUC, EXAMPLE_SECRET};
    let Some(server) = server.start(&testkit::ServerSetup::example().user("alice", "alicepw")) else { return };
    let webhook = testkit::TestWebhook::start().await.expect("webhook starts");
    let args = testkit::host::run_args(EXAMPLE_DOMAIN, &server.component_addr(), EXAMPLE_SECRET, &webhook.url, None);
    let mut host = testkit::HostProcess::start(crate::harness::stanzahook_bin(), &args).expect("stanzahook starts");
    if let Err(e) = host.wait_for_log("connected, serving", crate::harness::CONNECT_WAIT).await {
        panic!("{e}\n{} log:\n{}", server.name(), server.log());
    }
    let mut alice = match testkit::XmppClient::login(server.c2s_port(), "alice", "alicepw").await {
        Ok(alice) => alice,
        Err(e) => panic!("alice, registered as the example says, cannot log in: {e:#}\n{}", server.log()),
    };
    alice.send(&message(&format!("echo@{EXAMPLE_DOMAIN}"), "hello, example")).await.expect("send");
    let (reply, _) = alice.expect(WAIT, "the echo", |el| el.name() == "message").await.expect("echo");
    assert_eq!(body(&reply).as_deref(), Some("hello, example"), "{reply:?}");
    alice
        .send(&format!(
            "<iq type='get' to='{EXAMPLE_MUC}' id='rooms-1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await
        .expect("send");
    let (info, _) =
        alice.expect(WAIT, "the rooms service", |el| el.attr("id") == Some("rooms-1")).await.expect("disco");
    assert_eq!(info.attr("type"), Some("result"), "{}: {}", server.name(), String::from(&info));
    assert!(String::from(&info).contains("conference"), "a group chat service: {}", String::from(&info));
}

crate::harness::on_each_server!(
    the_example_server_config_on,
    the_example_prosody_config_serves_a_round_trip_and_rooms,
    the_example_ejabberd_config_serves_a_round_trip_and_rooms
);
