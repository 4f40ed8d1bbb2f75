//! The quick start's round trip, told as it happens: a throwaway Prosody on loopback, the example
//! echo webhook (Python), stanzahook between them, and alice sending a message as a real client.
//! The `demo` binary prints it (`scripts/quickstart`); a test runs it and reads the transcript.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::body;
use crate::{HostProcess, Prosody, ServerSetup, TestServer, XmppClient};

const DOMAIN: &str = "bot.localhost";
const SECRET: &str = "quickstart-secret";

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

/// Runs the round trip with the stanzahook binary at `stanzahook`.
pub async fn run(stanzahook: &Path, out: &Transcript) -> anyhow::Result<()> {
    let prosody = Prosody::start(&ServerSetup::default().component(DOMAIN, SECRET).user("alice", "alicepw"))
        .context("starting Prosody (is the prosody package installed?)")?;
    say!(
        out,
        "[prosody]    running on 127.0.0.1: clients on port {}, components on port {}",
        prosody.c2s_port(),
        prosody.process().component_port
    );
    say!(out, "             (throwaway config and data in {})", prosody.dir().display());

    let webhook_port = crate::free_port()?;
    let mut webhook = Command::new("python3")
        .arg(crate::guests::repo_root().join("examples/webhooks/echo.py"))
        .arg(webhook_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting examples/webhooks/echo.py (is python3 installed?)")?;
    // Show what the webhook receives, in line with the rest of the story.
    if let Some(stderr) = webhook.stderr.take() {
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

    let args = crate::host::run_args(DOMAIN, &prosody.component_addr(), SECRET, &webhook_url, None);
    say!(
        out,
        "[stanzahook] stanzahook run --domain {DOMAIN} --server {} --secret … --post-url {webhook_url}",
        prosody.component_addr()
    );
    let mut host = HostProcess::start(stanzahook, &args)?;
    host.wait_for_log("connected, serving", Duration::from_secs(10)).await?;
    say!(out, "[stanzahook] connected to Prosody as the component {DOMAIN}");

    let mut alice = XmppClient::login(prosody.c2s_port(), "alice", "alicepw").await?;
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

    let _ = webhook.kill();
    let _ = webhook.wait();
    say!(out, "\nstanzahook's log:\n{}", host.log().trim_end());
    if !ok {
        bail!("the echo did not match what alice sent");
    }
    Ok(())
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
