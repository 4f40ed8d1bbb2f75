//! Group chat under load (issue: group chat): a real Prosody with its `muc` component, 20 real
//! clients in one room with the bot, and 1,000 room messages a second through stanzahook to a
//! local webhook (which answers 204: no reply goes back into the room). Beside it, in the same
//! run, the same 20 clients send the same load as one-to-one chat to the bot. Prints, for each:
//! the messages that reached the webhook per second, the time from a client's send to the
//! webhook (p50, p99), and the CPU per message of stanzahook and of Prosody.
//!
//! Run with `cargo bench -p stanzahook --bench rooms` (release build). Skipped, loudly, without
//! `prosody`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::Value;
use testkit::{HostProcess, Prosody, ServerSetup, TestServer, XmppClient};

const DOMAIN: &str = "bot.localhost";
const SECRET: &str = "bench";
const MUC: &str = "rooms.localhost";
const CLIENTS: usize = 20;
/// Messages per second, all clients together.
const RATE: usize = 1_000;
const SECONDS: usize = 10;

/// When each message (by number) reached the webhook.
type Arrivals = Arc<Mutex<Vec<(usize, Instant)>>>;

/// A webhook that notes when each message arrived (its body is `m{n}`) and answers 204.
async fn start_webhook(arrivals: Arrivals) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let arrivals = arrivals.clone();
        async move {
            let now = Instant::now();
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let n = event["body"].as_str().and_then(|b| b.strip_prefix('m')).and_then(|n| n.parse().ok());
            if let (Some(n), Ok(mut seen)) = (n, arrivals.lock()) {
                seen.push((n, now));
            }
            StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/"))
}

struct Figures {
    delivered: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    host_cpu: Duration,
    server_cpu: Duration,
}

/// Each client sends its share of `RATE` for `SECONDS`, `xml(n)` being message `n`, reading what
/// the server sends it between sends (a room echoes every message to every occupant). The
/// clients are handed back for the next run.
async fn load(
    clients: Vec<XmppClient>,
    xml: impl Fn(usize) -> String + Clone + Send + 'static,
    arrivals: &Arrivals,
    host: &HostProcess,
    prosody: &Prosody,
) -> anyhow::Result<(Figures, Vec<XmppClient>)> {
    if let Ok(mut seen) = arrivals.lock() {
        seen.clear();
    }
    let total = RATE * SECONDS;
    let every = Duration::from_secs_f64(CLIENTS as f64 / RATE as f64);
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let (host_cpu, server_cpu) = (host.cpu_time()?, prosody.cpu_time()?);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        let xml = xml.clone();
        let sent_at = sent_at.clone();
        // Client c sends messages c, c + CLIENTS, c + 2·CLIENTS, …
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            for n in (c..total).step_by(CLIENTS) {
                if let Ok(mut sent) = sent_at.lock() {
                    sent[n] = Some(Instant::now());
                }
                client.send(&xml(n)).await?;
                next += every;
                while let Some(left) = next.checked_duration_since(Instant::now()) {
                    if client.recv_any(left).await?.is_none() {
                        break;
                    }
                }
            }
            anyhow::Ok(client)
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().map(|a| a.len()).unwrap_or(0) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let (host_cpu, server_cpu) = (host.cpu_time()? - host_cpu, prosody.cpu_time()? - server_cpu);
    let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("the webhook panicked"))?.clone();
    let sent_at = sent_at.lock().map_err(|_| anyhow::anyhow!("a client panicked"))?.clone();
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(n, at)| sent_at.get(*n).copied().flatten().map(|s| at.duration_since(s)))
        .collect();
    latencies.sort();
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    let delivered = arrivals.len();
    let per = |cpu: Duration| cpu / u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
    let figures = Figures {
        delivered,
        per_second: delivered as f64 / took.as_secs_f64(),
        p50: at(0.5).unwrap_or_default(),
        p99: at(0.99).unwrap_or_default(),
        host_cpu: per(host_cpu),
        server_cpu: per(server_cpu),
    };
    Ok((figures, clients))
}

fn row(name: &str, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  {name:<22} {:>6} of {} at the webhook, {:>6.0}/s; send → webhook p50 {:>6.2} ms, p99 {:>7.2} ms; \
         CPU per message: stanzahook {:>5.1} µs, Prosody {:>6.1} µs",
        f.delivered,
        RATE * SECONDS,
        f.per_second,
        ms(f.p50),
        ms(f.p99),
        us(f.host_cpu),
        us(f.server_cpu)
    );
}

fn main() -> anyhow::Result<()> {
    if !testkit::on_path("prosody") {
        println!("\n!!!!! SKIPPED: the rooms benchmark (`prosody` is not installed: apt-get install prosody) !!!!!\n");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let mut setup = ServerSetup::default().component(DOMAIN, SECRET).muc(MUC);
    for c in 0..CLIENTS {
        setup = setup.user(&format!("user{c}"), "pw");
    }
    let prosody = Prosody::start(&setup).context("starting Prosody")?;
    let arrivals: Arrivals = Arc::default();
    let webhook = start_webhook(arrivals.clone()).await?;
    let room = format!("load@{MUC}");
    // The occupant `quiet@` has the bot answer nothing to the room (the webhook answers 204).
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("stanzahook.toml");
    std::fs::write(&config, format!("[[room]]\njid = {room:?}\nnick = \"Bot\"\naddress = \"quiet@{DOMAIN}\"\n"))?;
    let args = testkit::host::run_args(DOMAIN, &prosody.component_addr(), SECRET, &webhook, Some(&config));
    let mut host = HostProcess::start_logging(
        std::path::Path::new(env!("CARGO_BIN_EXE_stanzahook")),
        &args,
        "warn,stanzahook::rooms=info",
    )?;
    host.wait_for_log("joined the room", Duration::from_secs(60)).await.context("the bot did not join")?;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut client = XmppClient::login(prosody.c2s_port(), &format!("user{c}"), "pw").await?;
        client.join_room(&room, &format!("user{c}"), None).await?;
        clients.push(client);
    }
    println!(
        "group chat: {CLIENTS} clients and the bot in one room of a real Prosody, {RATE} messages/s for {SECONDS} s, \
         the webhook answering 204; beside it the same load as one-to-one chat"
    );
    let room_xml = {
        let room = room.clone();
        move |n: usize| format!("<message to='{room}' type='groupchat'><body>m{n}</body></message>")
    };
    let chat_xml = |n: usize| format!("<message to='quiet@{DOMAIN}' type='chat'><body>m{n}</body></message>");
    // Alternating, so that a busy moment of the shared machine does not fall on one kind alone.
    for round in 0..2 {
        let (figures, back) = load(clients, room_xml.clone(), &arrivals, &host, &prosody).await?;
        row(&format!("room (run {})", round + 1), &figures);
        let (figures, back) = load(back, chat_xml, &arrivals, &host, &prosody).await?;
        row(&format!("one-to-one (run {})", round + 1), &figures);
        clients = back;
    }
    Ok(())
}
