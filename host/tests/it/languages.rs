//! Filters in Python and JavaScript (README: "Filters in Python and JavaScript"): the example
//! filters of each language, built from source with their pinned tooling, pass the same cases as
//! the Rust ones (`stanzahook filter test`) and serve through a real Prosody; `stanzahook dev`
//! rebuilds a saved filter and swaps it in, and sends the lines typed at its prompt.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use testkit::client::body;
use testkit::guests::Language;

use crate::harness::{API_TOKEN, Bridge, CONNECT_WAIT, DOMAIN, Options, WAIT};

const EXAMPLES: [&str; 3] = ["commands", "reshape", "redact"];

#[derive(Debug, Clone, Copy)]
enum Lang {
    Rust,
    Python,
    JavaScript,
}

/// The example filter `name` in `lang`, built from source; `None` (said loudly) where the
/// tooling is missing outside CI.
fn example(lang: Lang, name: &str) -> Option<PathBuf> {
    let built = match lang {
        Lang::Rust => {
            if !testkit::guests::require_wasm_target() {
                return None;
            }
            testkit::guests::wasm("examples/filters", name)
        }
        Lang::Python | Lang::JavaScript => {
            let language = if matches!(lang, Lang::Python) { Language::Python } else { Language::JavaScript };
            if !testkit::guests::require_tools(language) {
                return None;
            }
            testkit::guests::interpreted(language, name)
        }
    };
    Some(built.unwrap_or_else(|e| panic!("the {lang:?} example {name} does not build: {e:#}")))
}

fn stanzahook(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(crate::harness::stanzahook_bin())
        .args(args)
        .env("XDG_CACHE_HOME", testkit::guests::repo_root().join("target/test-cache"))
        .output()
        .expect("runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn cases(name: &str) -> String {
    testkit::guests::repo_root().join(format!("examples/filters/cases/{name}.toml")).display().to_string()
}

/// One file of cases per example, and every build of it, whatever its language, passes it:
/// the three languages' examples behave alike.
#[test]
fn each_example_passes_its_cases_in_each_language() {
    for lang in [Lang::Rust, Lang::Python, Lang::JavaScript] {
        for name in EXAMPLES {
            let Some(wasm) = example(lang, name) else { continue };
            let (code, out, err) = stanzahook(&["filter", "test", &wasm.display().to_string(), &cases(name)]);
            assert_eq!(code, 0, "{lang:?} {name}:\n{out}{err}");
            assert!(out.contains(" passed, 0 failed") && !out.contains("FAIL"), "{lang:?} {name}:\n{out}");
            assert!(!out.contains("0 cases"), "{out}");
        }
    }
}

/// A case that does not hold names what differs and fails the run; a cases file with a mistake
/// is a usage error naming the file.
#[test]
fn filter_test_shows_what_differs_and_fails() {
    let Some(wasm) = example(Lang::Rust, "commands") else { return };
    let wasm = wasm.display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cases.toml");
    std::fs::write(
        &file,
        "[[case]]\nname = \"ping\"\nevent = { body = \"/ping\" }\nanswer = { body = \"pong\" }\n\n\
         [[case]]\nname = \"wrong on purpose\"\nevent = { body = \"/ping\" }\nanswer = { body = \"PONG\" }\n\n\
         [[case]]\nname = \"not answered\"\nevent = { body = \"hello\" }\nbefore = \"drop\"\n",
    )
    .expect("write");
    let (code, out, _) = stanzahook(&["filter", "test", &wasm, &file.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok    ping"), "{out}");
    assert!(
        out.contains("FAIL  wrong on purpose") && out.contains(r#"answer.body: expected "PONG", got "pong""#),
        "{out}"
    );
    assert!(out.contains("FAIL  not answered") && out.contains("before: expected drop, got pass"), "{out}");
    assert!(out.contains("3 cases: 1 passed, 2 failed"), "{out}");

    std::fs::write(&file, "[[case]]\nname = \"x\"\nexpect = \"pass\"\n").expect("write");
    let (code, _, err) = stanzahook(&["filter", "test", &wasm, &file.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cases.toml") && err.contains("unknown field `expect`"), "{err}");
}

macro_rules! through_prosody {
    ($($test:ident: $lang:ident $name:literal => $example:path;)*) => {$(
        #[tokio::test]
        async fn $test() {
            let Some(wasm) = example(Lang::$lang, $name) else { return };
            $example(&wasm).await;
        }
    )*};
}

through_prosody! {
    python_commands_answers_itself_and_passes_the_rest: Python "commands" => crate::filters::commands_example;
    python_reshape_speaks_a_chat_webhook_of_another_shape: Python "reshape" => crate::filters::reshape_example;
    python_redact_masks_or_drops_what_matches: Python "redact" => crate::filters::redact_example;
    javascript_commands_answers_itself_and_passes_the_rest: JavaScript "commands" => crate::filters::commands_example;
    javascript_reshape_speaks_a_chat_webhook_of_another_shape: JavaScript "reshape" => crate::filters::reshape_example;
    javascript_redact_masks_or_drops_what_matches: JavaScript "redact" => crate::filters::redact_example;
}

/// `stanzahook dev` builds a filter from its source before serving, rebuilds it when its source
/// is saved, and serves the new version; the compile after the edit takes the interpreter's
/// functions from the function cache.
async fn dev_rebuilds_a_saved_filter(language: Language, file: &str) {
    if !testkit::guests::require_tools(language) {
        return;
    }
    let examples = if language == Language::Python { "python" } else { "js" };
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("commands");
    std::fs::create_dir(&source).expect("mkdir");
    let original = testkit::guests::repo_root().join(format!("examples/filters/{examples}/commands/{file}"));
    let text = std::fs::read_to_string(&original).expect("the example");
    std::fs::write(source.join(file), &text).expect("copy");
    let wasm = dir.path().join("commands.wasm");
    let toml = format!(
        "compile_cache = {:?}\n[[filter]]\nname = \"commands\"\npath = {:?}\nsource = {:?}\n",
        dir.path().join("cache").display().to_string(),
        wasm.display().to_string(),
        source.display().to_string()
    );
    let options =
        Options { toml: &toml, dev_loop: Some(&[]), connect_wait: Some(CONNECT_WAIT * 3), ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    assert!(b.host.log().contains("dev: built filter `commands`"), "{}", b.host.log());
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("pong"));

    assert!(text.contains("\"pong\"") || text.contains("'pong'"), "the example answers pong");
    let edited = text.replace("\"pong\"", "\"pong, edited\"").replace("'pong'", "'pong, edited'");
    let saved = Instant::now();
    std::fs::write(source.join(file), edited).expect("save");
    b.host.wait_for_log("dev: rebuilt filter `commands`", WAIT * 6).await.expect("rebuilt");
    let rebuilt = saved.elapsed();
    b.host.wait_for_log("reloaded in", WAIT * 3).await.expect("the new version serves");
    let served = saved.elapsed();
    let log = b.host.log();
    let swap = log.lines().rfind(|l| l.contains("reloaded in")).unwrap_or_default();
    assert!(swap.contains("functions from the function cache"), "the recompile used the function cache: {log}");
    eprintln!("{language:?}: saved → rebuilt in {rebuilt:?}, serving in {served:?}; {swap}");
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("pong, edited"));

    // A save that does not build leaves the last good version serving.
    std::fs::write(source.join(file), "this is not a program (\n").expect("save");
    b.host.wait_for_log("the filter's earlier version keeps serving", WAIT * 6).await.expect("the failure is said");
    assert_eq!(body(&b.ask("echo", "/ping").await).as_deref(), Some("pong, edited"));
}

#[tokio::test]
async fn dev_rebuilds_a_saved_python_filter_and_swaps_it_in() {
    dev_rebuilds_a_saved_filter(Language::Python, "app.py").await;
}

#[tokio::test]
async fn dev_rebuilds_a_saved_javascript_filter_and_swaps_it_in() {
    dev_rebuilds_a_saved_filter(Language::JavaScript, "filter.js").await;
}

/// A line typed at `stanzahook dev`'s prompt and a `POST /inject` become messages from the test
/// address, here alice's: she receives the filter's answers, and the way of each is logged.
#[tokio::test]
async fn dev_sends_what_is_typed_at_its_prompt_and_posted_to_inject() {
    let Some(wasm) = example(Lang::Rust, "commands") else { return };
    let toml = format!("[[filter]]\npath = {:?}\n", wasm.display().to_string());
    let options =
        Options { toml: &toml, api: true, dev_loop: Some(&["--from", "alice@localhost"]), ..Options::default() };
    let Some(mut b) = Bridge::start(options).await else { return };
    assert!(b.host.log().contains("dev: no filter names a `source`"), "{}", b.host.log());
    b.host.type_line("/ping").expect("type");
    let (reply, _) = b.alice.expect(WAIT, "pong", |el| body(el).is_some()).await.expect("the answer");
    assert_eq!(body(&reply).as_deref(), Some("pong"));
    assert_eq!(reply.attr("from"), Some(format!("bot@{DOMAIN}").as_str()), "{reply:?}");
    b.host.wait_for_log("commands before: answer", WAIT).await.expect("the way is logged");

    let api = b.api.clone().expect("api");
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{api}/inject"))
        .bearer_auth(API_TOKEN)
        .body(serde_json::json!({"body": "/help", "to": format!("helper@{DOMAIN}")}).to_string())
        .send()
        .await
        .expect("POST /inject");
    assert_eq!(posted.status(), 202);
    let (reply, _) = b.alice.expect(WAIT, "help", |el| body(el).is_some()).await.expect("the answer");
    assert!(body(&reply).unwrap_or_default().starts_with("Commands: /ping"), "{reply:?}");
    assert_eq!(reply.attr("from"), Some(format!("helper@{DOMAIN}").as_str()));
    let refused = client
        .post(format!("{api}/inject"))
        .body(serde_json::json!({"body": "x"}).to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 401, "the token is asked for when one is set");
    let empty = client
        .post(format!("{api}/inject"))
        .bearer_auth(API_TOKEN)
        .body(serde_json::json!({}).to_string())
        .send()
        .await;
    assert_eq!(empty.expect("POST").status(), 400);
}

/// `stanzahook run` serves no `/inject`: test messages exist only in the development loop.
#[tokio::test]
async fn run_serves_no_inject() {
    let Some(b) = Bridge::start(Options { api: true, ..Options::default() }).await else { return };
    let api = b.api.clone().expect("api");
    let posted = reqwest::Client::new()
        .post(format!("{api}/inject"))
        .bearer_auth(API_TOKEN)
        .body(serde_json::json!({"body": "/ping"}).to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), 404);
}

/// The JavaScript SDK's own tests (`npm test --prefix guest-sdk/js`: the SDK in Node with a
/// stand-in for the host), run with the rest of the suite.
#[test]
fn the_javascript_sdk_passes_its_own_tests() {
    if !testkit::require_program("node", "apt-get install nodejs") {
        return;
    }
    let out = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(testkit::guests::repo_root().join("guest-sdk/js"))
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("# fail 0") && !text.contains("# pass 0"), "{text}");
}
