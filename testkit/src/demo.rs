//! The quick start's round trip, told as it happens: a throwaway Prosody on loopback started from
//! `examples/servers/prosody.cfg.lua`, the example echo webhook (Python), stanzahook between them
//! (with `--dev`), and alice sending a message as a real client. The `demo` binary prints it
//! (`scripts/quickstart`), and with `--keep` leaves it all running for the reader's own XMPP
//! client; a test runs it and reads the transcript.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::body;
use crate::server::{EXAMPLE_DOMAIN as DOMAIN, EXAMPLE_SECRET as SECRET};
use crate::{HostProcess, Prosody, ServerSetup, TestServer, XmppClient};

/// The account the demo logs in with, and offers the reader.
const USER: (&str, &str) = ("alice", "alicepw");

/// What the round trip left running: kept for `--keep`, stopped when dropped.
#[derive(Debug)]
pub struct Running {
    prosody: Prosody,
    /// The example webhook.
    _webhook: crate::KilledOnDrop,
    host: HostProcess,
}

/// Where the story goes: printed as it happens, and kept for whoever asks.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    print: bool,
}

impl Transcript {
    /// A transcript that also prints each line.
    pub fn printing() -> Transcript {
        Transcript { lines: Arc::default(), print: true }
    }

    pub fn line(&self, line: String) {
        if self.print {
            println!("{line}");
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    pub fn text(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

macro_rules! say {
    ($out:expr, $($arg:tt)*) => { $out.line(format!($($arg)*)) };
}

/// Runs the round trip with the stanzahook binary at `stanzahook`; what it started keeps
/// running until the result is dropped.
pub async fn run(stanzahook: &Path, out: &Transcript) -> anyhow::Result<Running> {
    let prosody = Prosody::start(&ServerSetup::example().user(USER.0, USER.1))
        .context("starting Prosody (is the prosody package installed?)")?;
    say!(
        out,
        "[prosody]    examples/servers/prosody.cfg.lua on 127.0.0.1: clients on port {}, components on port {}",
        prosody.c2s_port(),
        prosody.process().component_port
    );
    say!(out, "             (free ports instead of 5222 and 5347; its data and log in {})", prosody.dir().display());

    let webhook_port = crate::free_port()?;
    let mut webhook = crate::KilledOnDrop(
        Command::new("python3")
            .arg(crate::guests::repo_root().join("examples/webhooks/echo.py"))
            .arg(webhook_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting examples/webhooks/echo.py (is python3 installed?)")?,
    );
    // Show what the webhook receives, in line with the rest of the story.
    if let Some(stderr) = webhook.0.stderr.take() {
        let webhook_out = out.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(event) = line.strip_prefix("echo webhook: received ") {
                    say!(webhook_out, "[webhook]    ← POST {event}");
                }
            }
        });
    }
    let webhook_url = format!("http://127.0.0.1:{webhook_port}/");
    wait_for_port(webhook_port).await?;
    say!(out, "[webhook]    examples/webhooks/echo.py on {webhook_url}");

    let mut args = crate::host::run_args(DOMAIN, &prosody.component_addr(), SECRET, &webhook_url, None);
    args.push("--dev".to_owned());
    say!(
        out,
        "[stanzahook] stanzahook run --domain {DOMAIN} --server {} --secret … --post-url {webhook_url} --dev",
        prosody.component_addr()
    );
    let mut host = HostProcess::start(stanzahook, &args)?;
    host.wait_for_log("connected, serving", Duration::from_secs(10)).await?;
    say!(out, "[stanzahook] connected to Prosody as the component {DOMAIN}");

    let mut alice = XmppClient::login(prosody.c2s_port(), USER.0, USER.1).await?;
    say!(out, "[alice]      logged in as {}", alice.jid);
    let text = "Hello from the stanzahook quick start!";
    let to = format!("echo@{DOMAIN}");
    let started = Instant::now();
    alice.send(&format!("<message to='{to}' type='chat'><body>{text}</body></message>")).await?;
    say!(out, "[alice]      → {to}: {text}");
    let (reply, _) = alice.expect(Duration::from_secs(10), "the echo", |el| el.name() == "message").await?;
    let elapsed = started.elapsed();
    say!(
        out,
        "[alice]      ← {}: {}",
        reply.attr("from").unwrap_or("?"),
        body(&reply).unwrap_or_else(|| String::from(&reply))
    );
    say!(out, "\nround trip through Prosody, stanzahook and the webhook in {} ms", elapsed.as_millis());
    let ok = body(&reply).as_deref() == Some(text);
    // The --dev line of this message is written as the reply leaves: wait for it.
    let _ = host.wait_for_log("stanzahook::way", Duration::from_secs(2)).await;
    say!(out, "\nstanzahook's log (--dev: one line per stanza, the way it went):\n{}", host.log().trim_end());
    if !ok {
        bail!("the echo did not match what alice sent");
    }
    Ok(Running { prosody, _webhook: webhook, host })
}

impl Running {
    /// Keeps everything running until Ctrl-C, following stanzahook's log, after telling the
    /// reader how to log in with their own client.
    pub async fn keep(self, out: &Transcript) -> anyhow::Result<()> {
        self.tell(out);
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        say!(out, "\nstopping stanzahook, the webhook and Prosody");
        Ok(())
    }

    /// How to log in and what to try, then stanzahook's new log lines as they come.
    pub fn tell(&self, out: &Transcript) {
        let port = self.prosody.c2s_port();
        let (user, password) = USER;
        say!(
            out,
            "\nEverything keeps running until Ctrl-C. Log in with any XMPP client (Gajim, Dino, Profanity, Conversations):"
        );
        say!(out, "    address   {user}@localhost");
        say!(out, "    password  {password}");
        say!(out, "    server    127.0.0.1, port {port}, without TLS (loopback only: allow an unencrypted connection)");
        say!(out, "    Profanity: /connect {user}@localhost server 127.0.0.1 port {port} tls disable");
        say!(out, "and write to echo@{DOMAIN}: the webhook answers with what you wrote.");
        say!(out, "\nWhat to try next:");
        say!(out, "  - the lines below: what the webhook receives, and stanzahook's log, one line per stanza;");
        say!(
            out,
            "  - write a webhook of your own: any HTTP server answering JSON (the README's \"The JSON contract\"),"
        );
        say!(
            out,
            "    then run stanzahook against it the same way: stanzahook run --domain {DOMAIN} --server 127.0.0.1:{} \\",
            self.prosody.process().component_port
        );
        say!(out, "        --secret '{SECRET}' --post-url http://127.0.0.1:8080/ --dev");
        say!(out, "    (Ctrl-C this one first: the server takes one connection for {DOMAIN});");
        say!(out, "  - a filter: the README's \"Filters\", starting from examples/filters/commands.");
        say!(out, "");
        let printed = self.host.log().len();
        let log = self.host.log_path().to_owned();
        let follow = out.clone();
        std::thread::spawn(move || follow_log(&log, printed, &follow));
    }
}

/// Prints the lines added to stanzahook's log after `from` bytes, as they come.
fn follow_log(path: &Path, mut from: usize, out: &Transcript) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        // The file goes with the stanzahook process it belongs to.
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let Some(new) = text.get(from..) else { continue };
        // A line still being written waits for its end.
        let Some(end) = new.rfind('\n') else { continue };
        for line in new[..end].lines() {
            say!(out, "[stanzahook] {line}");
        }
        from += end + 1;
    }
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("the echo webhook did not listen on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
