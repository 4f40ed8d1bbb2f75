//! What a filter costs in each language (issue: Python and JavaScript filters). For the
//! `commands` example built from source in Rust, Python and JavaScript, prints:
//! 1. the full compile (an empty compile cache) and the recompile after a one-line edit (the
//!    edited source built anew; the function cache holds the first build's functions), with how
//!    many functions came from the function cache;
//! 2. instantiation and call times, and the host CPU per stanza (its `before` and `after` hooks,
//!    on one thread) with a fresh instance per call and with the instance kept;
//! 3. the end-to-end throughput of the stanzahook binary with that one filter against no filter,
//!    in the same run (a fake XMPP server, a local webhook), and stanzahook's CPU per stanza.
//!
//! Run with `cargo bench -p stanzahook --bench languages` (release build; needs
//! `scripts/install-deps --guests` for Python and JavaScript).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use stanzahook::filter::{BeforeDecision, CallReport, FilterLoader, FilterSettings, LoadedFilter};
use testkit::guests::Language;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: u32 = 2_000;
const E2E_STANZAS: usize = 5_000;
const WINDOW: usize = 16;

#[derive(Debug, Clone, Copy)]
enum Lang {
    Rust,
    Python,
    JavaScript,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut built = Vec::new();
    for lang in [Lang::Rust, Lang::Python, Lang::JavaScript] {
        match build(lang)? {
            Some(wasm) => built.push((lang, wasm)),
            None => println!("{lang:?}: skipped (its tools are not installed: scripts/install-deps --guests)"),
        }
    }
    for (lang, (wasm, edited)) in &built {
        compiles(*lang, wasm, edited.as_deref())?;
        per_stanza(wasm)?;
    }
    runtime.block_on(end_to_end(&built))
}

/// The example and, for the interpreted languages, a copy with a one-line edit.
fn build(lang: Lang) -> anyhow::Result<Option<(PathBuf, Option<PathBuf>)>> {
    let language = match lang {
        Lang::Rust => {
            if !testkit::guests::require_wasm_target() {
                return Ok(None);
            }
            return Ok(Some((testkit::guests::wasm("examples/filters", "commands")?, None)));
        }
        Lang::Python => Language::Python,
        Lang::JavaScript => Language::JavaScript,
    };
    if !testkit::guests::require_tools(language) {
        return Ok(None);
    }
    let wasm = testkit::guests::interpreted(language, "commands")?;
    let (dir, file) = match language {
        Language::Python => ("python", "app.py"),
        Language::JavaScript => ("js", "filter.js"),
    };
    let source = testkit::guests::repo_root().join(format!("examples/filters/{dir}/commands"));
    let edited_dir = std::env::temp_dir().join(format!("stanzahook-bench-{dir}-edited"));
    std::fs::create_dir_all(&edited_dir)?;
    let text = std::fs::read_to_string(source.join(file))?;
    std::fs::write(edited_dir.join(file), text.replacen("pong", "pong!", 1))?;
    let edited = edited_dir.join("commands.wasm");
    let out = testkit::guests::build_command(language, &edited_dir, &edited).output()?;
    if !out.status.success() {
        bail!("building the edited copy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Some((wasm, Some(edited))))
}

fn settings(wasm: &Path, reuse: bool) -> FilterSettings {
    let mut settings = FilterSettings::from_path(wasm.to_owned());
    settings.reuse_instances = reuse;
    settings
}

fn compiles(lang: Lang, wasm: &Path, edited: Option<&Path>) -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    let mut loader = FilterLoader::new(Some(cache.path().to_owned()));
    let size = std::fs::metadata(wasm)?.len();
    let started = Instant::now();
    let (_, line) = loader.load_alone(settings(wasm, true))?;
    println!("{lang:?}: commands, {:.1} MB", size as f64 / 1e6);
    println!("  full compile (empty caches): {:.2} s  [{line}]", started.elapsed().as_secs_f64());
    if let Some(edited) = edited {
        let started = Instant::now();
        let (_, line) = loader.load_alone(settings(edited, true))?;
        println!("  recompile after a one-line edit: {:.2} s  [{line}]", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// One stanza's hooks as the chain runs them for a message the filter passes on to the webhook.
fn one_stanza(filter: &LoadedFilter, event: &str, reply: &str, split: &mut (Duration, Duration)) -> anyhow::Result<()> {
    let mut add = |report: &CallReport| {
        split.0 += report.instantiate;
        split.1 += report.call;
    };
    let (verdict, report) = filter.before(event);
    add(&report);
    if !matches!(verdict?, BeforeDecision::Pass) {
        bail!("commands did not pass a plain message on");
    }
    let (verdict, report) = filter.after(event, 200, Some(reply));
    add(&report);
    verdict?;
    Ok(())
}

fn per_stanza(wasm: &Path) -> anyhow::Result<()> {
    let event = json!({"to": "echo@bot.localhost", "from": "alice@localhost/phone", "kind": "message",
        "type": "chat", "id": "m1", "body": "what is the weather tomorrow?",
        "stanza": "<message from='alice@localhost/phone' to='echo@bot.localhost' type='chat' id='m1'><body>what is the weather tomorrow?</body></message>"})
    .to_string();
    let reply = json!({"body": "Tomorrow: 14 °C, light rain."}).to_string();
    let mut loader = FilterLoader::new(stanzahook::filter::CompileCache::default_dir());
    for reuse in [false, true] {
        let (filter, _) = loader.load_alone(settings(wasm, reuse))?;
        let mut split = (Duration::ZERO, Duration::ZERO);
        for _ in 0..50 {
            one_stanza(&filter, &event, &reply, &mut split)?;
        }
        let mut split = (Duration::ZERO, Duration::ZERO);
        let cpu = cpu_time::ThreadTime::now();
        for _ in 0..CALLS {
            one_stanza(&filter, &event, &reply, &mut split)?;
        }
        let cpu = cpu.elapsed() / CALLS;
        println!(
            "  {}: host CPU {:.3} ms per stanza (before + after); per hook: instantiate {:.3} ms, call {:.3} ms",
            if reuse { "instance kept" } else { "fresh instances" },
            ms(cpu),
            ms(split.0 / (2 * CALLS)),
            ms(split.1 / (2 * CALLS))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn end_to_end(built: &[(Lang, (PathBuf, Option<PathBuf>))]) -> anyhow::Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_stanzahook"));
    let run = |toml: String| async move {
        testkit::fake_server::throughput(bin, &toml, E2E_STANZAS, WINDOW).await.context("a throughput run")
    };
    println!(
        "end to end: {E2E_STANZAS} messages, window {WINDOW}, the commands filter (its instance kept) against none"
    );
    // A no-filter run next to each filtered one: the shared machine's noise moves each ratio less.
    for (lang, (wasm, _)) in built {
        let (plain, plain_cpu) = run(String::new()).await?;
        let (filtered, filtered_cpu) = run(format!("[[filter]]\npath = {:?}\n", wasm.display().to_string())).await?;
        println!(
            "  {lang:?}: {filtered:.0} replies/s against {plain:.0} without ({:.0}%); stanzahook CPU {:.1} µs per stanza against {:.1}",
            100.0 * filtered / plain,
            filtered_cpu.as_secs_f64() * 1e6,
            plain_cpu.as_secs_f64() * 1e6
        );
    }
    Ok(())
}
