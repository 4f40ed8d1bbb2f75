//! What hot reload costs and whether it loses anything (issue: hot reload). Prints:
//! 1. the time from a filter file's last write to the first reply made by the new version, over
//!    20 swaps (alternately written in place and renamed over) of content never seen before, so
//!    each swap compiles; debounce included;
//! 2. the stanzas lost or answered twice across those swaps, while a fake XMPP server pumps
//!    messages from 20 senders at ~1,000 per second, and the latency of the messages sent while
//!    a reload was under way (debounce and compile) beside that of the others, in the same run;
//! 3. the time from start to a completed handshake with no filter and with three example
//!    filters, with a cold and with a warm compile cache.
//!
//! Run with `cargo bench -p stanzahook --bench reload` (release build; builds the guests first).
//! `STANZAHOOK_BENCH_BIN=/path/to/stanzahook` runs another build of the binary instead, to compare
//! two versions on the same load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "bot.localhost";
const SWAPS: usize = 20;
const SWAP_EVERY: Duration = Duration::from_millis(500);
const SENDERS: usize = 20;
const STARTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// The `tag` test guest, tag "T": the reply to `m{n}` is `m{n}Tt`.
    Tag,
    /// The `commands` example: passes `m{n}` unchanged.
    Commands,
}

fn main() -> anyhow::Result<()> {
    if !testkit::guests::require_wasm_target() {
        return Ok(());
    }
    let tag = std::fs::read(testkit::guests::wasm("host/tests/guests", "tag")?)?;
    let examples: Vec<PathBuf> = ["commands", "reshape", "redact"]
        .iter()
        .map(|name| testkit::guests::wasm("examples/filters", name))
        .collect::<anyhow::Result<_>>()?;
    let commands = std::fs::read(&examples[0])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        swaps_under_load(&tag, &commands).await?;
        start_times(&examples).await
    })
}

/// `wasm` with a custom section appended: the same filter, but content the host has not seen,
/// so a reload must compile it (custom sections may close a component).
fn variant(wasm: &[u8], n: usize) -> Vec<u8> {
    let name = b"stanzahook-bench";
    let payload = n.to_string();
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.extend(leb128(section.len()));
    out.extend(section);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn host_bin() -> PathBuf {
    std::env::var_os("STANZAHOOK_BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stanzahook")), PathBuf::from)
}

fn config(dir: &Path, filters: &[(&str, &Path)], extra: &str) -> anyhow::Result<PathBuf> {
    let mut toml = format!("compile_cache = {:?}\n{extra}", dir.join("cache").display().to_string());
    for (name, path) in filters {
        toml.push_str(&format!(
            "[[filter]]\npath = {:?}\nname = {name:?}\n[filter.config]\ntag = \"T\"\n",
            path.display().to_string()
        ));
    }
    let path = dir.join("stanzahook.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

async fn swaps_under_load(tag: &[u8], commands: &[u8]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("live.wasm");
    std::fs::write(&live, variant(tag, 1000))?;
    let config = config(dir.path(), &[("live", &live)], "watch = true\n")?;
    let server = testkit::FakeComponentServer::bind().await?;
    let webhook = testkit::TestWebhook::start().await?;
    let args = testkit::host::run_args(DOMAIN, &server.addr, "bench", &webhook.url, Some(&config));
    let host = testkit::HostProcess::start_logging(&host_bin(), &args, "warn,stanzahook::reload=info")?;
    let session = server.accept(Duration::from_secs(60)).await.context("stanzahook did not connect")?;
    let (stream, _) = session.into_parts();
    let (mut reader, mut writer) = stream.into_split();

    // Replies as they arrive: (when, message number, which version answered).
    let replies: Arc<Mutex<Vec<(Instant, usize, Version)>>> = Arc::default();
    let collected = replies.clone();
    let reading = tokio::spawn(async move {
        let mut carry = String::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = Instant::now();
            carry.push_str(&String::from_utf8_lossy(&chunk[..n]));
            while let Some(end) = carry.find("</body>") {
                if let Some(start) = carry[..end].rfind("<body>") {
                    let text = &carry[start + 6..end];
                    let (digits, version) = match text.strip_suffix("Tt") {
                        Some(rest) => (rest, Version::Tag),
                        None => (text, Version::Commands),
                    };
                    if let Some(n) = digits.strip_prefix('m').and_then(|d| d.parse().ok()) {
                        collected.lock().map_err(|_| ()).map(|mut r| r.push((now, n, version))).ok();
                    }
                }
                carry.drain(..end + "</body>".len());
            }
        }
    });

    let stop = tokio_util::sync::CancellationToken::new();
    let stop_writing = stop.clone();
    let writing = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut sent_at = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while !stop_writing.is_cancelled() {
            tick.tick().await;
            sent_at.push(Instant::now());
            let xml = format!(
                "<message from='user{}@localhost/r' to='echo@{DOMAIN}' type='chat' id='m{sent}'><body>m{sent}</body></message>",
                sent % SENDERS
            );
            if writer.write_all(xml.as_bytes()).await.is_err() {
                break;
            }
            sent += 1;
        }
        (sent, sent_at, writer)
    });

    let mut latencies = Vec::new();
    let mut reloading = Vec::new();
    for swap in 0..SWAPS {
        tokio::time::sleep(SWAP_EVERY).await;
        let (bytes, version) = if swap % 2 == 0 {
            (variant(commands, swap), Version::Commands)
        } else {
            (variant(tag, swap), Version::Tag)
        };
        if swap % 2 == 0 {
            std::fs::write(&live, &bytes)?;
        } else {
            let aside = dir.path().join(".live.wasm.new");
            std::fs::write(&aside, &bytes)?;
            std::fs::rename(&aside, &live)?;
        }
        let written = Instant::now();
        let deadline = written + Duration::from_secs(30);
        let first_new = loop {
            let seen = replies
                .lock()
                .map_err(|_| anyhow::anyhow!("reader panicked"))?
                .iter()
                .find(|(at, _, v)| *at >= written && *v == version)
                .map(|(at, _, _)| *at);
            if let Some(at) = seen {
                break at;
            }
            if Instant::now() > deadline {
                bail!("swap {swap}: the new version never answered; host log:\n{}", host.log());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(first_new - written);
        reloading.push(written..first_new);
    }
    stop.cancel();
    let (sent, sent_at, _writer) = writing.await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while replies.lock().map_err(|_| anyhow::anyhow!("reader panicked"))?.len() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    reading.abort();
    let replies = replies.lock().map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let mut per_message: BTreeMap<usize, usize> = BTreeMap::new();
    // Each message's time to its reply, split by whether it was sent while a reload ran.
    let (mut during, mut between) = (Vec::new(), Vec::new());
    for (at, n, _) in replies.iter() {
        *per_message.entry(*n).or_default() += 1;
        let Some(sent) = sent_at.get(*n) else { continue };
        let took = at.saturating_duration_since(*sent);
        if reloading.iter().any(|window| window.contains(sent)) { during.push(took) } else { between.push(took) }
    }
    let lost = (0..sent).filter(|n| !per_message.contains_key(n)).count();
    let doubled: usize = per_message.values().map(|c| c.saturating_sub(1)).sum();

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "hot reload: {SWAPS} swaps of a filter (new content each time, so compiled), every {} ms, in place and by rename, \
         under ~1,000 messages/s from {SENDERS} senders",
        SWAP_EVERY.as_millis()
    );
    println!(
        "  last write → first reply by the new version: median {:.0} ms, max {:.0} ms (target at most 250 ms)",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    println!("  messages: {sent} sent, {lost} lost, {doubled} answered twice (target 0 and 0)");
    let (during, between) = (percentiles(&mut during), percentiles(&mut between));
    println!(
        "  time to reply, sent while a reload ran ({} messages): p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        during.count,
        ms(during.p50),
        ms(during.p99),
        ms(during.max)
    );
    println!(
        "  time to reply, sent between reloads ({} messages):    p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        between.count,
        ms(between.p50),
        ms(between.p99),
        ms(between.max)
    );
    println!("  p99 during a reload / p99 between reloads: {:.1}×", ms(during.p99) / ms(between.p99).max(1e-3));
    Ok(())
}

#[derive(Debug, Default)]
struct Percentiles {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn percentiles(times: &mut [Duration]) -> Percentiles {
    times.sort();
    let at = |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1))).copied();
    Percentiles {
        count: times.len(),
        p50: at(0.5).unwrap_or_default(),
        p99: at(0.99).unwrap_or_default(),
        max: times.last().copied().unwrap_or_default(),
    }
}

/// Spawn → handshake done, the median of `STARTS` runs.
async fn start_time(config: &Path) -> anyhow::Result<Duration> {
    let webhook = testkit::TestWebhook::start().await?;
    let mut times = Vec::new();
    for _ in 0..STARTS {
        let server = testkit::FakeComponentServer::bind().await?;
        let args = testkit::host::run_args(DOMAIN, &server.addr, "bench", &webhook.url, Some(config));
        let started = Instant::now();
        let host = testkit::HostProcess::start_logging(&host_bin(), &args, "warn")?;
        server.accept(Duration::from_secs(60)).await.with_context(|| format!("no connection; log:\n{}", host.log()))?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

async fn start_times(examples: &[PathBuf]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let none = start_time(&config(dir.path(), &[], "")?).await?;
    let names = ["commands", "reshape", "redact"];
    let filters: Vec<(&str, &Path)> = names.iter().copied().zip(examples.iter().map(PathBuf::as_path)).collect();
    // Cold: a fresh cache directory for the one start that is measured.
    let mut cold = Vec::new();
    for run in 0..STARTS {
        let run_dir = dir.path().join(format!("cold-{run}"));
        std::fs::create_dir(&run_dir)?;
        let config = config(&run_dir, &filters, "")?;
        let server = testkit::FakeComponentServer::bind().await?;
        let webhook = testkit::TestWebhook::start().await?;
        let args = testkit::host::run_args(DOMAIN, &server.addr, "bench", &webhook.url, Some(&config));
        let started = Instant::now();
        let _host = testkit::HostProcess::start_logging(&host_bin(), &args, "warn")?;
        server.accept(Duration::from_secs(60)).await?;
        cold.push(started.elapsed());
    }
    cold.sort();
    let warm = start_time(&config(&dir.path().join("cold-0"), &filters, "")?).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("start → handshake done (median of {STARTS}):");
    println!("  no filters:                       {:>6.0} ms (target at most 200 ms)", ms(none));
    println!("  3 example filters, cold cache:    {:>6.0} ms", ms(cold[cold.len() / 2]));
    println!("  3 example filters, warm cache:    {:>6.0} ms (target at most 300 ms)", ms(warm));
    Ok(())
}
