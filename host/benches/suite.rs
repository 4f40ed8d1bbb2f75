//! The performance suite (issue: performance). Everything runs in one process on this machine,
//! in the same run, so the figures compare:
//! - the floor: a bare HTTP client POSTing the same event JSON to the same webhook with the same
//!   concurrency (no XMPP, no conversion);
//! - stanzahook (the release binary) between a fake XMPP server played by this program, which
//!   pumps message stanzas with a window of outstanding ones and counts the replies, and the same
//!   minimal webhook (axum, answers `{"body": ...}`);
//! - scenarios: no filter and a two-filter chain with 1,000 senders, one sender (ordering on), a
//!   fixed 1,000 stanzas/s for latency, 10,000 stanzas in flight for memory, idle memory, start;
//! - at a fixed 2,000 stanzas/s, the relay floor beside stanzahook: a minimal relay process doing
//!   the same I/O per stanza and nothing else (`suite/relay_floor.rs`), so that what the machine
//!   charges for the round trip itself is measured apart from what stanzahook adds;
//! - the end-to-end baseline: a real Prosody and real clients (tokio-xmpp), the clients' messages
//!   routed back to themselves by Prosody alone, then to stanzahook's echo and back, so the server's
//!   own cost and what stanzahook adds to it are side by side (skipped without `prosody`);
//! - the delivery log's cost: no filter, 1,000 senders, with the log off, on (the default, bodies
//!   off) and keeping bodies, alternated over three rounds;
//! - with `STANZAHOOK_SOAK=SECONDS`, a soak at 1,000 stanzas/s that prints RSS over time, with a
//!   delivery log bounded by its bytes (4 MiB, bodies kept) and what the log holds
//!   (`STANZAHOOK_BENCH_ONLY=soak` runs the soak alone; `=prosody`, the Prosody baseline alone).
//!
//! Narrower runs: `STANZAHOOK_BENCH_PROFILE=SECONDS` (only a fixed rate, 2,000/s or
//! `STANZAHOOK_BENCH_RATE`, `0` for as fast as it goes, printing stanzahook's pid for a profiler,
//! then the relay floor at the same pace) and
//! `STANZAHOOK_BENCH_DELIVERY_LOG=ROUNDS` (only the delivery log's cost, that many rounds).
//! `STANZAHOOK_BENCH_PIN=1` pins stanzahook to one core and the load to the other.
//!
//! Run with `cargo bench -p stanzahook --bench suite`; BENCHMARKS.md explains the figures.
//! `STANZAHOOK_BENCH_BIN=/path/to/stanzahook` runs another build of the binary instead;
//! `STANZAHOOK_BENCH_TOML` adds config tables to every run (`"[courtesy]\ntyping = false"`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use testkit::{HostProcess, Prosody, ServerSetup, TestServer, XmppClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

#[path = "suite/relay_floor.rs"]
mod relay_floor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAIN: &str = "bot.localhost";
const SECRET: &str = "bench";
const STANZAS: usize = 20_000;
/// The fixed rate of the moderate-load row: what a busy real server sends a component.
const MODERATE_RATE: f64 = 2000.0;
const WINDOW: usize = 64;
/// Messages per run through Prosody, as many as the other runs: Prosody (Lua, one thread) routes
/// 10,000–20,000 a second here, the slowest run (one message at a time, through stanzahook)
/// 2,000–3,000, so the section's four runs and warm-ups take 15–20 s on two cores.
const PROSODY_MESSAGES: usize = 20_000;
/// How long the client waits for the next reply before the run counts as stalled.
const STALL: Duration = Duration::from_secs(30);

/// The webhook every run talks to: answers `{"body": <body>}` at once, or after `hold` ms when
/// the stanza's local part is `hold` (to keep stanzas in flight).
async fn start_webhook() -> anyhow::Result<String> {
    async fn hook(body: Bytes) -> Response {
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if event["to"].as_str().is_some_and(|to| to.starts_with("hold@")) {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let answer = json!({"body": event["body"]}).to_string();
        (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], answer).into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(hook);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/"))
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    replies: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// stanzahook's CPU time over the run.
    cpu: Option<Duration>,
    peak_rss: Option<u64>,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.replies as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(index).copied().unwrap_or_default()
    }
}

/// How stanzas are offered: with a window of outstanding ones, or at a fixed rate.
#[derive(Debug, Clone, Copy)]
enum Pace {
    Window(usize),
    Rate(f64),
}

fn event_body(i: usize, senders: usize) -> String {
    json!({
        "to": format!("echo@{DOMAIN}"), "from": format!("user{}@localhost/r", i % senders), "kind": "message",
        "type": "chat", "id": format!("m{i}"), "body": format!("n{i}"),
        "stanza": format!("<message from=\"user{}@localhost/r\" id=\"m{i}\" to=\"echo@{DOMAIN}\" type=\"chat\"><body>n{i}</body></message>", i % senders),
    })
    .to_string()
}

/// Baseline (1): the same event JSON POSTed straight to the webhook.
async fn floor(url: &str, stanzas: usize, pace: Pace) -> anyhow::Result<Run> {
    let client = reqwest::Client::new();
    let window = match pace {
        Pace::Window(w) => w,
        Pace::Rate(_) => 4096,
    };
    let credits = Arc::new(Semaphore::new(window));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(stanzas)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..stanzas {
        if let Pace::Rate(rate) = pace {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = credits.clone().acquire_owned().await?;
        let (client, url, latencies) = (client.clone(), url.to_owned(), latencies.clone());
        let body = event_body(i, 1000);
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = match client.post(url).header("content-type", "application/json").body(body).send().await {
                Ok(response) => response.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok && let Ok(mut l) = latencies.lock() {
                l.push(sent.elapsed());
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Run { replies: latencies.len(), elapsed, latencies, cpu: None, peak_rss: None })
}

/// stanzahook started with `toml`, connected to a fake server; the session's two halves.
struct Host {
    process: HostProcess,
    reader: tokio::net::tcp::OwnedReadHalf,
    writer: tokio::net::tcp::OwnedWriteHalf,
    _dir: tempfile::TempDir,
    started_to_ready: Duration,
}

/// A config file holding `toml`, in a directory that lives as long as the returned handle.
fn config_file(toml: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("stanzahook.toml");
    std::fs::write(&config, toml).context("writing stanzahook's config")?;
    Ok((dir, config))
}

/// The release binary serving `DOMAIN` through the XMPP server at `server`, with `RUST_LOG=log`;
/// with `STANZAHOOK_BENCH_PIN`, on the last core (see `pin_load`).
fn launch(server: &str, webhook: &str, config: &Path, log: &str) -> anyhow::Result<HostProcess> {
    launch_pinned(&host_bin(), testkit::host::run_args(DOMAIN, server, SECRET, webhook, Some(config)), log)
}

/// `bin args` on stanzahook's core with `STANZAHOOK_BENCH_PIN`, else where the kernel puts it.
fn launch_pinned(bin: &Path, args: Vec<String>, log: &str) -> anyhow::Result<HostProcess> {
    match pinned_cores() {
        Some((_, host_core)) => {
            let mut pinned = vec!["-c".to_owned(), host_core.to_string(), bin.display().to_string()];
            pinned.extend(args);
            // taskset execs the binary: the pid, and so the CPU and RSS read from /proc, are its.
            HostProcess::start_logging(Path::new("taskset"), &pinned, log)
        }
        None => HostProcess::start_logging(bin, &args, log),
    }
}

/// `STANZAHOOK_BENCH_PIN=1`: the load generator (this process: fake server, webhook, clients) on
/// the first core, stanzahook on the last, so that the two do not trade places on the cores
/// from run to run: on this shared 2-core VM that halves the spread of CPU per stanza between
/// alternated runs. Prosody, where it runs, is not pinned. `None` without it or with one core.
fn pinned_cores() -> Option<(usize, usize)> {
    std::env::var_os("STANZAHOOK_BENCH_PIN")?;
    let cores = cores();
    (cores >= 2).then(|| (0, cores - 1))
}

/// Pins this process to the load generator's core, with `STANZAHOOK_BENCH_PIN`.
fn pin_load() -> anyhow::Result<()> {
    let Some((load_core, _)) = pinned_cores() else { return Ok(()) };
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", &load_core.to_string(), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux) for STANZAHOOK_BENCH_PIN")?;
    anyhow::ensure!(status.success(), "taskset could not pin the benchmark: {status}");
    Ok(())
}

/// stanzahook's log filter: `STANZAHOOK_BENCH_LOG`, or warnings only, so logging costs nothing.
fn bench_log() -> String {
    std::env::var("STANZAHOOK_BENCH_LOG").unwrap_or_else(|_| "warn".into())
}

async fn start_host(webhook: &str, toml: &str) -> anyhow::Result<Host> {
    let (dir, config) = config_file(toml)?;
    start_on_fake_server(dir, |server| launch(server, webhook, &config, &bench_log())).await
}

/// The relay floor (this binary, run as `relay-floor`) in stanzahook's place, on its core.
async fn start_relay_floor(webhook: &str) -> anyhow::Result<Host> {
    let bin = std::env::current_exe().context("finding the benchmark's own binary for the relay floor")?;
    let dir = tempfile::tempdir()?;
    start_on_fake_server(dir, |server| launch_pinned(&bin, relay_floor::args(server, DOMAIN, SECRET, webhook), "warn"))
        .await
}

/// A fake server, and the process `start` launches connected to it.
async fn start_on_fake_server(
    dir: tempfile::TempDir,
    start: impl FnOnce(&str) -> anyhow::Result<HostProcess>,
) -> anyhow::Result<Host> {
    let server = testkit::FakeComponentServer::bind().await?;
    let started = Instant::now();
    let process = start(&server.addr)?;
    let session =
        server.accept(Duration::from_secs(120)).await.context("stanzahook (or the relay floor) did not connect")?;
    let started_to_ready = started.elapsed();
    let (stream, _) = session.into_parts();
    let (reader, writer) = stream.into_split();
    Ok(Host { process, reader, writer, _dir: dir, started_to_ready })
}

/// Pumps `stanzas` messages from `senders` senders (to `node@DOMAIN`) and waits for every reply.
async fn pump(host: Host, stanzas: usize, senders: usize, pace: Pace, node: &str) -> anyhow::Result<(Run, Host)> {
    let Host { process, mut reader, mut writer, _dir, started_to_ready } = host;
    let sent_at: Arc<Mutex<HashMap<usize, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(stanzas)));
    let window = match pace {
        Pace::Window(w) => w,
        Pace::Rate(_) => stanzas,
    };
    let credits = Arc::new(Semaphore::new(window));
    let cpu_before = process.cpu_time()?;
    let started = Instant::now();
    let (writer_credits, writer_sent, node) = (credits.clone(), sent_at.clone(), node.to_owned());
    let writing = tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..stanzas {
            if let Pace::Rate(rate) = pace {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let Ok(permit) = writer_credits.acquire().await else { break };
            permit.forget();
            batch.clear();
            batch.push_str(&format!(
                "<message from='user{}@localhost/r' to='{node}@{DOMAIN}' type='chat' id='m{i}'><body>n{i}</body></message>",
                i % senders
            ));
            if let Ok(mut s) = writer_sent.lock() {
                s.insert(i, Instant::now());
            }
            if writer.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut latencies = Vec::with_capacity(stanzas);
    let mut carry = String::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut peak_rss = 0;
    while latencies.len() < stanzas {
        let n = tokio::time::timeout(Duration::from_secs(60), reader.read(&mut chunk))
            .await
            .context("replies stalled")??;
        if n == 0 {
            bail!("stanzahook closed the stream after {} replies; its log:\n{}", latencies.len(), process.log());
        }
        let now = Instant::now();
        carry.push_str(&String::from_utf8_lossy(&chunk[..n]));
        let mut consumed = 0;
        while let Some(end) = carry[consumed..].find("</body>") {
            let end = consumed + end;
            if let Some(start) = carry[consumed..end].rfind("<body>n") {
                // Filters append their tags to the body: the number is its leading digits.
                let text = &carry[consumed + start + "<body>n".len()..end];
                let digits = &text[..text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len())];
                if let Ok(i) = digits.parse::<usize>()
                    && let Some(at) = sent_at.lock().ok().and_then(|mut s| s.remove(&i))
                {
                    latencies.push(now - at);
                    credits.add_permits(1);
                }
            }
            consumed = end + "</body>".len();
        }
        carry.drain(..consumed);
        if latencies.len() % 1000 == 0 {
            peak_rss = peak_rss.max(process.peak_rss().unwrap_or(0));
        }
    }
    let elapsed = started.elapsed();
    let cpu = process.cpu_time()?.saturating_sub(cpu_before);
    peak_rss = peak_rss.max(process.peak_rss()?);
    let writer = writing.await?;
    let run = Run { replies: latencies.len(), elapsed, latencies, cpu: Some(cpu), peak_rss: Some(peak_rss) };
    Ok((run, Host { process, reader, writer, _dir, started_to_ready }))
}

/// One shape of load through a real Prosody: (a) without stanzahook, (b) with it.
#[derive(Debug)]
struct ThroughProsody {
    /// What the load was, for the summary line.
    shape: &'static str,
    alone: Run,
    with_host: Run,
    /// Prosody's CPU time per message in (a) and in (b).
    server_cpu: [Duration; 2],
}

/// The Prosody row with one message at a time.
const ONE_CLIENT: &str = "1 client, window 1";

/// Clients logged in as alice, each its own resource and so its own sender to stanzahook.
const PROSODY_CLIENTS: usize = 8;
/// Each client's window in the parallel runs: 64 messages outstanding in all, as elsewhere.
const PROSODY_CLIENT_WINDOW: usize = WINDOW / PROSODY_CLIENTS;

/// Baseline (2): a real Prosody and real clients. Prints a row per run and returns the pairs;
/// without `prosody` on this machine, says so loudly and returns none (the rest still runs).
async fn prosody_baseline(webhook: &str, base: &str) -> anyhow::Result<Vec<ThroughProsody>> {
    if !testkit::on_path("prosody") {
        eprintln!(
            "\n!!!!! SKIPPED: the Prosody baseline (`prosody` is not installed: apt-get install prosody) !!!!!\n"
        );
        return Ok(Vec::new());
    }
    let setup = ServerSetup::default().component(DOMAIN, SECRET).user("alice", "alicepw");
    let prosody = Prosody::start(&setup).context("starting Prosody")?;
    let (host, _config_dir) = start_host_on(&prosody, webhook, base).await?;
    let mut clients = Vec::new();
    for _ in 0..PROSODY_CLIENTS {
        let client = XmppClient::login(prosody.c2s_port(), "alice", "alicepw")
            .await
            .with_context(|| format!("alice cannot log in to Prosody; its log:\n{}", prosody.log()))?;
        clients.push(client);
    }
    let explain =
        |e: anyhow::Error| e.context(format!("Prosody's log:\n{}\nstanzahook's log:\n{}", prosody.log(), host.log()));
    // (a) goes to each client's own full JID: Prosody hands it straight back to the same session.
    let own = |client: &XmppClient| client.jid.clone();
    let echo = |_: &XmppClient| format!("echo@{DOMAIN}");

    // Warm both paths: Prosody's routes and caches, stanzahook's webhook connections.
    clients = converse_all(clients, own, 500, PROSODY_CLIENT_WINDOW).await.map_err(explain)?.0;
    clients = converse_all(clients, echo, 500, PROSODY_CLIENT_WINDOW).await.map_err(explain)?.0;
    let mut pairs = Vec::new();
    let shapes: [(&'static str, usize, usize); 2] =
        [("8 clients, window 8 each", PROSODY_CLIENTS, PROSODY_CLIENT_WINDOW), (ONE_CLIENT, 1, 1)];
    for (shape, senders, window) in shapes {
        let idle = clients.split_off(senders);
        let server_before = prosody.cpu_time()?;
        let alone;
        (clients, alone) = converse_all(clients, own, PROSODY_MESSAGES, window).await.map_err(explain)?;
        row(&format!("Prosody alone: {shape}, each to its own JID"), &alone);
        let (server_between, host_before) = (prosody.cpu_time()?, host.cpu_time()?);
        let mut with_host;
        (clients, with_host) = converse_all(clients, echo, PROSODY_MESSAGES, window).await.map_err(explain)?;
        with_host.cpu = Some(host.cpu_time()?.saturating_sub(host_before));
        with_host.peak_rss = Some(host.peak_rss()?);
        row(&format!("Prosody + stanzahook: {shape}, to echo@{DOMAIN}"), &with_host);
        let per_message = |cpu: Duration| cpu / u32::try_from(PROSODY_MESSAGES).unwrap_or(u32::MAX);
        let server_cpu = [
            per_message(server_between.saturating_sub(server_before)),
            per_message(prosody.cpu_time()?.saturating_sub(server_between)),
        ];
        pairs.push(ThroughProsody { shape, alone, with_host, server_cpu });
        clients.extend(idle);
    }
    Ok(pairs)
}

/// `messages` spread over `clients`, each on its own task with `window` outstanding, each sending
/// to `to(client)`; one run over all of them. Hands the clients back for the next run.
async fn converse_all(
    clients: Vec<XmppClient>,
    to: impl Fn(&XmppClient) -> String,
    messages: usize,
    window: usize,
) -> anyhow::Result<(Vec<XmppClient>, Run)> {
    let each = messages / clients.len().max(1);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let to = to(&client);
            tokio::spawn(async move {
                let run = converse(&mut client, &to, each, window).await;
                (client, run)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut latencies = Vec::new();
    for task in tasks {
        let (client, run) = task.await.context("a client's task failed")?;
        latencies.extend(run?.latencies);
        clients.push(client);
    }
    let run = Run { replies: latencies.len(), elapsed: started.elapsed(), latencies, cpu: None, peak_rss: None };
    Ok((clients, run))
}

/// stanzahook on a real Prosody's component port, once it says it is serving.
async fn start_host_on(
    prosody: &Prosody,
    webhook: &str,
    toml: &str,
) -> anyhow::Result<(HostProcess, tempfile::TempDir)> {
    let (dir, config) = config_file(toml)?;
    // Readiness is read from the log, so the connection's info lines stay on whatever the level.
    let log = format!("{},stanzahook::xmpp=info", bench_log());
    let mut process = launch(&prosody.component_addr(), webhook, &config, &log)?;
    process
        .wait_for_log("connected, serving", Duration::from_secs(60))
        .await
        .with_context(|| format!("stanzahook did not connect to Prosody; Prosody's log:\n{}", prosody.log()))?;
    Ok((process, dir))
}

/// The client sends `messages` chat messages to `to` with at most `window` unanswered, each timed
/// from just before its send to the arrival of the message that carries its number back.
async fn converse(client: &mut XmppClient, to: &str, messages: usize, window: usize) -> anyhow::Result<Run> {
    let mut sent_at: Vec<Option<Instant>> = vec![None; messages];
    let mut latencies = Vec::with_capacity(messages);
    let mut next = 0;
    let started = Instant::now();
    while latencies.len() < messages {
        // The client is one `&mut` for both directions, so the loop alternates: top the window
        // up, then take one stanza. `send` returns once the stanza is written, so the server
        // still has the rest of the window to work on; with the window full, one send per reply.
        while next < messages && next - latencies.len() < window {
            sent_at[next] = Some(Instant::now());
            let xml = format!("<message to='{to}' type='chat' id='p{next}'><body>n{next}</body></message>");
            client.send(&xml).await.with_context(|| format!("sending message {next}"))?;
            next += 1;
        }
        let stanza = client.recv_any(STALL).await?.with_context(|| {
            format!("no reply within {} s; {} of {messages} answered", STALL.as_secs(), latencies.len())
        })?;
        let Some(i) = reply_number(&stanza)? else { continue };
        let sent = sent_at.get_mut(i).and_then(Option::take).with_context(|| format!("unexpected reply n{i}"))?;
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    Ok(Run { replies: latencies.len(), elapsed, latencies, cpu: None, peak_rss: None })
}

/// The number a reply carries in its body (`n<i>`), or `None` for stanzas that are not replies
/// (the server's presence and roster traffic). The body, not the id, is what both paths keep:
/// a message reply built from the webhook's `body` carries no id (`payload::replies`).
fn reply_number(stanza: &testkit::Element) -> anyhow::Result<Option<usize>> {
    if stanza.name() != "message" {
        return Ok(None);
    }
    if stanza.attr("type") == Some("error") {
        let (condition, kind) = testkit::client::error_of(stanza).unwrap_or_default();
        bail!("a message came back as an error ({condition}, {kind}): {}", String::from(stanza));
    }
    let body = testkit::client::body(stanza).unwrap_or_default();
    Ok(body.strip_prefix('n').and_then(|digits| digits.parse().ok()))
}

/// One line: what stanzahook adds on top of Prosody at each window, as p50/p99 differences and
/// the throughput ratio (b)/(a).
fn prosody_summary(pairs: &[ThroughProsody]) {
    if pairs.is_empty() {
        println!("what stanzahook adds to a real Prosody: not measured (`prosody` is not installed)");
        return;
    }
    let delta = |b: Duration, a: Duration| format!("{:+.2}", (b.as_secs_f64() - a.as_secs_f64()) * 1e3);
    let parts: Vec<String> = pairs
        .iter()
        .map(|ThroughProsody { shape, alone: a, with_host: b, server_cpu: [cpu_a, cpu_b] }| {
            format!(
                "{shape}: p50 {} ms, p99 {} ms, replies/s {:.0}% of Prosody alone \
                 (Prosody's own CPU per message {:.0} → {:.0} µs: it routes each message twice)",
                delta(b.percentile(0.5), a.percentile(0.5)),
                delta(b.percentile(0.99), a.percentile(0.99)),
                100.0 * b.throughput() / a.throughput(),
                cpu_a.as_secs_f64() * 1e6,
                cpu_b.as_secs_f64() * 1e6,
            )
        })
        .collect();
    println!("what stanzahook adds to a real Prosody ({PROSODY_MESSAGES} messages a run): {}", parts.join("; "));
}

/// Two tag filters; `reuse` is the guest's setting that allows its instances to be kept.
fn filters_toml(tag: &Path, reuse: &str) -> String {
    format!(
        "[[filter]]\npath = {path:?}\nname = \"A\"\n[filter.config]\ntag = \"A\"\nreuse = \"{reuse}\"\n\
         [[filter]]\npath = {path:?}\nname = \"B\"\n[filter.config]\ntag = \"B\"\nreuse = \"{reuse}\"\n",
        path = tag.display().to_string()
    )
}

/// stanzahook's CPU time per reply in `run`, in µs.
fn cpu_per_stanza(run: &Run) -> f64 {
    run.cpu.unwrap_or_default().as_secs_f64() * 1e6 / run.replies.max(1) as f64
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

fn row(name: &str, run: &Run) {
    let cpu = run.cpu.map_or("–".into(), |c| format!("{:.3}", c.as_secs_f64() * 1000.0 / run.replies as f64));
    let rss = run.peak_rss.map_or("–".into(), mib);
    println!(
        "| {name} | {:.0} | {} | {} | {} | {cpu} | {rss} |",
        run.throughput(),
        ms(run.percentile(0.5)),
        ms(run.percentile(0.99)),
        ms(run.percentile(0.999)),
    );
}

/// The binary under test: `STANZAHOOK_BENCH_BIN=/path/to/stanzahook` runs another build (an
/// earlier commit's, to compare in one sitting), else this build's.
fn host_bin() -> std::path::PathBuf {
    std::env::var_os("STANZAHOOK_BENCH_BIN")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_stanzahook")), std::path::PathBuf::from)
}

fn main() -> anyhow::Result<()> {
    if let Some(relayed) = relay_floor::run_if_asked() {
        return relayed;
    }
    let tag = if testkit::guests::require_wasm_target() {
        Some(testkit::guests::wasm("host/tests/guests", "tag")?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // After the runtime's threads exist: `taskset -a` pins every thread of the process.
    pin_load()?;
    runtime.block_on(suite(tag.as_deref()))
}

async fn suite(tag: Option<&Path>) -> anyhow::Result<()> {
    let webhook = start_webhook().await?;
    let cache = tempfile::tempdir()?;
    // STANZAHOOK_BENCH_TOML: more config for every host run (tables only, e.g. to turn a default
    // off and see what it costs).
    let extra = std::env::var("STANZAHOOK_BENCH_TOML").unwrap_or_default();
    let base = format!(
        "compile_cache = {:?}\n{extra}\n[webhook]\nmax_in_flight = 10000\n",
        cache.path().display().to_string()
    );
    if let Some(seconds) = std::env::var("STANZAHOOK_BENCH_PROFILE").ok().and_then(|s| s.parse::<u64>().ok()) {
        return profile_run(&webhook, &base, seconds).await;
    }
    let soak_seconds = std::env::var("STANZAHOOK_SOAK").ok().and_then(|s| s.parse::<u64>().ok());
    if let (Some(seconds), Ok("soak")) = (soak_seconds, std::env::var("STANZAHOOK_BENCH_ONLY").as_deref()) {
        return soak(&webhook, &base, Duration::from_secs(seconds)).await;
    }
    if std::env::var("STANZAHOOK_BENCH_ONLY").as_deref() == Ok("prosody") {
        let pairs = prosody_baseline(&webhook, &base).await?;
        prosody_summary(&pairs);
        if let Some(one) = pairs.iter().find(|p| p.shape == ONE_CLIENT) {
            println!("CPU per stanza, one client through Prosody: {:.1} µs", cpu_per_stanza(&one.with_host));
        }
        return Ok(());
    }
    if let Some(rounds) = std::env::var("STANZAHOOK_BENCH_DELIVERY_LOG").ok().and_then(|s| s.parse::<usize>().ok()) {
        let log = delivery_log_cost(&webhook, &base, rounds).await?;
        print_delivery_log_cost(&log);
        return Ok(());
    }
    println!("machine: {} cores; {STANZAS} stanzas per run, window {WINDOW} unless said", cores());
    println!("binary: {}", host_bin().display());
    println!();
    println!("| run | replies/s | p50 ms | p99 ms | p99.9 ms | stanzahook CPU s / 1,000 | stanzahook peak RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");

    // Warm the webhook and the client's connections.
    floor(&webhook, 2000, Pace::Window(WINDOW)).await?;
    let floor_run = floor(&webhook, STANZAS, Pace::Window(WINDOW)).await?;
    row("floor: bare HTTP client, same bodies, window 64", &floor_run);

    let host = start_host(&webhook, &base).await?;
    let idle_rss = host.process.peak_rss()?;
    let ready = host.started_to_ready;
    let (_, host) = pump(host, 2000, 1000, Pace::Window(WINDOW), "echo").await?;
    let (plain, host) = pump(host, STANZAS, 1000, Pace::Window(WINDOW), "echo").await?;
    row("stanzahook, no filter, 1,000 senders", &plain);
    let (one, host) = pump(host, STANZAS / 4, 1, Pace::Window(WINDOW), "echo").await?;
    row("stanzahook, no filter, 1 sender (ordered)", &one);
    let rate = 1000.0;
    let floor_paced = floor(&webhook, 10_000, Pace::Rate(rate)).await?;
    row("floor at 1,000/s", &floor_paced);
    let (paced, host) = pump(host, 10_000, 1000, Pace::Rate(rate), "echo").await?;
    row("stanzahook at 1,000/s", &paced);
    // The rates a real server sends: each stanza handled alone, so per-stanza fixed costs
    // (wake-ups, syscalls) dominate, not the saturating path's.
    let (moderate, host) = pump(host, 20_000, 1000, Pace::Rate(MODERATE_RATE), "echo").await?;
    row("stanzahook at 2,000/s", &moderate);
    drop(host);
    let moderate_floor = relay_floor_run(&webhook, 20_000, Pace::Rate(MODERATE_RATE)).await?;
    row("relay floor at 2,000/s (a minimal relay process, same I/O)", &moderate_floor);

    let mut filtered = Vec::new();
    if let Some(tag) = tag {
        for (instances, reuse, target) in [("fresh instances", "no", 60), ("instances kept", "yes", 80)] {
            let host = start_host(&webhook, &format!("{base}{}", filters_toml(tag, reuse))).await?;
            let (_, host) = pump(host, 2000, 1000, Pace::Window(WINDOW), "echo").await?;
            let (run, host) = pump(host, STANZAS, 1000, Pace::Window(WINDOW), "echo").await?;
            row(&format!("stanzahook, two filters ({instances}), 1,000 senders"), &run);
            filtered.push((instances, run, target));
            drop(host);
        }
    }

    let log = delivery_log_cost(&webhook, &base, 3).await?;

    // 10,000 stanzas held in flight by a webhook that answers after 2 s.
    let host = start_host(&webhook, &base).await?;
    let (held, host) = pump(host, 10_000, 10_000, Pace::Window(10_000), "hold").await?;
    row("stanzahook, 10,000 in flight (webhook answers after 2 s)", &held);
    drop(host);

    let through_prosody = prosody_baseline(&webhook, &base).await?;

    let mut starts = Vec::new();
    if let Some(tag) = tag {
        let three = format!(
            "{base}{}[[filter]]\npath = {:?}\nname = \"C\"\n",
            filters_toml(tag, "no"),
            tag.display().to_string()
        );
        start_host(&webhook, &three).await?; // fills the compile cache
        for _ in 0..5 {
            starts.push(start_host(&webhook, &three).await?.started_to_ready);
        }
        starts.sort();
    }

    println!();
    prosody_summary(&through_prosody);
    println!();
    let host_p99 = paced.percentile(0.99).saturating_sub(floor_paced.percentile(0.99));
    println!("targets:");
    println!(
        "  throughput vs floor (1,000 senders, window 64): {:.0}% (target at least 70%)",
        100.0 * plain.throughput() / floor_run.throughput()
    );
    println!("  host-added p99 at 1,000/s: {} ms (target at most 1 ms)", ms(host_p99));
    println!("  CPU per stanza at 2,000/s: {:.1} µs (target at most 45 µs)", cpu_per_stanza(&moderate));
    println!(
        "  the relay floor's at 2,000/s: {:.1} µs; stanzahook {:.2}× it",
        cpu_per_stanza(&moderate_floor),
        cpu_per_stanza(&moderate) / cpu_per_stanza(&moderate_floor)
    );
    if let Some(one) = through_prosody.iter().find(|p| p.shape == ONE_CLIENT) {
        println!(
            "  CPU per stanza, one client through Prosody: {:.1} µs (target at most 40 µs)",
            cpu_per_stanza(&one.with_host)
        );
    }
    for (instances, run, target) in &filtered {
        println!(
            "  two filters ({instances}) vs no filter: {:.0}% (target at least {target}%); CPU per stanza {:.0} µs vs {:.0} µs",
            100.0 * run.throughput() / plain.throughput(),
            cpu_per_stanza(run),
            cpu_per_stanza(&plain),
        );
    }
    print_delivery_log_cost(&log);
    println!("  idle RSS (connected, before traffic): {} MiB (target at most 30 MiB)", mib(idle_rss));
    println!("  10,000 in flight: peak RSS {} MiB (target at most 200 MiB)", held.peak_rss.map_or("–".into(), mib));
    println!("  start to ready, no filter: {} ms (target at most 200 ms)", ms(ready));
    if let Some(median) = starts.get(starts.len() / 2) {
        println!("  start to ready, 3 cached filters: {} ms, median of 5 (target at most 300 ms)", ms(*median));
    }

    if let Some(seconds) = soak_seconds {
        soak(&webhook, &base, Duration::from_secs(seconds)).await?;
    } else {
        println!("  soak: not run (STANZAHOOK_SOAK=600 runs ten minutes at 1,000/s)");
    }
    Ok(())
}

/// `STANZAHOOK_BENCH_PROFILE=SECONDS`: only the 2,000/s load, for that long, with stanzahook's
/// pid printed first so that a profiler can attach (`perf record -g -p PID`), then the relay
/// floor at the same pace; `STANZAHOOK_BENCH_RATE` sets another rate.
async fn profile_run(webhook: &str, base: &str, seconds: u64) -> anyhow::Result<()> {
    let host = start_host(webhook, base).await?;
    let (_, host) = pump(host, 2000, 1000, Pace::Window(WINDOW), "echo").await?;
    let rate = std::env::var("STANZAHOOK_BENCH_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(MODERATE_RATE);
    eprintln!("stanzahook pid {}: {seconds} s at {rate}/s", host.process.pid());
    // Rate 0: as fast as it goes, window 64, for as many stanzas as 20,000/s would send.
    let (pace, stanzas, label) = if rate > 0.0 {
        (Pace::Rate(rate), (seconds as f64 * rate) as usize, format!("{rate}/s"))
    } else {
        (Pace::Window(WINDOW), seconds as usize * 20_000, "saturation".to_owned())
    };
    let (run, host) = pump(host, stanzas, 1000, pace, "echo").await?;
    drop(host);
    row(&format!("stanzahook at {label}"), &run);
    let floor = relay_floor_run(webhook, stanzas, pace).await?;
    row(&format!("relay floor at {label}"), &floor);
    println!("CPU per stanza: {:.1} µs", cpu_per_stanza(&run));
    println!(
        "relay floor CPU per stanza: {:.1} µs (stanzahook {:.2}× it)",
        cpu_per_stanza(&floor),
        cpu_per_stanza(&run) / cpu_per_stanza(&floor)
    );
    Ok(())
}

/// The relay floor under `pace` for `stanzas`, after the same warm-up as stanzahook's runs.
async fn relay_floor_run(webhook: &str, stanzas: usize, pace: Pace) -> anyhow::Result<Run> {
    let relay = start_relay_floor(webhook).await?;
    let (_, relay) = pump(relay, 2000, 1000, Pace::Window(WINDOW), "echo").await?;
    let (run, _relay) = pump(relay, stanzas, 1000, pace, "echo").await?;
    Ok(run)
}

/// Median throughput and CPU µs per stanza of each delivery-log setting.
struct LogCost {
    off: (f64, f64),
    on: (f64, f64),
    bodies: (f64, f64),
}

fn print_delivery_log_cost(log: &LogCost) {
    println!(
        "  delivery log on (bodies off) vs off: {:.1}% of the throughput, CPU per stanza {:.1} µs vs {:.1} µs \
         ({:+.1}%; target at least 95% of the throughput); keeping bodies: {:.1}%, {:.1} µs",
        100.0 * log.on.0 / log.off.0,
        log.on.1,
        log.off.1,
        100.0 * (log.on.1 / log.off.1 - 1.0),
        100.0 * log.bodies.0 / log.off.0,
        log.bodies.1,
    );
}

/// The delivery log off, on (bodies off, the default) and keeping bodies, alternated `rounds`
/// times so that the machine's drift falls on all three alike (`STANZAHOOK_BENCH_DELIVERY_LOG=7`
/// runs only this, seven rounds).
async fn delivery_log_cost(webhook: &str, base: &str, rounds: usize) -> anyhow::Result<LogCost> {
    let settings = [
        ("off", "[deliveries]\nlog = 0\nkeep_failed_for = \"off\"\n"),
        ("on, bodies off", ""),
        ("on, bodies kept", "[deliveries]\nkeep_bodies = true\n"),
    ];
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); settings.len()];
    for round in 0..rounds {
        for (i, (name, toml)) in settings.iter().enumerate() {
            let host = start_host(webhook, &format!("{base}{toml}")).await?;
            let (_, host) = pump(host, 2000, 1000, Pace::Window(WINDOW), "echo").await?;
            let (run, host) = pump(host, STANZAS, 1000, Pace::Window(WINDOW), "echo").await?;
            row(&format!("delivery log {name}, round {}", round + 1), &run);
            runs[i].push((run.throughput(), cpu_per_stanza(&run)));
            drop(host);
        }
    }
    // Each figure's own median: a run slowed by the machine is slow in throughput and CPU alike.
    let median = |v: Vec<(f64, f64)>| {
        let middle = |mut x: Vec<f64>| {
            x.sort_by(f64::total_cmp);
            x.get(x.len() / 2).copied().unwrap_or_default()
        };
        (middle(v.iter().map(|r| r.0).collect()), middle(v.iter().map(|r| r.1).collect()))
    };
    let mut runs = runs.into_iter().map(median);
    let (off, on, bodies) =
        (runs.next().unwrap_or_default(), runs.next().unwrap_or_default(), runs.next().unwrap_or_default());
    Ok(LogCost { off, on, bodies })
}

/// Runs at 1,000 stanzas/s for `length`, printing RSS each minute and what the delivery log
/// holds: bounded by 4 MiB, with bodies kept, so that the byte bound is the one that binds.
async fn soak(webhook: &str, base: &str, length: Duration) -> anyhow::Result<()> {
    let port = testkit::free_port()?;
    let bound = 4 * 1024 * 1024;
    let toml = format!(
        "{base}[deliveries]\nlog = 1000000\nlog_memory = {bound}\nkeep_bodies = true\n[api]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let mut host = start_host(webhook, &toml).await?;
    let minutes = (length.as_secs() / 60).max(1);
    let mut rss = Vec::new();
    for minute in 0..minutes {
        let (run, next) = pump(host, 60_000, 1000, Pace::Rate(1000.0), "echo").await?;
        host = next;
        let current = current_rss(&host.process)?;
        rss.push(current);
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.text().await?;
        let gauge =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0);
        let (entries, bytes) = (gauge("stanzahook_delivery_log_entries "), gauge("stanzahook_delivery_log_bytes "));
        println!(
            "  soak minute {}: {:.0} replies/s, RSS {} MiB, delivery log {entries} entries, {bytes} bytes (bound {bound})",
            minute + 1,
            run.throughput(),
            mib(current)
        );
        if bytes > bound {
            bail!("the delivery log holds {bytes} bytes, more than its bound of {bound}");
        }
    }
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        println!("  soak: RSS {} MiB after the first minute, {} MiB after the last", mib(*first), mib(*last));
    }
    Ok(())
}

fn current_rss(process: &HostProcess) -> anyhow::Result<u64> {
    process.rss()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
