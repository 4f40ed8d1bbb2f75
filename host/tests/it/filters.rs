//! Filters end to end (README: "Filters"): real guests built from source, a real Prosody, a real client and
//! a real webhook. Each example filter changes what the webhook receives and what the user gets;
//! misbehaving guests are stopped within their limits and the host goes on serving.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::XmppClient;
use testkit::client::{body, error_of};

use crate::harness::{Bridge, DOMAIN, Options, Server, WAIT, message, on_each_server};

const EXAMPLES: &str = "examples/filters";
const TEST_GUESTS: &str = "host/tests/guests";

fn guest(workspace: &str, name: &str) -> Option<PathBuf> {
    if !testkit::guests::require_wasm_target() {
        return None;
    }
    Some(testkit::guests::wasm(workspace, name).expect("guest builds"))
}

/// A `[[filter]]` entry for the config file.
fn entry(path: &std::path::Path, name: &str, extra: &str) -> String {
    format!("[[filter]]\npath = {:?}\nname = {name:?}\n{extra}\n", path.display().to_string())
}

#[tokio::test]
async fn commands_answers_itself_and_passes_the_rest() {
    let Some(wasm) = guest(EXAMPLES, "commands") else { return };
    commands_example(&wasm).await;
}

/// The `commands` example, in whichever language `wasm` was written (see `languages.rs`).
pub async fn commands_example(wasm: &std::path::Path) {
    let toml = entry(wasm, "commands", "");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "/ping").await;
    assert_eq!(body(&reply).as_deref(), Some("pong"));
    assert!(b.webhook.requests().is_empty(), "the webhook was called for /ping");
    let reply = b.ask("echo", "/help").await;
    assert!(body(&reply).unwrap_or_default().starts_with("Commands: /ping"), "{reply:?}");
    let reply = b.ask("echo", "hello").await;
    assert_eq!(body(&reply).as_deref(), Some("hello"));
    assert_eq!(b.webhook_saw(1).await[0].event["body"], "hello");
}

/// `--dev` tells each stanza's way in one line: the filters' verdicts, the POST with its status
/// and content type, what was sent back, and the time taken.
#[tokio::test]
async fn dev_tells_each_stanzas_way_in_one_line() {
    let Some(wasm) = guest(EXAMPLES, "commands") else { return };
    let toml = entry(&wasm, "commands", "");
    let Some(mut b) = Bridge::start(Options { toml: &toml, dev: true, ..Options::default() }).await else { return };
    let way = |log: String, marker: &str| -> String {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("stanzahook::way") && l.contains(marker)).collect();
        assert_eq!(lines.len(), 1, "one line for the stanza marked {marker:?}:\n{log}");
        lines[0].to_owned()
    };
    b.ask("echo", "/ping").await;
    b.host.wait_for_log("\"pong\"", WAIT).await.expect("the /ping line");
    let ping = way(b.host.log(), "\"pong\"");
    assert!(ping.contains("commands before: answer ("), "{ping}");
    assert!(!ping.contains("POST"), "answered by the filter, not posted: {ping}");
    assert!(ping.contains(&format!("sent message chat to {} \"pong\"", b.alice.jid)), "{ping}");
    assert!(ping.contains(" ms in all"), "{ping}");

    b.ask("echo", "hello way").await;
    b.host.wait_for_log("\"hello way\"", WAIT).await.expect("the echo line");
    let echo = way(b.host.log(), "\"hello way\"");
    let order =
        ["commands before: pass", "POST → 200 application/json in ", "commands after: pass", "sent message chat"];
    let at: Vec<Option<usize>> = order.iter().map(|step| echo.find(step)).collect();
    assert!(at.iter().all(Option::is_some) && at.is_sorted(), "steps {order:?} in order: {echo}");

    b.alice.send(&message(&format!("s500@{DOMAIN}"), "fails")).await.expect("send");
    b.alice.expect(WAIT, "the error", |el| el.name() == "message").await.expect("error reply");
    b.host.wait_for_log("(internal-server-error)", WAIT).await.expect("the failure line");
    let failure = way(b.host.log(), "(internal-server-error)");
    assert!(failure.contains("POST → 500"), "{failure}");
    assert!(failure.contains("sent message error (internal-server-error) to"), "{failure}");
}

#[tokio::test]
async fn reshape_speaks_a_chat_webhook_of_another_shape() {
    let Some(wasm) = guest(EXAMPLES, "reshape") else { return };
    reshape_example(&wasm).await;
}

/// The `reshape` example, in whichever language `wasm` was written.
pub async fn reshape_example(wasm: &std::path::Path) {
    let toml = entry(wasm, "reshape", "");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("slack", "hi there").await;
    assert_eq!(body(&reply).as_deref(), Some("you said hi there"));
    let event = &b.webhook_saw(1).await[0].event;
    assert_eq!(event["text"], "hi there");
    assert_eq!(event["user"], "alice@localhost", "the bare address names the user");
    assert_eq!(event["channel"], format!("slack@{DOMAIN}"));
    assert!(event.get("stanza").is_none(), "the webhook sees only its own shape: {event}");

    // The vocabulary read through the SDK's accessors: a reply with its quote and a file.
    b.alice
        .send(&format!(
            "<message to='slack@{DOMAIN}' type='chat' id='r1'><body>&gt; hi there\nand a cat</body>\
             <reply xmlns='urn:xmpp:reply:0' id='m-1'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='11'/></fallback>\
             <x xmlns='jabber:x:oob'><url>https://files.example.org/cat.jpg</url></x></message>"
        ))
        .await
        .expect("send");
    let (reply, _) = b.alice.expect(WAIT, "the answer", |el| body(el).is_some()).await.expect("answer");
    assert_eq!(body(&reply).as_deref(), Some("you said and a cat"), "the quote is left out");
    let event = &b.webhook_saw(2).await[1].event;
    assert_eq!(event["thread_ts"], "m-1", "{event}");
    assert_eq!(event["files"][0]["url_private"], "https://files.example.org/cat.jpg", "{event}");
    b.alice
        .send(&format!(
            "<message to='slack@{DOMAIN}' type='chat' id='r2'><reactions xmlns='urn:xmpp:reactions:0' id='m-1'>\
             <reaction>👍</reaction></reactions></message>"
        ))
        .await
        .expect("send");
    let event = &b.webhook_saw(3).await[2].event;
    assert_eq!(event["type"], "reaction_added", "{event}");
    assert_eq!((event["reaction"].as_str(), event["item"]["ts"].as_str()), (Some("👍"), Some("m-1")), "{event}");
}

#[tokio::test]
async fn redact_masks_or_drops_what_matches() {
    let Some(wasm) = guest(EXAMPLES, "redact") else { return };
    redact_example(&wasm).await;
}

/// The `redact` example, in whichever language `wasm` was written.
pub async fn redact_example(wasm: &std::path::Path) {
    let toml = entry(wasm, "redact", "[filter.config]\npatterns = \"password, api_key\"\n");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "my Password is hunter2").await;
    assert_eq!(body(&reply).as_deref(), Some("my [redacted] is hunter2"));
    let event = &b.webhook_saw(1).await[0].event;
    assert_eq!(event["body"], "my [redacted] is hunter2");
    assert!(!event.to_string().contains("Password"), "the raw stanza leaked: {event}");

    let toml = entry(wasm, "redact", "[filter.config]\npatterns = \"password\"\naction = \"drop\"\n");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "password: x")).await.expect("send");
    b.expect_silence().await;
    assert!(b.webhook.requests().is_empty(), "a dropped message reached the webhook");
    let reply = b.ask("echo", "harmless").await;
    assert_eq!(body(&reply).as_deref(), Some("harmless"));
}

on_each_server!(
    a_chain_on,
    a_chain_runs_in_order_before_and_in_reverse_after,
    a_chain_runs_in_order_before_and_in_reverse_after_through_ejabberd
);

async fn a_chain_on(server: Server) {
    let Some(wasm) = guest(TEST_GUESTS, "tag") else { return };
    let toml = format!(
        "{}[filter.config]\ntag = \"A\"\n{}[filter.config]\ntag = \"B\"\n",
        entry(&wasm, "first", ""),
        entry(&wasm, "second", "")
    );
    let Some(mut b) = Bridge::start(Options { server, toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "hi").await;
    assert_eq!(b.webhook_saw(1).await[0].event["body"], "hiAB", "before hooks in config order");
    assert_eq!(body(&reply).as_deref(), Some("hiABba"), "after hooks in reverse order");
    let log = b.host.log();
    assert!(log.contains("filter=\"first\"") || log.contains("filter=first"), "guest logs name the filter:\n{log}");
    assert!(log.contains("after (status 200): body now hiABb"), "{log}");
    let loads = log.matches(" compiled in ").count() + log.matches("from the compile cache in").count();
    assert_eq!(loads, 1, "one file used twice is loaded once:\n{log}");
}

#[tokio::test]
async fn misbehaving_filters_are_stopped_and_skipped() {
    let names = ["spin", "hog", "panic", "fail", "garbage", "snoop"];
    let mut toml = String::new();
    for name in names {
        let Some(wasm) = guest(TEST_GUESTS, name) else { return };
        let extra = if name == "hog" { "memory_limit = 16777216" } else { "" };
        toml.push_str(&entry(&wasm, name, extra));
    }
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    // Every filter fails on every stanza; each is skipped, and the webhook answers as usual.
    for text in ["first", "second"] {
        let reply = b.ask("echo", text).await;
        assert_eq!(body(&reply).as_deref(), Some(text), "host log:\n{}", b.host.log());
    }
    let log = b.host.log();
    for expected in [
        "ran out of its CPU time (100 ms)",
        "exceeded its memory limit (16777216 bytes)",
        "trapped",
        "returned an error: refusing on purpose",
        "returned invalid JSON",
        "No such file or directory",
    ] {
        assert!(log.contains(expected), "no log line saying {expected:?}:\n{log}");
    }
    assert!(log.contains("this filter always panics"), "guest stderr reaches the log:\n{log}");
}

#[tokio::test]
async fn a_filter_flooding_the_log_costs_bounded_memory() {
    // 200 log lines and 200 stdout lines of 1 MiB each: the guest passes the same string each
    // time, so only the host's own caps keep it from holding hundreds of megabytes.
    let Some(wasm) = guest(TEST_GUESTS, "flood") else { return };
    let toml = entry(&wasm, "flood", "cpu_limit = \"20s\"");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let peak_before = b.host.peak_rss().expect("peak rss");
    let reply = b.ask("echo", "after the flood").await;
    assert_eq!(body(&reply).as_deref(), Some("after the flood"), "host log:\n{:.4000}", b.host.log());
    let growth = b.host.peak_rss().expect("peak rss").saturating_sub(peak_before);
    let log = b.host.log();
    // Before the budget: peak +122 MiB and a 105 MB log.
    assert!(growth < 32 << 20, "peak memory grew by {} MiB", growth >> 20);
    assert!(log.len() < 512 * 1024, "the log took {} bytes of one call's output", log.len());
    assert!(log.contains("more bytes cut]"), "a cut line says so:\n{log:.4000}");
    assert!(log.contains("more lines from this call dropped"), "dropped lines are counted:\n{log:.4000}");
    assert!(!log.contains("trapped") && !log.contains("failed"), "the filter passed:\n{log:.4000}");
}

#[tokio::test]
async fn a_filter_waiting_past_its_time_limit_is_stopped_there() {
    // Sleeping uses no CPU and waits in the host, out of reach of epoch interruption: without
    // the host's own deadline on waits, this filter held its thread for an hour.
    let Some(wasm) = guest(TEST_GUESTS, "nap") else { return };
    // A short nap fits in the limit; `reject` would turn its failure into an error reply.
    let toml = format!(
        "{}{}",
        entry(&wasm, "short", "on_error = \"reject\"\n[filter.config]\nmillis = \"20\""),
        entry(&wasm, "long", "")
    );
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let asked = Instant::now();
    let reply = b.ask("echo", "wake up").await;
    let took = asked.elapsed();
    assert_eq!(body(&reply).as_deref(), Some("wake up"), "the long nap was skipped; host log:\n{}", b.host.log());
    assert!(took < Duration::from_secs(2), "the answer took {took:?}");
    let log = b.host.log();
    let timeouts: Vec<&str> = log.lines().filter(|l| l.contains("ran out of its CPU time (100 ms)")).collect();
    assert_eq!(timeouts.len(), 1, "one filter timed out:\n{log}");
    assert!(timeouts[0].contains("long"), "{}", timeouts[0]);
}

#[tokio::test]
async fn a_spinning_filter_holds_up_only_its_own_stanza() {
    // Guests run on the filter threads, never on the one thread that serves the stream and the
    // webhook: while a filter burns its CPU limit, another sender's stanzas are answered at once.
    let Some(wasm) = guest(TEST_GUESTS, "spin") else { return };
    let toml = entry(&wasm, "spin", "cpu_limit = \"3s\"");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let mut bob = XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in");
    let spun = Instant::now();
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "spin for me")).await.expect("send");
    // The message reaches the filter within milliseconds on loopback; the spin lasts 3 s.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let asked = Instant::now();
    bob.send(&format!("<iq to='{DOMAIN}' type='get' id='during'><ping xmlns='urn:xmpp:ping'/></iq>"))
        .await
        .expect("send");
    bob.expect(WAIT, "the ping answer", |el| el.name() == "iq" && el.attr("id") == Some("during"))
        .await
        .expect("bob's ping is answered while the filter spins");
    let answered_in = asked.elapsed();
    let (reply, _) = b.alice.expect(WAIT, "the echo", |el| body(el).is_some()).await.expect("alice's reply");
    let spin_took = spun.elapsed();
    assert_eq!(body(&reply).as_deref(), Some("spin for me"), "skipped after its CPU limit");
    assert!(spin_took >= Duration::from_millis(2500), "the filter was stopped early ({spin_took:?})");
    assert!(
        answered_in < Duration::from_secs(1),
        "bob waited {answered_in:?} for a built-in answer while a filter spun; host log:\n{}",
        b.host.log()
    );
    assert!(b.host.log().contains("ran out of its CPU time (3000 ms)"), "{}", b.host.log());
}

#[tokio::test]
async fn reject_on_error_answers_internal_server_error() {
    let Some(wasm) = guest(TEST_GUESTS, "panic") else { return };
    let toml = entry(&wasm, "panic", "on_error = \"reject\"");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "x").await;
    assert_eq!(error_of(&reply), Some(("internal-server-error".into(), "cancel".into())));
    assert!(b.webhook.requests().is_empty());
}

#[tokio::test]
async fn a_file_is_readable_only_where_granted() {
    let Some(wasm) = guest(TEST_GUESTS, "snoop") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("motd.txt");
    std::fs::write(&file, "granted content\n").expect("write");
    let grant = format!(
        "read_dirs = [{:?}]\n[filter.config]\nfile = {:?}\n",
        dir.path().display().to_string(),
        file.display().to_string()
    );
    let toml = entry(&wasm, "snoop", &grant);
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "x").await;
    assert_eq!(body(&reply).as_deref(), Some("granted content"));
}

#[tokio::test]
async fn a_filter_cannot_open_a_network_connection() {
    // There is no grant for the network: the host's socket policy refuses every address, here a
    // listener on loopback that would greet the guest.
    let Some(wasm) = guest(TEST_GUESTS, "snoop") else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let addr = listener.local_addr().expect("addr");
    let toml = entry(&wasm, "snoop", &format!("[filter.config]\nconnect = \"{addr}\"\n"));
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "x").await;
    assert_eq!(body(&reply).as_deref(), Some("x"), "the filter failed and was skipped");
    assert!(b.host.log().contains("Permission denied"), "refused by the host:\n{}", b.host.log());
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "the guest reached the listener");
}

/// Starts a bridge with the counter guest (which counts in a static what its instance has seen,
/// and allows reuse) and `extra` settings, asks it "a", "b" and "c" in turn, and returns the
/// bridge and the bodies the webhook received.
async fn count_three(extra: &str) -> Option<(Bridge, Vec<String>)> {
    let wasm = guest(TEST_GUESTS, "counter")?;
    let toml = entry(&wasm, "counter", extra);
    let mut b = Bridge::start(Options { toml: &toml, ..Options::default() }).await?;
    for text in ["a", "b", "c"] {
        b.ask("echo", text).await;
    }
    let requests = b.webhook_saw(3).await;
    let bodies = requests.iter().map(|r| r.event["body"].as_str().unwrap_or_default().to_owned()).collect();
    Some((b, bodies))
}

#[tokio::test]
async fn a_filter_that_allows_reuse_keeps_its_instance_unless_refused() {
    let Some((b, bodies)) = count_three("").await else { return };
    assert_eq!(bodies, ["a #1", "b #2", "c #3"], "one instance served all three");
    assert!(b.host.log().contains("counter (keeps its instance)"), "the log says so:\n{}", b.host.log());

    // The operator's `reuse_instances = false` wins over the filter's answer.
    let Some((_, bodies)) = count_three("reuse_instances = false").await else { return };
    assert_eq!(bodies, ["a #1", "b #1", "c #1"], "a fresh instance each");
}

#[tokio::test]
async fn a_reuse_answer_that_came_after_its_deadline_is_a_no() {
    // reuse() sleeps 300 ms under a 100 ms limit: the sleep is cut, and the `true` it returns
    // afterwards was honoured.
    let Some((b, bodies)) = count_three("[filter.config]\nreuse_nap_ms = \"300\"\n").await else { return };
    assert_eq!(bodies, ["a #1", "b #1", "c #1"], "a fresh instance each");
    let log = b.host.log();
    assert!(log.contains("its reuse() ran out of its CPU time (100 ms); each call gets a fresh instance"), "{log}");
    assert!(!log.contains("keeps its instance"), "{log}");
}

#[tokio::test]
async fn a_kept_instance_ends_with_a_failed_call() {
    // Instance #1 sees "a", traps on "b" (its second stanza); "c" must get a fresh instance.
    let Some((b, bodies)) = count_three("[filter.config]\ntrap_at = \"2\"\n").await else { return };
    assert_eq!(bodies, ["a #1", "b", "c #1"], "skipped on the trap, then fresh");
    assert!(b.host.log().contains("trapping on stanza #2"), "{}", b.host.log());
}

#[tokio::test]
async fn a_kept_instance_whose_memory_nearly_fills_its_limit_is_retired_before_a_call_fails() {
    // 1 MiB more per stanza under a 4 MiB limit: kept as it is, the fourth call or so would fail.
    let Some(wasm) = guest(TEST_GUESTS, "counter") else { return };
    let toml = entry(
        &wasm,
        "counter",
        "memory_limit = 4194304
[filter.config]
leak_kib = \"1024\"
",
    );
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    for n in 0..8 {
        b.ask("echo", &format!("m{n}")).await;
    }
    let requests = b.webhook_saw(8).await;
    let bodies: Vec<&str> = requests.iter().map(|r| r.event["body"].as_str().unwrap_or_default()).collect();
    assert!(bodies.iter().all(|b| b.contains(" #")), "no call failed (a failed one is skipped, uncounted): {bodies:?}");
    let fresh = bodies.iter().filter(|b| b.ends_with(" #1")).count();
    assert!(fresh >= 2, "the instance was retired and a fresh one took over: {bodies:?}");
    assert!(bodies.iter().any(|b| b.ends_with(" #2")), "and kept until then: {bodies:?}");
}

#[tokio::test]
async fn a_filter_built_against_the_first_wit_is_served() {
    // Built with plain wit-bindgen against stanzahook:filter@0.1.0, as released.
    let Some(wasm) = guest(TEST_GUESTS, "legacy") else { return };
    let toml = entry(&wasm, "legacy", "");
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let reply = b.ask("echo", "hello?").await;
    assert_eq!(body(&reply).as_deref(), Some("legacy"));
    assert!(b.webhook.requests().is_empty());
}

/// A bridge whose one filter is the `hostile` guest in `mode`, with `extra` settings.
async fn hostile(mode: &str, extra: &str, json_log: bool) -> Option<Bridge> {
    let wasm = guest(TEST_GUESTS, "hostile")?;
    let toml = entry(&wasm, "hostile", &format!("{extra}\n[filter.config]\nmode = {mode:?}\n"));
    Bridge::start(Options { toml: &toml, json_log, ..Options::default() }).await
}

#[tokio::test]
async fn a_huge_error_message_from_a_filter_is_cut_to_a_budget() {
    // Err with 16 MiB of text made one warning line of 16 MiB.
    let Some(mut b) = hostile("huge-error", "", false).await else { return };
    assert_eq!(body(&b.ask("echo", "x").await).as_deref(), Some("x"), "skipped");
    let log = b.host.log();
    let line = log.lines().find(|l| l.contains("returned an error")).unwrap_or_else(|| panic!("{log:.4000}"));
    assert!(line.len() < 4096, "the error line has {} bytes", line.len());
    assert!(line.contains("more bytes cut]"), "the cut is said: {line:.300}");
    assert!(log.len() < 64 * 1024, "the log has {} bytes", log.len());
}

/// The log must hold no line that the guest started: each line is the host's own.
fn assert_no_forged_line(log: &str) {
    assert!(!log.contains('\r'), "a raw carriage return reached the log:\n{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-02T00:00:00.000000Z") && !line.starts_with("FORGED"),
            "a guest started a log line: {line}\n{log}"
        );
    }
}

#[tokio::test]
async fn a_filter_cannot_forge_a_host_log_line() {
    let Some(mut b) = hostile("forge-log", "", false).await else { return };
    assert_eq!(body(&b.ask("echo", "x").await).as_deref(), Some("x"));
    b.host.wait_for_log("[stderr]", WAIT).await.expect("the guest's stderr is logged");
    let log = b.host.log();
    assert_no_forged_line(&log);
    assert!(
        log.contains("innocent\\n2026-12-02T00:00:00.000000Z ERROR stanzahook::xmpp: FORGED line\\rFORGED"),
        "escaped, not dropped:\n{log}"
    );

    let Some(mut b) = hostile("forge-log", "", true).await else { return };
    assert_eq!(body(&b.ask("echo", "x").await).as_deref(), Some("x"));
    b.host.wait_for_log("[stderr]", WAIT).await.expect("the guest's stderr is logged");
    let log = b.host.log();
    assert_no_forged_line(&log);
    let messages: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains("FORGED"))
        .collect();
    assert!(messages.len() >= 3, "log, stdout and stderr lines: {messages:?}\n{log}");
    for message in &messages {
        assert!(!message.contains('\n') && !message.contains('\r'), "{message:?}");
    }
}

#[tokio::test]
async fn json_a_filter_returns_is_checked_like_a_webhooks() {
    // A rewrite nested 10,000 levels deep and one with a lone surrogate reached the webhook.
    let Some(wasm) = guest(TEST_GUESTS, "hostile") else { return };
    let mut toml = String::new();
    for mode in ["deep", "surrogate"] {
        toml.push_str(&entry(&wasm, mode, &format!("[filter.config]\nmode = {mode:?}\n")));
    }
    let Some(mut b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    assert_eq!(body(&b.ask("echo", "x").await).as_deref(), Some("x"), "both rewrites skipped");
    let event = &b.webhook_saw(1).await[0].event;
    assert_eq!(event["body"], "x", "the webhook got the event as built: {event:.200}");
    let log = b.host.log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("returned invalid JSON")).collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused[0].contains("recursion limit exceeded"), "{}", refused[0]);
    assert!(refused[1].contains("hex escape"), "{}", refused[1]);
}

#[tokio::test]
async fn a_string_over_the_output_cap_is_refused_and_costs_no_more_than_its_one_copy() {
    // The guest fills 48 MiB of its 64 MiB with its answer. wasmtime frees a result in the guest
    // before the host sees it, so the host copies it out as the call ends (once: 48 MiB more per
    // filter thread, freed at once) and refuses it against `max_output` (1 MiB); nothing else
    // holds it, and the host returns the freed copy to the system at once (mimalloc would keep it
    // resident for a second, so a thread that refused one held 48 MiB more: two at once after one
    // measured up to 243 MiB). Measured: one call 98 MiB over idle, two at once 168–195 MiB
    // (the two guests' memory and their two copies), so a third copy is over the bound.
    const ANSWER: u64 = 48 << 20;
    let Some(mut b) = hostile("huge-rewrite", "cpu_limit = \"10s\"", false).await else { return };
    let mut bob = XmppClient::login(b.server.c2s_port(), "bob", "bobpw").await.expect("bob logs in");
    let idle = b.host.peak_rss().expect("peak rss");
    assert_eq!(body(&b.ask("echo", "one").await).as_deref(), Some("one"), "skipped");
    let one = b.host.peak_rss().expect("peak rss").saturating_sub(idle);
    assert!(b.host.log().contains("more than its limit of 1048576"), "{}", b.host.log());

    // Two filter threads at once, one for each sender.
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "two")).await.expect("send");
    bob.send(&message(&format!("echo@{DOMAIN}"), "two")).await.expect("send");
    for client in [&mut b.alice, &mut bob] {
        let (reply, _) = client.expect(WAIT, "the reply", |el| body(el).is_some()).await.expect("reply");
        assert_eq!(body(&reply).as_deref(), Some("two"));
    }
    let two = b.host.peak_rss().expect("peak rss").saturating_sub(idle);
    eprintln!("peak RSS over idle: one call {} MiB, two at once {} MiB", one >> 20, two >> 20);
    assert!(one < ANSWER * 5 / 2, "one call raised peak memory by {} MiB", one >> 20);
    assert!(two < ANSWER * 9 / 2, "two calls at once raised peak memory by {} MiB", two >> 20);
}

#[tokio::test]
async fn filters_compile_below_the_priority_of_the_stanzas_served() {
    // A reload's compile took every core at the stanzas' own priority: stanzas answered during it
    // waited up to ~90 ms on two cores (`cargo bench --bench reload` measures it).
    let Some(wasm) = guest(TEST_GUESTS, "tag") else { return };
    let toml = entry(&wasm, "tag", "");
    let Some(b) = Bridge::start(Options { toml: &toml, ..Options::default() }).await else { return };
    let tasks = std::fs::read_dir(format!("/proc/{}/task", b.host.pid())).expect("the host's threads");
    let mut compile_threads = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Field 19 is the nice value; the fields after the command name, in parentheses, count
        // from 3.
        let nice = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(16)).unwrap_or("?");
        if comm.starts_with("filter-compile") {
            compile_threads += 1;
            assert_eq!(nice, "10", "compile thread {} runs at nice {nice}", comm.trim());
        } else if comm.starts_with("filter-") {
            assert_eq!(nice, "0", "{} serves stanzas at nice {nice}", comm.trim());
        }
    }
    assert!(compile_threads > 0, "no filter-compile thread");
}
