//! The command line as an operator meets it: config mistakes are one line naming the key and
//! the file, with exit code 2; the annotated example config is valid.

use std::path::{Path, PathBuf};
use std::process::Command;

use stanzahook::config::{self, Overrides};

use crate::harness::stanzahook_bin;

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stanzahook.toml")
}

fn stanzahook(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(stanzahook_bin()).args(args).env_remove("STANZAHOOK_SECRET").output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_config_is_valid() {
    let config = config::load(Some(&example_config()), &Overrides::default()).expect("example config parses");
    assert_eq!(config.domain, "bot.example.org");
    let (code, stdout, stderr) = stanzahook(&["check", "--config", &example_config().display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("config ok"), "{stdout}");
}

#[test]
fn config_mistakes_exit_2_with_one_line_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "unknown.toml",
            "domain = \"a.example\"\npost_urll = \"http://x/\"\n",
            "`post_urll`: unknown key `post_urll`; did you mean `post_url`?",
        ),
        ("missing.toml", "domain = \"a.example\"\nserver = \"h:1\"\nsecret = \"s\"\n", "`post_url`: missing"),
        (
            "address.toml",
            "domain = \"a.example\"\nserver = \"no-port\"\nsecret = \"s\"\npost_url = \"http://x/\"\n",
            "`server`: \"no-port\" is not HOST:PORT",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let (code, _, stderr) = stanzahook(&["run", "--config", &path.display().to_string()]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{name}: names the file: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn flags_alone_start_a_bridge_config() {
    let (code, stdout, stderr) = stanzahook(&[
        "check",
        "--domain",
        "bot.example.org",
        "--server",
        "127.0.0.1:5347",
        "--secret",
        "x",
        "--post-url",
        "http://127.0.0.1:8080/",
        "--stanzas",
        "message,iq,presence",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("forwarding iq, message, presence"), "{stdout}");
    let (code, _, stderr) = stanzahook(&["check", "--domain", "bot.example.org", "--stanzas", "mesage"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn secret_comes_from_the_environment() {
    let out = Command::new(stanzahook_bin())
        .args(["check", "--domain", "d.example", "--server", "h:1", "--post-url", "http://x/"])
        .env("STANZAHOOK_SECRET", "from-env")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("from-env"), "the secret is never printed: {all}");
}

/// `stanzahook filter run` on the example filters: the decision each is designed to make.
#[test]
fn filter_run_shows_each_example_decision() {
    if !testkit::guests::require_wasm_target() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, json: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, json).expect("write");
        path.display().to_string()
    };
    let ping = write(
        "ping.json",
        r#"{"to":"echo@bot.example.org","from":"a@example.org/r","kind":"message","body":"/ping","stanza":"<message/>"}"#,
    );
    let secret = write(
        "secret.json",
        r#"{"to":"echo@bot.example.org","from":"a@example.org/r","kind":"message","body":"my password","stanza":"<message/>"}"#,
    );
    let slack_reply = write("reply.json", r#"{"text":"hello from slack"}"#);
    let wasm = |name: &str| testkit::guests::wasm("examples/filters", name).expect("builds").display().to_string();

    let (code, out, err) = stanzahook(&["filter", "run", &wasm("commands"), "--event", &ping]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("before: answer") && out.contains("\"body\": \"pong\""), "{out}");
    assert!(out.contains("allows reuse: stanzahook keeps its instance between calls"), "{out}");

    // The event on standard input.
    let mut piped = Command::new(stanzahook_bin())
        .args(["filter", "run", &wasm("commands"), "--event", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    {
        use std::io::Write as _;
        let event = std::fs::read(&ping).expect("event");
        piped.stdin.take().expect("stdin").write_all(&event).expect("write");
    }
    let out = piped.wait_with_output().expect("ends");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"body\": \"pong\""), "{out:?}");

    let (code, out, err) = stanzahook(&["filter", "run", &wasm("reshape"), "--event", &ping, "--reply", &slack_reply]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("before: rewrite") && out.contains("\"user\": \"a@example.org\""), "{out}");
    assert!(out.contains("after (status 200): replace") && out.contains("\"body\": \"hello from slack\""), "{out}");

    let (code, out, err) =
        stanzahook(&["filter", "run", &wasm("redact"), "--event", &secret, "--set", "patterns=password"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("before: rewrite") && out.contains("my [redacted]"), "{out}");
    assert!(out.contains("a fresh instance per call"), "{out}");
    let (code, out, _) = stanzahook(&[
        "filter",
        "run",
        &wasm("redact"),
        "--event",
        &secret,
        "--set",
        "patterns=password",
        "--config",
        "action=drop",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("before: drop") && out.contains("log info: dropped a message"), "{out}");
    // `--config` meant a file everywhere else: its first use for settings still works, told so.
    let (code, _, err) =
        stanzahook(&["filter", "run", &wasm("redact"), "--event", &secret, "--config", "patterns=password"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is now `--set KEY=VALUE`"), "{err}");
    let (code, _, err) =
        stanzahook(&["filter", "run", &wasm("redact"), "--event", &secret, "--set", "stanzahook.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected KEY=VALUE") && err.contains("a config file is for `stanzahook run`"), "{err}");

    let failing = testkit::guests::wasm("host/tests/guests", "fail").expect("builds").display().to_string();
    let (code, out, _) = stanzahook(&["filter", "run", &failing, "--event", &ping]);
    assert_eq!(code, 1, "a failing filter fails the command: {out}");
    assert!(out.contains("before: error: returned an error: refusing on purpose"), "{out}");

    // A 16 MiB error message was printed whole.
    let hostile = testkit::guests::wasm("host/tests/guests", "hostile").expect("builds").display().to_string();
    let (code, out, _) = stanzahook(&["filter", "run", &hostile, "--event", &ping, "--set", "mode=huge-error"]);
    assert_eq!(code, 1, "{out:.400}");
    assert!(out.len() < 8 * 1024, "filter run printed {} bytes", out.len());
    assert!(out.contains("before: error: returned an error: EEEE") && out.contains("more bytes cut]"), "{out:.400}");
}

#[test]
fn check_compiles_filters_and_names_a_broken_one() {
    if !testkit::guests::require_wasm_target() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = testkit::guests::wasm("examples/filters", "commands").expect("builds");
    let base = "domain = \"bot.example.org\"\nserver = \"h:1\"\nsecret = \"s\"\npost_url = \"http://x/\"\n";
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("{base}[[filter]]\npath = {:?}\n", commands.display().to_string())).expect("write");
    let (code, out, err) = stanzahook(&["check", "--config", &good.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("filters compiled: commands"), "{out}");

    let not_wasm = dir.path().join("broken.wasm");
    std::fs::write(&not_wasm, "this is not wasm").expect("write");
    let (code, _, err) =
        stanzahook(&["check", "--config", &good.display().to_string(), "--filter", &not_wasm.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("filter `broken`") && err.contains("broken.wasm"), "names the filter and file: {err}");
    // A core module (the smallest valid one) instead of a component; a text file.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let (code, _, err) =
        stanzahook(&["check", "--config", &good.display().to_string(), "--filter", &core.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a core WebAssembly module, not a component") && err.contains("wasm32-wasip2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (_, _, err) =
        stanzahook(&["check", "--config", &good.display().to_string(), "--filter", &not_wasm.display().to_string()]);
    assert!(err.contains("not WebAssembly at all (it starts with \"this\")"), "{err}");
    let missing = dir.path().join("missing.wasm");
    let (code, _, err) =
        stanzahook(&["check", "--config", &good.display().to_string(), "--filter", &missing.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    // Without NO_COLOR, logs to a file or a pipe carried ANSI escapes.
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("stanzahook.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = testkit::free_port().expect("port");
    let mut child = Command::new(stanzahook_bin())
        .args(["run", "--domain", "bot.example.org", "--server", &format!("127.0.0.1:{port}"), "--secret", "s"])
        .args(["--post-url", "http://127.0.0.1:9/"])
        .env_remove("NO_COLOR")
        .env_remove("STANZAHOOK_SECRET")
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .expect("runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("next attempt") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("connecting"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file:\n{text:?}");
}

#[test]
fn help_names_the_environment_the_exit_codes_and_no_spec_section() {
    let (code, out, _) = stanzahook(&["--help"]);
    assert_eq!(code, 0);
    for expected in ["STANZAHOOK_SECRET", "STANZAHOOK_API_TOKEN", "RUST_LOG", "NO_COLOR", "Exit codes: 0"] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    let (_, run, _) = stanzahook(&["run", "--help"]);
    assert!(run.contains("[default: message]"), "{run}");
    let (_, filter, _) = stanzahook(&["filter", "run", "--help"]);
    assert!(!filter.contains("SPEC"), "a help text cites a document the user does not have:\n{filter}");
    assert!(filter.contains("`-` reads"), "{filter}");
    // --dev belongs to `run`: `check` took it and ignored it.
    let (code, _, err) = stanzahook(&[
        "check",
        "--dev",
        "--domain",
        "d.example",
        "--server",
        "h:1",
        "--secret",
        "s",
        "--post-url",
        "http://x/",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--dev is for `stanzahook run`"), "{err}");
}

/// The behaviour document the project was built from lives beside the repository, not in it: a
/// comment or doc that cites one of its sections sends a maintainer nowhere. The README's
/// sections are what the repository's texts point to.
#[test]
fn no_text_in_the_repository_cites_a_spec_section_it_does_not_hold() {
    let root = testkit::guests::repo_root();
    let mut citing = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    dirs.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Spelled in two pieces, so that this file does not cite one itself.
            if text.contains(&format!("SPEC {}", '§')) {
                citing.push(path.strip_prefix(&root).unwrap_or(&path).display().to_string());
            }
        }
    }
    assert!(citing.is_empty(), "these cite a SPEC section; point to the README's sections instead: {citing:?}");
}

/// `filter run` compiles through the same disk cache as `run` and `check`: the second run of an
/// unchanged filter loads it from there.
#[test]
fn filter_run_loads_an_unchanged_filter_from_the_compile_cache() {
    if !testkit::guests::require_wasm_target() {
        return;
    }
    let wasm = testkit::guests::wasm("examples/filters", "commands").expect("builds").display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let event = dir.path().join("ping.json");
    std::fs::write(
        &event,
        r#"{"to":"echo@bot.example.org","from":"a@b/c","kind":"message","body":"/ping","stanza":"<message/>"}"#,
    )
    .expect("write");
    let run = || {
        let out = Command::new(stanzahook_bin())
            .args(["filter", "run", &wasm, "--event", &event.display().to_string()])
            .env_remove("CACHE_DIRECTORY")
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned()
    };
    let first = run();
    assert!(first.contains(" compiled in ") && first.contains("version "), "{first}");
    let second = run();
    assert!(second.contains(" from the compile cache in "), "{second}");
    assert!(dir.path().join("cache/stanzahook").is_dir(), "the cache is where run and check keep theirs");
}
