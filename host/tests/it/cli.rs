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
    let out = Command::new(stanzahook_bin())
        .args(args)
        .env_remove("STANZAHOOK_SECRET")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_config_is_valid() {
    let config = config::load(Some(&example_config()), &Overrides::default())
        .expect("example config parses");
    assert_eq!(config.domain, "bot.example.org");
    let (code, stdout, stderr) =
        stanzahook(&["check", "--config", &example_config().display().to_string()]);
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
            "`post_urll`: unknown field",
        ),
        (
            "missing.toml",
            "domain = \"a.example\"\nserver = \"h:1\"\nsecret = \"s\"\n",
            "`post_url`: missing",
        ),
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
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: names the file: {stderr}"
        );
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
    assert!(
        stdout.contains("forwarding iq, message, presence"),
        "{stdout}"
    );
    let (code, _, stderr) = stanzahook(&[
        "check",
        "--domain",
        "bot.example.org",
        "--stanzas",
        "mesage",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn secret_comes_from_the_environment() {
    let out = Command::new(stanzahook_bin())
        .args([
            "check",
            "--domain",
            "d.example",
            "--server",
            "h:1",
            "--post-url",
            "http://x/",
        ])
        .env("STANZAHOOK_SECRET", "from-env")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("from-env"),
        "the secret is never printed: {all}"
    );
}
