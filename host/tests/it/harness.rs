//! One bridge per test: Prosody (or ejabberd) on free loopback ports, the scriptable webhook, the
//! stanzahook binary serving `bot.localhost`, and alice logged in as a real client.

use std::path::Path;
use std::time::Duration;

use testkit::{Ejabberd, HostProcess, Prosody, ServerSetup, TestServer, TestWebhook, XmppClient};

pub const DOMAIN: &str = "bot.localhost";
/// The group chat service, where `Options::muc` asks for one.
pub const MUC: &str = "rooms.localhost";
pub const SECRET: &str = "s3cret";
/// The operator API's token where a bridge serves the API.
pub const API_TOKEN: &str = "a-token-for-the-tests-0123456789";
/// Long enough for a loaded 2-core CI machine; only waits that end early use it.
pub const WAIT: Duration = Duration::from_secs(10);
/// Startup compiles the configured filters: seconds each in a debug build on a busy machine.
pub const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(600);

pub fn stanzahook_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stanzahook"))
}

#[derive(Debug)]
pub struct Bridge {
    pub server: Box<dyn TestServer>,
    pub webhook: TestWebhook,
    pub host: HostProcess,
    pub alice: XmppClient,
    /// The operator API's base URL, with `Options::api`.
    pub api: Option<String>,
    /// The config file stanzahook was started with; tests may edit it.
    pub config: std::path::PathBuf,
    /// The command line stanzahook was started with.
    args: Vec<String>,
    _config_dir: tempfile::TempDir,
}

/// The XMPP server a bridge runs against.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    #[default]
    Prosody,
    Ejabberd,
}

impl Server {
    /// The server with what `setup` says, or `None` (with a loud message) where it is not
    /// installed outside CI.
    pub fn start(self, setup: &ServerSetup) -> Option<Box<dyn TestServer>> {
        match self {
            Server::Prosody => testkit::require_program("prosody", "apt-get install prosody")
                .then(|| Box::new(Prosody::start(setup).expect("prosody starts")) as Box<dyn TestServer>),
            Server::Ejabberd => testkit::require(Ejabberd::installed(), "ejabberd", "apt-get install ejabberd")
                .then(|| Box::new(Ejabberd::start(setup).expect("ejabberd starts")) as Box<dyn TestServer>),
        }
    }
}

/// Two tests from one body `$body(server: Server)`, with the same assertions: `$prosody` runs it
/// against Prosody, `$ejabberd` against ejabberd.
macro_rules! on_each_server {
    ($body:ident, $prosody:ident, $ejabberd:ident) => {
        #[tokio::test]
        async fn $prosody() {
            $body(crate::harness::Server::Prosody).await;
        }

        #[tokio::test]
        async fn $ejabberd() {
            $body(crate::harness::Server::Ejabberd).await;
        }
    };
}
pub(crate) use on_each_server;

#[derive(Debug, Default)]
pub struct Options<'a> {
    /// The XMPP server; Prosody unless a test says otherwise.
    pub server: Server,
    /// `--stanzas` value.
    pub stanzas: Option<&'a str>,
    /// Extra TOML for the config file.
    pub toml: &'a str,
    /// A webhook URL other than the test webhook's.
    pub post_url: Option<String>,
    /// Write the webhook URL into the config file instead of passing `--post-url` (which would
    /// override the file, also on reload).
    pub url_in_file: bool,
    /// Log one JSON object per line (`--log-format json`).
    pub json_log: bool,
    /// Serve the operator API on a free port, with `API_TOKEN`.
    pub api: bool,
    /// Serve group chat on `MUC`.
    pub muc: bool,
    /// The server keeps messages for offline users (see `ServerSetup::offline`).
    pub offline: bool,
    /// stanzahook's log filter (`RUST_LOG`), where a test reads debug lines.
    pub log: Option<&'a str>,
    /// Run with `--dev`.
    pub dev: bool,
    /// Run `stanzahook dev` (with these extra arguments, and a prompt to type at) instead of `run`.
    pub dev_loop: Option<&'a [&'a str]>,
    /// How long to wait for the connection (filters are compiled, or built, before it).
    pub connect_wait: Option<Duration>,
}

impl Bridge {
    /// A running bridge, or `None` (with a loud message) where its server is missing outside CI.
    pub async fn start(options: Options<'_>) -> Option<Bridge> {
        let mut setup = ServerSetup::default().component(DOMAIN, SECRET).user("alice", "alicepw").user("bob", "bobpw");
        if options.muc {
            setup = setup.muc(MUC);
        }
        if options.offline {
            setup = setup.offline_messages();
        }
        let server = options.server.start(&setup)?;
        let webhook = TestWebhook::start().await.expect("webhook starts");
        let config_dir = tempfile::tempdir().expect("tempdir");
        let config = config_dir.path().join("stanzahook.toml");
        let post_url = options.post_url.as_deref().unwrap_or(&webhook.url);
        // The API's port is taken only now, after the server is up: a port is free only until
        // someone binds it, and a server starting up is polled from many client ports.
        let api_port = options.api.then(|| testkit::free_port().expect("free port"));
        let api_toml =
            api_port.map(|port| format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{API_TOKEN}\"\n"));
        let toml = format!("{}{}", options.toml, api_toml.unwrap_or_default());
        let mut args = testkit::host::run_args(DOMAIN, &server.component_addr(), SECRET, post_url, Some(&config));
        if options.url_in_file {
            std::fs::write(&config, format!("post_url = {post_url:?}\n{toml}")).expect("write config");
            let flag = args.iter().position(|a| a == "--post-url").expect("run_args passes --post-url");
            args.drain(flag..flag + 2);
        } else {
            std::fs::write(&config, &toml).expect("write config");
        }
        if options.json_log {
            args.extend(["--log-format".to_owned(), "json".to_owned()]);
        }
        if options.dev {
            args.push("--dev".to_owned());
        }
        if let Some(stanzas) = options.stanzas {
            args.extend(["--stanzas".to_owned(), stanzas.to_owned()]);
        }
        if let Some(extra) = options.dev_loop {
            args[0] = "dev".to_owned();
            args.extend(extra.iter().map(|a| (*a).to_owned()));
        }
        let mut host = match (options.dev_loop, options.log) {
            (Some(_), _) => HostProcess::start_at_a_prompt(stanzahook_bin(), &args),
            (None, Some(filter)) => HostProcess::start_logging(stanzahook_bin(), &args, filter),
            (None, None) => HostProcess::start(stanzahook_bin(), &args),
        }
        .expect("stanzahook starts");
        let connect_wait = options.connect_wait.unwrap_or(CONNECT_WAIT);
        if let Err(e) = host.wait_for_log("connected, serving", connect_wait).await {
            panic!("stanzahook did not connect: {e:#}\n{}", host.log());
        }
        let alice = match XmppClient::login(server.c2s_port(), "alice", "alicepw").await {
            Ok(client) => client,
            Err(e) => panic!("alice cannot log in: {e:#}\n{} log:\n{}", server.name(), server.log()),
        };
        let api = api_port.map(|port| format!("http://127.0.0.1:{port}"));
        Some(Bridge { server, webhook, host, alice, api, config, args, _config_dir: config_dir })
    }

    /// Stops stanzahook (SIGTERM) and starts it again with the same command line and config file,
    /// waiting until it is connected.
    pub async fn restart_host(&mut self) {
        self.host.terminate().expect("SIGTERM");
        self.host.wait_exit(CONNECT_WAIT).await.expect("stanzahook exits");
        self.host = HostProcess::start(stanzahook_bin(), &self.args).expect("stanzahook starts again");
        self.host.wait_for_log("connected, serving", CONNECT_WAIT).await.expect("stanzahook connects again");
    }

    /// Waits until the webhook has seen `n` requests, and asserts it saw no more.
    pub async fn webhook_saw(&self, n: usize) -> Vec<testkit::webhook::Recorded> {
        let requests = match self.webhook.wait_for(n, WAIT).await {
            Ok(requests) => requests,
            Err(e) => panic!("{e}; host log:\n{}", self.host.log()),
        };
        assert_eq!(requests.len(), n, "webhook requests; host log:\n{}", self.host.log());
        requests
    }

    /// Alice sends `text` to `node@DOMAIN`; returns the one message that comes back.
    pub async fn ask(&mut self, node: &str, text: &str) -> testkit::Element {
        self.alice.send(&message(&format!("{node}@{DOMAIN}"), text)).await.expect("send");
        let (reply, others) =
            self.alice.expect(WAIT, &format!("answer from {node}"), |el| el.name() == "message").await.expect("reply");
        assert!(others.is_empty(), "unexpected: {others:?}");
        reply
    }

    /// Asserts that alice receives nothing for a while.
    pub async fn expect_silence(&mut self) {
        let got = self.alice.drain(QUIET).await.expect("client ok");
        assert!(
            got.is_empty(),
            "expected no stanza, got: {:?}\nhost log:\n{}\n{} log:\n{}",
            got.iter().map(String::from).collect::<Vec<_>>(),
            self.host.log(),
            self.server.name(),
            self.server.log()
        );
    }
}

/// stanzahook between the fake XEP-0114 server (played by the test) and the test webhook.
pub struct FakeBridge {
    pub server: testkit::FakeComponentServer,
    pub webhook: testkit::TestWebhook,
    pub host: HostProcess,
    _config_dir: tempfile::TempDir,
}

impl FakeBridge {
    /// Starts stanzahook with extra TOML config; the test then accepts its connection.
    pub async fn start(toml: &str) -> FakeBridge {
        let webhook = testkit::TestWebhook::start().await.expect("webhook");
        FakeBridge::start_with(toml, webhook, None, &[]).await
    }

    /// Starts stanzahook calling `webhook`, at `post_url` when given (the webhook's own URL with
    /// credentials, say), with extra environment variables.
    pub async fn start_with(
        toml: &str,
        webhook: testkit::TestWebhook,
        post_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> FakeBridge {
        let server = testkit::FakeComponentServer::bind().await.expect("bind");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("stanzahook.toml");
        // These tests read the raw stream and count its replies: the `composing` a slow webhook
        // call shows (tested in `vocabulary.rs`) would be one more message on it.
        std::fs::write(&config, format!("{toml}\n[courtesy]\ntyping = false\n")).expect("write config");
        let post_url = post_url.unwrap_or(&webhook.url);
        let args = testkit::host::run_args(DOMAIN, &server.addr, SECRET, post_url, Some(&config));
        let host = HostProcess::start_with_env(stanzahook_bin(), &args, env).expect("start");
        FakeBridge { server, webhook, host, _config_dir: dir }
    }

    /// Sends alice's `text` to the webhook's 3-second `slow` node and waits until the call is
    /// under way.
    pub async fn slow_call_under_way(&self, session: &mut testkit::fake_server::FakeSession, text: &str) {
        session
            .send(&format!(
                "<message from='alice@localhost/r' to='slow@{DOMAIN}' type='chat'><body>{text}</body></message>"
            ))
            .await
            .expect("send");
        self.webhook.wait_for(1, WAIT).await.expect("the webhook is working on it");
    }
}

/// The message alice sends to `to` with `body`, written as XML.
pub fn message(to: &str, body: &str) -> String {
    let mut escaped = String::new();
    for c in body.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '&' => escaped.push_str("&amp;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    format!("<message to='{to}' type='chat'><body>{escaped}</body></message>")
}
