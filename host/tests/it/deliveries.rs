//! Deliveries (README: "Deliveries"): the log of recent deliveries and its API, the failed ones
//! kept across a restart and redelivered, and the console page in a real headless Chromium. A
//! real Prosody, a real client, a real HTTP webhook, the example `commands` filter built from
//! source.

use std::io::{BufRead as _, Write as _};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use testkit::client::{body, error_of};

use crate::harness::{API_TOKEN, Bridge, DOMAIN, Options, WAIT, message};

fn commands_filter() -> Option<String> {
    if !testkit::guests::require_wasm_target() {
        return None;
    }
    let wasm = testkit::guests::wasm("examples/filters", "commands").expect("guest builds");
    Some(format!("[[filter]]\npath = {:?}\nname = \"commands\"\n", wasm.display().to_string()))
}

/// A call to the operator API with the token; the status and the JSON answered.
async fn call(b: &Bridge, method: reqwest::Method, path: &str) -> (u16, Value) {
    let api = b.api.clone().expect("api on");
    let response = reqwest::Client::new()
        .request(method, format!("{api}{path}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(b: &Bridge, path: &str) -> Value {
    let (status, json) = call(b, reqwest::Method::GET, path).await;
    assert_eq!(status, 200, "GET {path}: {json}\n{}", b.host.log());
    json
}

/// Waits until `GET path` gives JSON that `done` accepts.
async fn get_until(b: &Bridge, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let json = get(b, path).await;
        if done(&json) {
            return json;
        }
        assert!(tokio::time::Instant::now() < deadline, "GET {path} never came to what was waited for: {json}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(page: &Value) -> Vec<u64> {
    page["deliveries"].as_array().map(|d| d.iter().filter_map(|d| d["id"].as_u64()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_delivery_failed_on_every_attempt_is_kept_across_a_restart_and_redelivered_once_the_webhook_is_back() {
    let toml = "state_dir = \"state\"\n[webhook]\nretries = 2\nretry_delay = \"100ms\"\n";
    let Some(mut b) = Bridge::start(Options { toml, api: true, ..Options::default() }).await else { return };
    b.webhook.set_unavailable(true);
    let reply = b.ask("echo", "kept for later").await;
    assert!(error_of(&reply).is_some(), "the error, after the last attempt: {reply:?}");
    assert_eq!(b.webhook_saw(3).await.len(), 3);
    let page = get_until(&b, "/deliveries?status=failed", |p| ids(p).len() == 1).await;
    let failed = &page["deliveries"][0];
    let id = failed["id"].as_u64().expect("an id");
    assert_eq!((failed["attempts"].as_u64(), failed["http_status"].as_u64()), (Some(3), Some(503)), "{failed}");
    assert_eq!(failed["redeliverable"], true, "{failed}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("503")), "{failed}");
    assert!(failed["sender"].as_str().is_some_and(|s| s.starts_with("alice@")), "{failed}");

    b.restart_host().await;
    let page = get(&b, "/deliveries").await;
    assert_eq!(ids(&page), [id], "still there after the restart: {page}");

    b.webhook.set_unavailable(false);
    let (status, answer) = call(&b, reqwest::Method::POST, &format!("/deliveries/{id}/redeliver")).await;
    assert_eq!(status, 202, "{answer}\n{}", b.host.log());
    let new = answer["id"].as_u64().expect("the new delivery's id");
    let (reply, _) = b.alice.expect(WAIT, "the redelivered answer", |el| body(el).is_some()).await.expect("reply");
    assert_eq!(body(&reply).as_deref(), Some("kept for later"), "it reaches the original sender");
    let requests = b.webhook_saw(4).await;
    let webhook_id = |r: &testkit::webhook::Recorded| r.headers.get("webhook-id").cloned();
    assert_eq!(webhook_id(&requests[3]), webhook_id(&requests[0]), "a redelivery is the same message to the webhook");
    let redelivered = get_until(&b, &format!("/deliveries/{new}"), |d| d["status"] == "delivered").await;
    assert_eq!(redelivered["redelivery_of"].as_u64(), Some(id), "{redelivered}");
    assert_eq!(get(&b, &format!("/deliveries/{id}")).await["redelivered_as"].as_u64(), Some(new));
    let (again, why) = call(&b, reqwest::Method::POST, &format!("/deliveries/{id}/redeliver")).await;
    assert_eq!(again, 409, "only once: {why}");
    let api = b.api.clone().expect("api");
    let metrics = reqwest::get(format!("{api}/metrics")).await.expect("GET").text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "stanzahook_redeliveries_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_call_cut_short_by_the_shutdown_is_kept_as_failed_and_redelivered_after_the_restart() {
    let toml = "state_dir = \"state\"\nshutdown_grace = \"1s\"\n";
    let Some(mut b) = Bridge::start(Options { toml, api: true, ..Options::default() }).await else { return };
    // `slow` answers after 3 s: the grace period of 1 s ends first.
    b.alice.send(&message(&format!("slow@{DOMAIN}"), "not lost")).await.expect("send");
    b.webhook_saw(1).await;
    b.restart_host().await;
    let page = get_until(&b, "/deliveries?status=failed", |p| ids(p).len() == 1).await;
    let kept = &page["deliveries"][0];
    assert!(kept["error"].as_str().is_some_and(|e| e.contains("abandoned at shutdown")), "{kept}");
    let id = kept["id"].as_u64().expect("id");
    let (status, answer) = call(&b, reqwest::Method::POST, &format!("/deliveries/{id}/redeliver")).await;
    assert_eq!(status, 202, "{answer}");
    let (reply, _) = b
        .alice
        .expect(WAIT, "the redelivered answer", |el| body(el).as_deref() == Some("not lost"))
        .await
        .expect("the message was not lost");
    assert_eq!(body(&reply).as_deref(), Some("not lost"));
}

#[tokio::test]
async fn redelivering_everything_failed_since_a_time_keeps_each_senders_order() {
    let toml = "state_dir = \"state\"\n";
    let Some(mut b) = Bridge::start(Options { toml, api: true, ..Options::default() }).await else { return };
    let since = humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(1)).to_string();
    b.webhook.set_unavailable(true);
    for text in ["one", "two", "three"] {
        assert!(error_of(&b.ask("echo", text).await).is_some());
    }
    get_until(&b, "/deliveries?status=failed", |p| ids(p).len() == 3).await;
    b.webhook.set_unavailable(false);
    let (status, answer) = call(&b, reqwest::Method::POST, &format!("/deliveries/redeliver?since={since}")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["redelivering"].as_array().map(Vec::len), Some(3), "{answer}");
    let mut got = Vec::new();
    while got.len() < 3 {
        let (reply, _) = b.alice.expect(WAIT, "the redelivered answers", |el| body(el).is_some()).await.expect("reply");
        got.extend(body(&reply));
    }
    assert_eq!(got, ["one", "two", "three"], "in the order they were sent");
    let (status, answer) = call(&b, reqwest::Method::POST, &format!("/deliveries/redeliver?since={since}")).await;
    assert_eq!((status, answer["redelivering"].as_array().map(Vec::len)), (202, Some(0)), "nothing left: {answer}");
}

#[tokio::test]
async fn the_log_shows_each_delivery_with_its_filter_trail_and_bodies_only_when_asked() {
    let Some(filter) = commands_filter() else { return };
    let Some(mut b) = Bridge::start(Options { toml: &filter, api: true, ..Options::default() }).await else { return };
    assert_eq!(body(&b.ask("echo", "a private thought").await).as_deref(), Some("a private thought"));
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("pong"));
    let page = get_until(&b, "/deliveries", |p| ids(p).len() == 2).await;
    let (answered, delivered) = (&page["deliveries"][0], &page["deliveries"][1]);
    assert_eq!((answered["status"].as_str(), delivered["status"].as_str()), (Some("answered"), Some("delivered")));
    assert_eq!((delivered["http_status"].as_u64(), delivered["attempts"].as_u64()), (Some(200), Some(1)));
    let id = delivered["id"].as_u64().expect("id");
    let detail = get(&b, &format!("/deliveries/{id}")).await;
    assert_eq!(detail["filters"][0]["filter"], "commands", "{detail}");
    assert_eq!(detail["filters"][0]["verdict"], "pass", "{detail}");
    assert_eq!((detail["bodies"].as_bool(), detail["redeliverable"].as_bool()), (Some(false), Some(false)));
    assert!(!detail.to_string().contains("private thought"), "no body is kept by default: {detail}");
    let (status, why) = call(&b, reqwest::Method::POST, &format!("/deliveries/{id}/redeliver")).await;
    assert_eq!(status, 409, "not kept whole: {why}");

    // keep_bodies applies on reload.
    let toml = format!("{filter}\n[deliveries]\nkeep_bodies = true\n");
    let api = b.api.clone().expect("api");
    let port = api.rsplit(':').next().expect("port");
    let api_toml = format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{API_TOKEN}\"\n");
    std::fs::write(&b.config, format!("{toml}{api_toml}")).expect("write config");
    b.host.hangup().expect("SIGHUP");
    b.host.wait_for_log("reloaded in", WAIT).await.expect("reloaded");
    assert_eq!(body(&b.ask("echo", "said aloud").await).as_deref(), Some("said aloud"));
    let page = get_until(&b, "/deliveries", |p| ids(p).len() == 3).await;
    let id = page["deliveries"][0]["id"].as_u64().expect("id");
    let detail = get(&b, &format!("/deliveries/{id}")).await;
    assert!(detail["request"].as_str().is_some_and(|r| r.contains("said aloud")), "{detail}");
    assert!(detail["answer"].as_str().is_some_and(|r| r.contains("said aloud")), "{detail}");
    assert!(detail["replies"][0].as_str().is_some_and(|r| r.contains("<body>said aloud</body>")), "{detail}");
}

#[tokio::test]
async fn the_deliveries_api_wants_the_token_and_names_what_is_wrong() {
    let Some(b) = Bridge::start(Options { api: true, ..Options::default() }).await else { return };
    let api = b.api.clone().expect("api");
    let anonymous = reqwest::get(format!("{api}/deliveries")).await.expect("GET");
    assert_eq!(anonymous.status().as_u16(), 401);
    let page = reqwest::get(format!("{api}/console")).await.expect("GET /console");
    assert_eq!(page.status().as_u16(), 200, "the page itself is public; its data is not");
    let policy = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().await.expect("the page");
    assert!(html.contains("data-login=\"token\""), "the page knows it must ask for the token");
    for (path, code, named) in [
        ("/deliveries?status=lost", 400, "`status`"),
        ("/deliveries?limit=0", 400, "`limit`"),
        ("/deliveries?colour=red", 400, "`colour`"),
        ("/deliveries/12", 404, "12"),
        ("/deliveries/nope", 400, "nope"),
    ] {
        let (status, json) = call(&b, reqwest::Method::GET, path).await;
        assert_eq!(status, code, "{path}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| e.contains(named)), "{path}: {json}");
    }
    let (status, json) = call(&b, reqwest::Method::POST, "/deliveries/redeliver").await;
    assert_eq!(status, 400, "`since` is required: {json}");
}

/// The console in Debian's Chromium, driven by Playwright (`host/tests/console/`): log in, see
/// a delivery appear live, open it, press redeliver, see the new one.
#[tokio::test]
async fn the_console_shows_a_delivery_live_opens_it_and_redelivers_it() {
    let script = testkit::guests::repo_root().join("host/tests/console/console.test.mjs");
    let modules = testkit::guests::repo_root().join("host/tests/console/node_modules/playwright-core");
    let hint = "scripts/install-deps --tests";
    if !testkit::require_program("chromium", hint)
        || !testkit::require_program("node", hint)
        || !testkit::require(modules.exists(), "playwright-core (host/tests/console)", hint)
    {
        return;
    }
    let Some(filter) = commands_filter() else { return };
    let toml = format!("{filter}\n[deliveries]\nkeep_bodies = true\n");
    let Some(mut b) = Bridge::start(Options { toml: &toml, api: true, ..Options::default() }).await else { return };
    let text = "seen in the console";
    let mut browser = std::process::Command::new("node")
        .arg(&script)
        .env("CONSOLE_URL", format!("{}/console", b.api.clone().expect("api")))
        .env("API_TOKEN", API_TOKEN)
        .env("MESSAGE_BODY", text)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut to_browser = browser.stdin.take().expect("stdin");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = browser.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut said = Vec::new();
    let mut next_line = async |expected: &str| -> String {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.recv()).await.ok().flatten();
        let line = line.unwrap_or_else(|| format!("(nothing; it said {said:?})"));
        said.push(line.clone());
        assert!(line.starts_with(expected), "the browser test said {line:?}, not {expected:?}; before: {said:?}");
        line
    };
    next_line("ready").await;
    b.alice.send(&message(&format!("echo@{DOMAIN}"), text)).await.expect("send");
    let (reply, _) = b.alice.expect(WAIT, "the echo", |el| body(el).is_some()).await.expect("reply");
    assert_eq!(body(&reply).as_deref(), Some(text));
    writeln!(to_browser, "sent").expect("tell the browser");
    let opened = next_line("opened ").await;
    let redelivered = next_line("redelivered ").await;
    let (again, _) = b.alice.expect(WAIT, "the redelivered echo", |el| body(el).is_some()).await.expect("reply");
    assert_eq!(body(&again).as_deref(), Some(text), "the redelivery reaches the sender");
    let status = browser.wait().expect("node exits");
    let mut stderr = String::new();
    if let Some(mut e) = browser.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "the browser test failed: {stderr}");
    let new: u64 = redelivered.trim_start_matches("redelivered ").trim().parse().expect("an id");
    let old: u64 = opened.trim_start_matches("opened ").trim().parse().expect("an id");
    assert_eq!(get(&b, &format!("/deliveries/{new}")).await["redelivery_of"].as_u64(), Some(old));
}
