//! What filters cost (issue: filters). Prints, for a two-filter chain (`before` + `after`) on a
//! ~500-byte event, once with a fresh instance per call and once with instances kept between calls
//! (the test guest allows reuse when its `reuse` setting is `yes`):
//! 1. the host time added per stanza, split into instantiation, guest calls and JSON work, measured
//!    in-process on one thread (with that thread's CPU time beside it);
//! 2. the end-to-end throughput of the stanzahook binary with and without the chain, on the same
//!    machine in the same run, as a ratio: a fake XMPP server pumps messages with a window of
//!    outstanding stanzas through stanzahook to a local webhook and counts the replies.
//!
//! Run with `cargo bench -p stanzahook --bench filters` (release build; builds the guests first).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use stanzahook::filter::{AfterDecision, BeforeDecision, CallReport, FilterEngine, FilterSettings, LoadedFilter};

// The daemon's allocator, so that in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MICRO_STANZAS: u32 = 20_000;
const E2E_STANZAS: usize = 10_000;
const WINDOW: usize = 64;
const DOMAIN: &str = "bot.localhost";

fn main() -> anyhow::Result<()> {
    if !testkit::guests::require_wasm_target() {
        return Ok(());
    }
    let tag = testkit::guests::wasm("host/tests/guests", "tag")?;
    micro(&tag, Instances::Fresh)?;
    micro(&tag, Instances::Kept)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(end_to_end(&tag))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Instances {
    Fresh,
    Kept,
}

impl Instances {
    fn describe(self) -> &'static str {
        match self {
            Instances::Fresh => "fresh instance per call",
            Instances::Kept => "instances kept between calls",
        }
    }

    /// The test guest's `reuse` setting.
    fn setting(self) -> &'static str {
        match self {
            Instances::Fresh => "no",
            Instances::Kept => "yes",
        }
    }
}

fn settings(path: &Path, name: &str, instances: Instances) -> FilterSettings {
    let mut s = FilterSettings::from_path(path.to_owned());
    s.name = name.to_owned();
    s.config.insert("tag".into(), name.to_owned());
    s.config.insert("reuse".into(), instances.setting().to_owned());
    s
}

/// A message event of about 500 bytes, as stanzahook builds it.
fn event() -> Value {
    let body = "Could you tell me what the weather will be like tomorrow in Berlin, please?";
    let stanza = format!(
        "<message from=\"alice@example.org/phone-4f2a\" id=\"msg-8c1d2e\" to=\"weather@{DOMAIN}\" type=\"chat\">\
         <body>{body}</body><active xmlns=\"http://jabber.org/protocol/chatstates\"/>\
         <request xmlns=\"urn:xmpp:receipts\"/></message>"
    );
    json!({"to": format!("weather@{DOMAIN}"), "from": "alice@example.org/phone-4f2a", "kind": "message",
           "type": "chat", "id": "msg-8c1d2e", "body": body, "stanza": stanza})
}

#[derive(Default)]
struct Split {
    instantiate: Duration,
    calls: Duration,
    teardown: Duration,
}

impl Split {
    fn add(&mut self, report: &CallReport) {
        self.instantiate += report.instantiate;
        self.calls += report.call;
        self.teardown += report.teardown;
    }
}

/// One stanza through two filters the way the chain does it: JSON out, guest call, JSON back.
fn one_stanza(
    a: &LoadedFilter,
    b: &LoadedFilter,
    event: &Value,
    reply: &Value,
    split: &mut Split,
) -> anyhow::Result<()> {
    let seen_a = event.to_string();
    let (verdict, report) = a.before(&seen_a);
    split.add(&report);
    let BeforeDecision::Rewrite(seen_b) = verdict? else { bail!("tag filter did not rewrite") };
    let (verdict, report) = b.before(seen_b.as_str());
    split.add(&report);
    let BeforeDecision::Rewrite(_posted) = verdict? else { bail!("tag filter did not rewrite") };
    let mut reply_text = reply.to_string();
    for (filter, seen) in [(b, seen_b.as_str()), (a, seen_a.as_str())] {
        let (verdict, report) = filter.after(seen, 200, Some(&reply_text));
        split.add(&report);
        let AfterDecision::Replace(text) = verdict? else { bail!("tag filter did not replace") };
        reply_text = text.into_string();
    }
    // What the reply checks read.
    let _reply: Value = serde_json::from_str(&reply_text)?;
    Ok(())
}

fn micro(tag: &Path, instances: Instances) -> anyhow::Result<()> {
    let engine = FilterEngine::new(Default::default())?;
    let a = engine.load(settings(tag, "A", instances))?;
    let b = engine.load(settings(tag, "B", instances))?;
    if a.reuses_instances() != (instances == Instances::Kept) {
        bail!("the tag guest's reuse setting was not honoured");
    }
    let event = event();
    let reply = json!({"body": "Tomorrow in Berlin: 14 °C, light rain in the afternoon."});
    let mut warm = Split::default();
    for _ in 0..200 {
        one_stanza(&a, &b, &event, &reply, &mut warm)?;
    }
    let mut split = Split::default();
    let cpu = cpu_time::ThreadTime::now();
    let started = Instant::now();
    for _ in 0..MICRO_STANZAS {
        one_stanza(&a, &b, &event, &reply, &mut split)?;
    }
    let total = started.elapsed() / MICRO_STANZAS;
    let cpu = cpu.elapsed() / MICRO_STANZAS;
    let instantiate = split.instantiate / MICRO_STANZAS;
    let calls = split.calls / MICRO_STANZAS;
    let teardown = split.teardown / MICRO_STANZAS;
    let json = total.saturating_sub(instantiate + calls + teardown);
    println!(
        "filter chain, in-process: 2 filters (before + after), {}, {MICRO_STANZAS} stanzas, event {} bytes",
        instances.describe(),
        event.to_string().len()
    );
    println!(
        "  per stanza: {:.1} µs wall ({:.1} µs thread CPU) = instantiate 4 × {:.1} µs + guest calls 4 × {:.1} µs \
         + teardown 4 × {:.1} µs + JSON and glue {:.1} µs",
        micros(total),
        micros(cpu),
        micros(instantiate) / 4.0,
        micros(calls) / 4.0,
        micros(teardown) / 4.0,
        micros(json)
    );
    let target = if instances == Instances::Fresh { 50 } else { 20 };
    println!("  target: at most {target} µs per stanza");
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn end_to_end(tag: &Path) -> anyhow::Result<()> {
    let filters = |instances: Instances| {
        format!(
            "[[filter]]\npath = {path:?}\nname = \"A\"\n[filter.config]\ntag = \"A\"\nreuse = {reuse:?}\n\
             [[filter]]\npath = {path:?}\nname = \"B\"\n[filter.config]\ntag = \"B\"\nreuse = {reuse:?}\n",
            path = tag.display().to_string(),
            reuse = instances.setting()
        )
    };
    // The no-filter run goes first and last: the machine's noise moves the ratio less when each
    // filtered run has a baseline next to it.
    let (plain, plain_cpu) = throughput("").await?;
    let (fresh, fresh_cpu) = throughput(&filters(Instances::Fresh)).await?;
    let (kept, kept_cpu) = throughput(&filters(Instances::Kept)).await?;
    let (plain_again, _) = throughput("").await?;
    let plain = (plain + plain_again) / 2.0;
    println!(
        "end to end: stanzahook between a fake XMPP server and a local webhook, {E2E_STANZAS} messages, window {WINDOW}"
    );
    println!(
        "  no filters:  {plain:>8.0} replies/s (mean of a run before and after), stanzahook CPU {:>6.1} µs per stanza",
        micros(plain_cpu)
    );
    for (name, rate, cpu, target) in [("fresh", fresh, fresh_cpu, 60), ("kept", kept, kept_cpu, 80)] {
        println!(
            "  two filters, {name:<5} {rate:>8.0} replies/s, stanzahook CPU {:>6.1} µs per stanza  ({:.0}% of no filters; target at least {target}%)",
            micros(cpu),
            100.0 * rate / plain
        );
    }
    Ok(())
}

/// Replies per second through the stanzahook binary with `extra_toml`, and its CPU per stanza.
async fn throughput(extra_toml: &str) -> anyhow::Result<(f64, Duration)> {
    testkit::fake_server::throughput(Path::new(env!("CARGO_BIN_EXE_stanzahook")), extra_toml, E2E_STANZAS, WINDOW).await
}
