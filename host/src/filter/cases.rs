//! `stanzahook filter test`: one filter against a file of cases (README: "Testing a filter"), for
//! a filter author's CI. Each case is an event, optionally what the webhook answered, and the
//! verdicts the filter must reach; the report names each case and, for one that failed, the
//! first place where what the filter did differs from what the case expects.
//!
//! The cases file is TOML, like stanzahook's config:
//!
//! ```toml
//! [config]                      # the filter's settings, as [filter.config] would give them
//! prefix = "/"
//!
//! [[case]]
//! name = "/ping is answered without the webhook"
//! event = { body = "/ping" }    # over a chat message from alice@localhost/phone to bot@bot.localhost
//! answer = { body = "pong" }    # the before hook answers with (at least) this
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{BeforeDecision, CallReport, FilterLoader, FilterSettings, LoadedFilter};

/// The sender and recipient of a case's event unless it names others: the example servers'.
const FROM: &str = "alice@localhost/phone";
const TO: &str = "bot@bot.localhost";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    /// The filter's settings for every case.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Keys every case's event has, under the case's own.
    #[serde(default)]
    event: Map<String, Value>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Settings of this case over the file's.
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    event: Map<String, Value>,
    /// `pass`, `rewrite`, `answer` or `drop`; implied by `rewrite` or `answer`.
    before: Option<BeforeName>,
    /// The event the filter passes on, as a pattern.
    rewrite: Option<Value>,
    /// The filter's answer, as a pattern.
    answer: Option<Value>,
    /// What the webhook answers: runs the `after` hook.
    webhook: Option<Webhook>,
    /// `pass`, `replace` or `drop`; implied by `replace`.
    after: Option<AfterName>,
    /// The reply the `after` hook makes instead, as a pattern.
    replace: Option<Value>,
    /// The hook fails with an error containing this.
    error: Option<String>,
    /// Lines the filter logs (each contained in one of its log lines).
    #[serde(default)]
    log: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    /// 200 unless given.
    status: Option<u16>,
    reply: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BeforeName {
    Pass,
    Rewrite,
    Answer,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AfterName {
    Pass,
    Replace,
    Drop,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct CasesRun {
    pub wasm: PathBuf,
    pub cases: PathBuf,
    /// Settings over the file's and each case's (`--set`).
    pub config: BTreeMap<String, String>,
}

/// The printable report and its counts.
#[derive(Debug)]
pub struct CasesReport {
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

/// Runs every case; an error is a file that cannot be read or a filter that cannot be loaded.
pub fn run(args: &CasesRun) -> anyhow::Result<CasesReport> {
    let file = read(&args.cases)?;
    if file.case.is_empty() {
        bail!("{}: no [[case]] in the file", args.cases.display());
    }
    let mut loader = FilterLoader::new(super::CompileCache::default_dir());
    // One instance of the filter per distinct set of settings; most files have one.
    let mut loaded: Vec<(BTreeMap<String, String>, LoadedFilter)> = Vec::new();
    let mut out = String::new();
    let (mut passed, mut failed) = (0, 0);
    for (n, case) in file.case.iter().enumerate() {
        let mut config = file.config.clone();
        config.extend(case.config.clone());
        config.extend(args.config.clone());
        let filter = match loaded.iter().position(|(c, _)| *c == config) {
            Some(i) => &loaded[i].1,
            None => {
                let mut settings = FilterSettings::from_path(args.wasm.clone());
                settings.config = config.clone();
                let (filter, line) = loader.load_alone(settings)?;
                if loaded.is_empty() {
                    let _ = writeln!(out, "{line}");
                }
                loaded.push((config, filter));
                &loaded[loaded.len() - 1].1
            }
        };
        let event = event(&file.event, &case.event, n + 1);
        match check(filter, case, &event) {
            Ok(()) => {
                passed += 1;
                let _ = writeln!(out, "ok    {}", case.name);
            }
            Err(why) => {
                failed += 1;
                let _ = writeln!(out, "FAIL  {}", case.name);
                for line in why.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let _ = writeln!(out, "{} cases: {passed} passed, {failed} failed", passed + failed);
    Ok(CasesReport { text: out, passed, failed })
}

fn read(path: &Path) -> anyhow::Result<CasesFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file: CasesFile = toml::from_str(&text).with_context(|| format!("{}: not a cases file", path.display()))?;
    for case in &file.case {
        let wrong = |what: &str| anyhow::anyhow!("{}: case {:?}: {what}", path.display(), case.name);
        match (case.before, &case.rewrite, &case.answer) {
            (_, Some(_), Some(_)) => return Err(wrong("`rewrite` and `answer` cannot both be expected")),
            (Some(b), Some(_), _) if b != BeforeName::Rewrite => {
                return Err(wrong("`rewrite` needs before = \"rewrite\""));
            }
            (Some(b), _, Some(_)) if b != BeforeName::Answer => {
                return Err(wrong("`answer` needs before = \"answer\""));
            }
            _ => {}
        }
        if case.replace.is_some() && case.after.is_some_and(|a| a != AfterName::Replace) {
            return Err(wrong("`replace` needs after = \"replace\""));
        }
        if (case.after.is_some() || case.replace.is_some()) && case.webhook.is_none() {
            return Err(wrong("an expected `after` verdict needs `webhook`, what the webhook answered"));
        }
    }
    Ok(file)
}

/// The case's event: a chat message from `FROM` to `TO`, the file's keys, the case's keys, and a
/// `stanza` written from them unless one is given.
fn event(common: &Map<String, Value>, own: &Map<String, Value>, n: usize) -> Value {
    let mut event = Map::new();
    for (key, value) in [("to", TO), ("from", FROM), ("kind", "message"), ("type", "chat")] {
        event.insert(key.into(), value.into());
    }
    event.insert("id".into(), format!("case-{n}").into());
    event.extend(common.clone());
    event.extend(own.clone());
    if !event.contains_key("stanza") {
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut stanza = tokio_xmpp::minidom::Element::builder(text("kind"), crate::stanza::NS_CLIENT);
        if let Some(body) = event.get("body").and_then(Value::as_str) {
            stanza =
                stanza.append(tokio_xmpp::minidom::Element::builder("body", crate::stanza::NS_CLIENT).append(body));
        }
        let mut stanza = stanza.build();
        for key in ["from", "to", "type", "id"] {
            crate::stanza::set_attr(&mut stanza, key, &text(key));
        }
        event.insert("stanza".into(), String::from(&stanza).into());
    }
    Value::Object(event)
}

/// Runs the case; `Err` says what differs.
fn check(filter: &LoadedFilter, case: &Case, event: &Value) -> Result<(), String> {
    let text = event.to_string();
    let (before, report) = filter.before(&text);
    let mut logs = report.logs.clone();
    let before = match before {
        Ok(verdict) => verdict,
        Err(e) => return expected_error(case, "before", &e.to_string(), &report),
    };
    let (name, json) = (before.name(), before.json());
    let wanted = case
        .before
        .or(case.rewrite.as_ref().map(|_| BeforeName::Rewrite))
        .or(case.answer.as_ref().map(|_| BeforeName::Answer));
    if let Some(wanted) = wanted.map(lower)
        && wanted != name
    {
        return Err(format!("before: expected {wanted}, got {name}{}", shown(json.as_ref())));
    }
    if let Some(pattern) = case.rewrite.as_ref().or(case.answer.as_ref()) {
        let got = json.as_ref().unwrap_or(&Value::Null);
        if let Some(difference) = differs(pattern, got, name) {
            return Err(format!("before: {difference}\n  the whole {name}: {got}"));
        }
    }
    if let Some(webhook) = &case.webhook {
        if !matches!(before, BeforeDecision::Pass | BeforeDecision::Rewrite(_)) {
            return Err(format!("before: {name}, so the webhook is not called; the case's `webhook` is never used"));
        }
        let status = webhook.status.unwrap_or(200);
        let reply = webhook.reply.as_ref().map(Value::to_string);
        let (after, report) = filter.after(&text, status, reply.as_deref());
        logs.extend(report.logs.clone());
        let after = match after {
            Ok(verdict) => verdict,
            Err(e) => return expected_error(case, "after", &e.to_string(), &report),
        };
        let (name, json) = (after.name(), after.json());
        if let Some(wanted) = case.after.or(case.replace.as_ref().map(|_| AfterName::Replace)).map(lower)
            && wanted != name
        {
            return Err(format!("after: expected {wanted}, got {name}{}", shown(json.as_ref())));
        }
        if let Some(pattern) = &case.replace {
            let got = json.as_ref().unwrap_or(&Value::Null);
            if let Some(difference) = differs(pattern, got, "replace") {
                return Err(format!("after: {difference}\n  the whole reply: {got}"));
            }
        }
    }
    if let Some(error) = &case.error {
        return Err(format!("expected an error containing {error:?}; both hooks succeeded"));
    }
    missing_logs(case, &logs)
}

fn expected_error(case: &Case, hook: &str, message: &str, report: &CallReport) -> Result<(), String> {
    match &case.error {
        Some(wanted) if message.contains(wanted.as_str()) => missing_logs(case, &report.logs),
        Some(wanted) => Err(format!("{hook}: expected an error containing {wanted:?}, got: {message}")),
        None => Err(format!("{hook}: failed: {message}")),
    }
}

fn missing_logs(case: &Case, logs: &[(super::Level, String)]) -> Result<(), String> {
    let missing: Vec<&String> =
        case.log.iter().filter(|want| !logs.iter().any(|(_, line)| line.contains(want.as_str()))).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let said: Vec<&str> = logs.iter().map(|(_, line)| line.as_str()).collect();
    Err(format!("log: expected a line containing {:?}; the filter logged {said:?}", missing[0]))
}

/// The first place where `got` does not match `pattern`: objects match when every key of the
/// pattern matches (other keys are not looked at), lists element by element, the rest by equality.
fn differs(pattern: &Value, got: &Value, at: &str) -> Option<String> {
    match (pattern, got) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, want)| match have.get(key) {
            Some(have) => differs(want, have, &format!("{at}.{key}")),
            None => Some(format!("{at}.{key}: expected {want}, missing")),
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            want.iter().zip(have).enumerate().find_map(|(i, (want, have))| differs(want, have, &format!("{at}[{i}]")))
        }
        (want, have) if want == have => None,
        (want, have) => Some(format!("{at}: expected {want}, got {have}")),
    }
}

fn lower(name: impl std::fmt::Debug) -> String {
    format!("{name:?}").to_lowercase()
}

fn shown(json: Option<&Value>) -> String {
    json.map(|j| format!(" {j}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pattern_names_the_first_difference() {
        let got = json!({"body": "pong", "id": "x", "list": [1, {"a": 2}]});
        assert_eq!(differs(&json!({"body": "pong"}), &got, "answer"), None, "other keys are not looked at");
        assert_eq!(
            differs(&json!({"body": "ping"}), &got, "answer").as_deref(),
            Some(r#"answer.body: expected "ping", got "pong""#)
        );
        assert_eq!(differs(&json!({"nope": 1}), &got, "answer").as_deref(), Some("answer.nope: expected 1, missing"));
        assert_eq!(
            differs(&json!({"list": [1, {"a": 3}]}), &got, "r").as_deref(),
            Some("r.list[1].a: expected 3, got 2")
        );
        assert!(differs(&json!({"list": [1]}), &got, "r").is_some(), "lists of other lengths differ");
    }

    #[test]
    fn an_event_is_a_chat_message_with_the_cases_keys_and_a_stanza_written_from_them() {
        let common = json!({"type": "normal"}).as_object().cloned().unwrap_or_default();
        let own = json!({"body": "a < b"}).as_object().cloned().unwrap_or_default();
        let e = event(&common, &own, 3);
        assert_eq!(
            (e["from"].as_str(), e["to"].as_str(), e["type"].as_str(), e["id"].as_str()),
            (Some(FROM), Some(TO), Some("normal"), Some("case-3"))
        );
        let stanza = e["stanza"].as_str().unwrap_or_default();
        assert!(stanza.starts_with("<message") && stanza.contains("<body>a &lt; b</body>"), "{stanza}");
        let given = json!({"stanza": "<message/>"}).as_object().cloned().unwrap_or_default();
        assert_eq!(event(&Map::new(), &given, 1)["stanza"], "<message/>", "a given stanza stays");
    }

    #[test]
    fn contradictory_expectations_are_refused_naming_the_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cases.toml");
        for (text, says) in [
            (
                "[[case]]\nname = \"x\"\nbefore = \"pass\"\nanswer = { body = \"y\" }",
                "`answer` needs before = \"answer\"",
            ),
            ("[[case]]\nname = \"x\"\nafter = \"drop\"", "needs `webhook`"),
            ("[[case]]\nname = \"x\"\nbefor = \"pass\"", "unknown field `befor`"),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = format!("{:#}", read(&path).expect_err("refused"));
            assert!(e.contains(says) && e.contains("cases.toml"), "{e}");
        }
    }
}
