//! The quick start's round trip, shown on screen: a throwaway Prosody on loopback, the example
//! echo webhook (Python), stanzahook between them, and alice sending a message as a real client.
//! Run through `scripts/quickstart`, which installs Prosody first where it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::{HostProcess, Prosody, ProsodySetup, XmppClient, client::body};

const DOMAIN: &str = "bot.localhost";
const SECRET: &str = "quickstart-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stanzahook = stanzahook_binary(&root)?;

    let prosody = Prosody::start(&ProsodySetup::default().component(DOMAIN, SECRET).user("alice", "alicepw"))
        .context("starting Prosody (is the prosody package installed?)")?;
    println!(
        "[prosody]    running on 127.0.0.1: clients on port {}, components on port {}",
        prosody.c2s_port, prosody.component_port
    );
    println!("             (throwaway config and data in {})", prosody.dir().display());

    let webhook_port = testkit::free_port()?;
    let mut webhook = Command::new("python3")
        .arg(root.join("examples/webhooks/echo.py"))
        .arg(webhook_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting examples/webhooks/echo.py (is python3 installed?)")?;
    // Show what the webhook receives, in line with the rest of the story.
    if let Some(stderr) = webhook.stderr.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(event) = line.strip_prefix("echo webhook: received ") {
                    println!("[webhook]    ← POST {event}");
                }
            }
        });
    }
    let webhook_url = format!("http://127.0.0.1:{webhook_port}/");
    wait_for_port(webhook_port).await?;
    println!("[webhook]    examples/webhooks/echo.py on {webhook_url}");

    let args = testkit::host::run_args(DOMAIN, &prosody.component_addr(), SECRET, &webhook_url, None);
    println!(
        "[stanzahook] stanzahook run --domain {DOMAIN} --server {} --secret … --post-url {webhook_url}",
        prosody.component_addr()
    );
    let mut host = HostProcess::start(&stanzahook, &args)?;
    host.wait_for_log("connected, serving", Duration::from_secs(10)).await?;
    println!("[stanzahook] connected to Prosody as the component {DOMAIN}");

    let mut alice = XmppClient::login(prosody.c2s_port, "alice", "alicepw").await?;
    println!("[alice]      logged in as {}", alice.jid);
    let text = "Hello from the stanzahook quick start!";
    let to = format!("echo@{DOMAIN}");
    let started = Instant::now();
    alice.send(&format!("<message to='{to}' type='chat'><body>{text}</body></message>")).await?;
    println!("[alice]      → {to}: {text}");
    let (reply, _) = alice.expect(Duration::from_secs(10), "the echo", |el| el.name() == "message").await?;
    let elapsed = started.elapsed();
    println!(
        "[alice]      ← {}: {}",
        reply.attr("from").unwrap_or("?"),
        body(&reply).unwrap_or_else(|| String::from(&reply))
    );
    println!("\nround trip through Prosody, stanzahook and the webhook in {} ms", elapsed.as_millis());
    let ok = body(&reply).as_deref() == Some(text);

    let _ = webhook.kill();
    let _ = webhook.wait();
    println!("\nstanzahook's log:\n{}", host.log().trim_end());
    if !ok {
        bail!("the echo did not match what alice sent");
    }
    Ok(())
}

fn stanzahook_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/stanzahook");
    if !bin.is_file() {
        bail!("{} not found: build it first (cargo build -p stanzahook)", bin.display());
    }
    Ok(bin)
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
