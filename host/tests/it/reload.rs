//! Hot reload (README: "Reloading while serving") with a real Prosody, client, webhook and guests: a filter file
//! replaced while a client keeps writing is swapped in without losing or doubling a stanza; a broken file never
//! replaces a working filter; a config edit takes effect without a reconnect.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, Options, WAIT, message};

const EXAMPLES: &str = "examples/filters";
const TEST_GUESTS: &str = "host/tests/guests";
/// A reload compiles the new file: seconds in a debug build on a busy machine.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

fn guest(workspace: &str, name: &str) -> Option<Vec<u8>> {
    if !testkit::guests::require_wasm_target() {
        return None;
    }
    let path = testkit::guests::wasm(workspace, name).expect("guest builds");
    Some(std::fs::read(path).expect("read guest"))
}

/// Which filter answered message `m{n}`: the `tag` guest (configured with tag "T") makes the
/// webhook see `m{n}T` and appends `t` to the reply; `commands` passes it unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Tag,
    Commands,
}

fn parse_reply(text: &str) -> (usize, Version) {
    let (digits, version) = match text.strip_suffix("Tt") {
        Some(rest) => (rest, Version::Tag),
        None => (text, Version::Commands),
    };
    let n = digits.strip_prefix('m').and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("odd reply {text:?}"));
    (n, version)
}

fn watched_filter(path: &Path) -> String {
    format!(
        "watch = true\n[[filter]]\npath = {:?}\nname = \"live\"\n[filter.config]\ntag = \"T\"\n",
        path.display().to_string()
    )
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Sends numbered messages every 20 ms, doing `swap` after the fifth, until the host has logged
/// one more reload than before (and five messages more); then collects exactly one reply per
/// message and returns who answered each, in order.
async fn stream_across_a_swap(b: &mut Bridge, first: usize, swap: impl FnOnce()) -> Vec<Version> {
    let reloads_before = count(&b.host.log(), "reloaded in");
    let mut swap = Some(swap);
    let mut sent = first;
    let mut after_reload = None;
    let started = Instant::now();
    loop {
        b.alice.send(&message(&format!("echo@{DOMAIN}"), &format!("m{sent}"))).await.expect("send");
        sent += 1;
        if sent - first == 5
            && let Some(swap) = swap.take()
        {
            swap();
        }
        if after_reload.is_none() && count(&b.host.log(), "reloaded in") > reloads_before {
            after_reload = Some(sent);
        }
        if after_reload.is_some_and(|at| sent >= at + 5) {
            break;
        }
        assert!(started.elapsed() < RELOAD_WAIT, "no reload within {RELOAD_WAIT:?}; host log:\n{}", b.host.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answered = vec![None; sent - first];
    for _ in first..sent {
        let (reply, _) = b.alice.expect(WAIT, "a reply", |el| el.name() == "message").await.expect("reply");
        let (n, version) = parse_reply(&body(&reply).unwrap_or_default());
        let slot = &mut answered[n - first];
        assert!(slot.is_none(), "m{n} answered twice");
        *slot = Some(version);
    }
    b.expect_silence().await;
    answered.into_iter().map(|v| v.expect("every message answered once")).collect()
}

/// One sender's stanzas are handled in order and each takes the chain current when it starts:
/// the answers switch from the old version to the new one once, and the last ones are new.
fn assert_switched(answers: &[Version], old: Version, new: Version) {
    let switch = answers.iter().position(|v| *v == new).expect("the new version answered");
    assert!(answers[..switch].iter().all(|v| *v == old), "{answers:?}");
    assert!(answers[switch..].iter().all(|v| *v == new), "old version after the new one: {answers:?}");
    assert!(answers.len() - switch >= 5, "{answers:?}");
}

#[tokio::test]
async fn a_filter_replaced_in_place_or_by_rename_is_swapped_while_serving() {
    let (Some(tag), Some(commands)) = (guest(TEST_GUESTS, "tag"), guest(EXAMPLES, "commands")) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.wasm");
    std::fs::write(&live, &tag).expect("write filter");
    let toml = watched_filter(&live);
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };

    // In place, as `cp` or a plain write does it.
    let in_place = stream_across_a_swap(&mut b, 0, || std::fs::write(&live, &commands).expect("overwrite")).await;
    assert_switched(&in_place, Version::Tag, Version::Commands);

    // By rename over the file, as editors and `cargo` do it.
    let first = in_place.len();
    let renamed = stream_across_a_swap(&mut b, first, || {
        let aside = dir.path().join(".live.wasm.new");
        std::fs::write(&aside, &tag).expect("write aside");
        std::fs::rename(&aside, &live).expect("rename over");
    })
    .await;
    assert_switched(&renamed, Version::Commands, Version::Tag);
    let log = b.host.log();
    assert_eq!(count(&log, "connected, serving"), 1, "a reload must not reconnect:\n{log}");
}

#[tokio::test]
async fn a_broken_filter_file_never_replaces_a_working_one() {
    let (Some(tag), Some(commands), Some(stranger)) =
        (guest(TEST_GUESTS, "tag"), guest(EXAMPLES, "commands"), guest(TEST_GUESTS, "stranger"))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.wasm");
    std::fs::write(&live, &tag).expect("write filter");
    let toml = watched_filter(&live);
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    assert_eq!(body(&b.ask("echo", "m0").await).as_deref(), Some("m0Tt"));

    let broken: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", tag[..tag.len() / 2].to_vec(), "not a WebAssembly component"),
        ("not wasm", b"#!/bin/sh\necho not a filter\n".to_vec(), "not a WebAssembly component"),
        ("another world", stranger, "does not implement the stanzahook:filter@0.1 world"),
    ];
    for (n, (what, bytes, why)) in broken.into_iter().enumerate() {
        let kept_before = count(&b.host.log(), "previous version keeps serving");
        std::fs::write(&live, &bytes).expect("write broken file");
        b.host.wait_for_log_count("previous version keeps serving", kept_before + 1, RELOAD_WAIT).await.expect(what);
        let log = b.host.log();
        assert!(log.contains(why), "{what}: the log says why:\n{log}");
        let text = format!("m{}", n + 1);
        assert_eq!(body(&b.ask("echo", &text).await), Some(format!("{text}Tt")), "{what}: the old filter serves");
    }
    // The served bytes written back (a broken build undone): nothing to swap, and the log says so.
    std::fs::write(&live, &tag).expect("write the served version back");
    b.host
        .wait_for_log("reload: nothing changed; serving the config and filters as before", RELOAD_WAIT)
        .await
        .expect("said");
    assert!(b.host.log().contains(&format!("{} (version ", live.display())), "{}", b.host.log());
    assert_eq!(body(&b.ask("echo", "m4").await).as_deref(), Some("m4Tt"));
    // Fixing the file later swaps the new version in.
    let reloads = count(&b.host.log(), "reloaded in");
    std::fs::write(&live, &commands).expect("write the fix");
    b.host.wait_for_log_count("reloaded in", reloads + 1, RELOAD_WAIT).await.expect("the fix is loaded");
    assert_eq!(body(&b.ask("echo", "m9").await).as_deref(), Some("m9"));
    // Failures are logged when a file changes, not again and again.
    let kept = count(&b.host.log(), "previous version keeps serving");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&b.host.log(), "previous version keeps serving"), kept, "{}", b.host.log());
}

#[tokio::test]
async fn a_config_edit_takes_effect_without_a_reconnect() {
    let options = Options { toml: "watch = true\n", url_in_file: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    assert_eq!(body(&b.ask("echo", "first").await).as_deref(), Some("first"));
    b.webhook_saw(1).await;

    // Another webhook, and a connection setting that only a restart can change.
    let other = testkit::TestWebhook::start().await.expect("second webhook");
    let edited = format!("watch = true\npost_url = {:?}\n[connection]\nkeepalive = \"7s\"\n", other.url);
    std::fs::write(&b.config, edited).expect("edit config");
    b.host.wait_for_log("reloaded in", RELOAD_WAIT).await.expect("config reloaded");

    assert_eq!(body(&b.ask("echo", "second").await).as_deref(), Some("second"));
    let seen = other.wait_for(1, WAIT).await.expect("the new webhook is called");
    assert_eq!(seen[0].event["body"], "second");
    assert_eq!(b.webhook.requests().len(), 1, "the old webhook is not called any more");
    let log = b.host.log();
    assert!(log.contains("`connection.keepalive` needs a restart"), "{log}");
    assert_eq!(count(&log, "connected, serving"), 1, "a config reload must not reconnect:\n{log}");
}

#[tokio::test]
async fn sighup_reloads_a_config_edit_without_watching() {
    let Some(mut b) = Bridge::start(Options { url_in_file: true, ..Options::default() }).await else { return };
    let bad = format!("post_url = {:?}\nshutdown_grace = \"oops\"\n", b.webhook.url);
    std::fs::write(&b.config, bad).expect("edit");
    b.host.hangup().expect("SIGHUP");
    b.host.wait_for_log("shutdown_grace", RELOAD_WAIT).await.expect("the mistake is reported");
    assert_eq!(body(&b.ask("echo", "still").await).as_deref(), Some("still"), "a bad edit changes nothing");

    let other = testkit::TestWebhook::start().await.expect("second webhook");
    std::fs::write(&b.config, format!("post_url = {:?}\n", other.url)).expect("edit");
    b.host.hangup().expect("SIGHUP");
    b.host.wait_for_log("reloaded in", RELOAD_WAIT).await.expect("reloaded on SIGHUP");
    b.ask("echo", "moved").await;
    assert_eq!(other.wait_for(1, WAIT).await.expect("new webhook")[0].event["body"], "moved");
}

/// The compile cache: a second start loads the filter without compiling it.
#[tokio::test]
async fn a_restart_loads_filters_from_the_compile_cache() {
    let Some(tag) = guest(TEST_GUESTS, "tag") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let filter: PathBuf = dir.path().join("tag.wasm");
    std::fs::write(&filter, &tag).expect("write filter");
    let toml = format!(
        "compile_cache = {:?}\n[[filter]]\npath = {:?}\n",
        dir.path().join("cache").display().to_string(),
        filter.display().to_string()
    );
    for expected in ["compiled in", "from the compile cache in"] {
        let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
        let log = b.host.log();
        assert!(log.contains(expected), "expected {expected:?}:\n{log}");
        assert_eq!(body(&b.ask("echo", "x").await).as_deref(), Some("x??"), "the cached filter works");
    }
}

#[tokio::test]
async fn a_config_that_adds_a_broken_filter_applies_once_the_filter_is_fixed() {
    let Some(commands) = guest(EXAMPLES, "commands") else { return };
    let options = Options { toml: "watch = true\n", url_in_file: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    let url = b.webhook.url.clone();
    // The new filter lives in a directory nothing watched before.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let filter = elsewhere.path().join("commands.wasm");
    std::fs::write(&filter, b"not yet built").expect("write");
    let edited = format!("watch = true\npost_url = {url:?}\n[[filter]]\npath = {:?}\n", filter.display().to_string());
    std::fs::write(&b.config, edited).expect("edit config");
    b.host.wait_for_log("reload not applied", RELOAD_WAIT).await.expect("the broken filter is reported");
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("/ping"), "no filter yet");

    std::fs::write(&filter, &commands).expect("build the filter");
    b.host.wait_for_log("reloaded in", RELOAD_WAIT).await.expect("the config applies with its filter");
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("pong"));
}

#[tokio::test]
async fn a_sighup_while_filters_compile_at_start_does_not_end_the_process() {
    let Some(tag) = guest(TEST_GUESTS, "tag") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let filter = dir.path().join("tag.wasm");
    std::fs::write(&filter, &tag).expect("write filter");
    // No cache: the compile takes long enough for the signal to land in it.
    let toml = format!("compile_cache = \"off\"\n[[filter]]\npath = {:?}\n", filter.display().to_string());
    let mut b = crate::harness::FakeBridge::start(&toml).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.host.hangup().expect("SIGHUP");
    b.server.accept(RELOAD_WAIT).await.expect("stanzahook still starts and connects");
    assert!(b.host.is_running(), "{}", b.host.log());
}

#[tokio::test]
async fn a_busy_file_beside_the_config_does_not_delay_a_reload() {
    // A log file written every 5 ms in the config's directory kept the watcher's quiet period
    // from ever being reached: every reload waited the full second of its longest wait.
    let options = Options { toml: "watch = true\n", url_in_file: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    let busy = b.config.with_file_name("app.log");
    let writing = tokio::spawn(async move {
        for n in 0..2_000 {
            let line = format!("line {n}\n");
            if std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&busy)
                .and_then(|mut f| {
                    use std::io::Write as _;
                    f.write_all(line.as_bytes())
                })
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = testkit::TestWebhook::start().await.expect("second webhook");
    let edited = Instant::now();
    std::fs::write(&b.config, format!("watch = true\npost_url = {:?}\n", other.url)).expect("edit config");
    b.host.wait_for_log("reloaded in", RELOAD_WAIT).await.expect("config reloaded");
    let took = edited.elapsed();
    writing.abort();
    assert!(took < Duration::from_millis(700), "the reload came {took:?} after the edit; host log:\n{}", b.host.log());
    b.ask("echo", "moved").await;
    assert_eq!(other.wait_for(1, WAIT).await.expect("new webhook")[0].event["body"], "moved");
}

#[tokio::test]
async fn a_config_with_a_syntax_error_counts_as_a_failed_reload() {
    let options = Options { url_in_file: true, api: true, ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    let metrics = format!("{}/metrics", b.api.clone().expect("the API serves"));
    let failed = || async {
        let text = reqwest::get(&metrics).await.expect("metrics").text().await.expect("body");
        text.lines()
            .find_map(|l| l.strip_prefix("stanzahook_reloads_total{result=\"failed\"} "))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(failed().await, None, "no reload failed yet");
    std::fs::write(&b.config, "post_url = [this is not TOML\n").expect("edit");
    b.host.hangup().expect("SIGHUP");
    b.host.wait_for_log("reload not applied", RELOAD_WAIT).await.expect("the mistake is reported");
    assert_eq!(failed().await.as_deref(), Some("1"), "counted once");
    // The same mistake again is not read again, nor counted again.
    b.host.hangup().expect("SIGHUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failed().await.as_deref(), Some("1"));
    assert_eq!(body(&b.ask("echo", "still").await).as_deref(), Some("still"), "the current settings serve");
}
