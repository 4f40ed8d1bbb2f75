//! Data-driven golden tests of the JSON contract (README: "The request", "The answer"): a stanza in, the event JSON
//! out; an answer in, the reply stanzas out. Cases live in `golden/*.txt`; run with
//! `UPDATE_GOLDEN=1` to rewrite the expectations after a deliberate change, then review the diff.

use std::path::{Path, PathBuf};

use stanzahook::stanza;
use stanzahook::{payload, webhook};

const DOMAIN: &str = "bot.example.org";

/// One case: a name, its input sections, and the expected output.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) expected: String,
}

pub(crate) fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden").join(file)
}

/// File format: `=== name`, then input sections separated by `---`, and the expectation after
/// `>>>`. Lines starting with `#` before the first case are comments.
pub(crate) fn parse(text: &str) -> (String, Vec<Case>) {
    let mut header = String::new();
    let mut cases = Vec::new();
    for (i, chunk) in text.split("\n=== ").enumerate() {
        if i == 0 && !chunk.starts_with("=== ") {
            header = chunk.trim_end().to_owned();
            continue;
        }
        let chunk = chunk.strip_prefix("=== ").unwrap_or(chunk);
        let (name, rest) = chunk.split_once('\n').expect("case has a body");
        let (inputs, expected) = rest.split_once("\n>>>\n").unwrap_or_else(|| panic!("case {name} has no >>>"));
        cases.push(Case {
            name: name.trim().to_owned(),
            inputs: inputs.split("\n---\n").map(|s| s.trim().to_owned()).collect(),
            expected: expected.trim().to_owned(),
        });
    }
    (header, cases)
}

/// Runs every case of `file` through `run` and compares (or rewrites, with UPDATE_GOLDEN=1).
fn check(file: &str, run: impl Fn(&[String]) -> String) {
    let path = golden_path(file);
    let text = std::fs::read_to_string(&path).expect("golden file");
    let (header, cases) = parse(&text);
    assert!(!cases.is_empty(), "{file} has no cases");
    let mut failures = Vec::new();
    let mut updated = format!("{header}\n");
    for case in &cases {
        let actual = run(&case.inputs).trim().to_owned();
        if actual != case.expected {
            failures.push(format!("--- {}\nexpected:\n{}\nactual:\n{}", case.name, case.expected, actual));
        }
        updated.push_str(&format!("\n=== {}\n{}\n>>>\n{}\n", case.name, case.inputs.join("\n---\n"), actual));
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, updated).expect("rewrite golden file");
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases in {file} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Random ids (iq requests the webhook starts) are masked so outputs are stable.
fn mask_ids(s: String) -> String {
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"sh-") {
        out.push_str(&rest[..i]);
        out.push_str("\"sh-<random>");
        rest = &rest[i + 4 + 16..];
    }
    out.push_str(rest);
    out
}

/// The event JSON for `el`, parsed: the golden files show its keys sorted and pretty.
fn event_value(
    el: &tokio_xmpp::minidom::Element,
    occupancy: Option<&stanzahook::rooms::Occupancy>,
) -> serde_json::Value {
    serde_json::from_str(payload::event(el, occupancy).as_str()).expect("the event is JSON")
}

/// A case's stanza → its event JSON.
fn event_of(inputs: &[String]) -> String {
    let el = stanza::parse_received(&inputs[0]).expect("test stanza parses");
    serde_json::to_string_pretty(&event_value(&el, None)).expect("json")
}

/// A case's original stanza and answer → the reply stanzas, or the error the sender gets.
fn replies_of(inputs: &[String]) -> String {
    let original = stanza::parse_received(&inputs[0]).expect("test stanza parses");
    let answer: serde_json::Value = serde_json::from_str(&inputs[1]).expect("test answer is JSON");
    match payload::replies(&answer, &original, DOMAIN) {
        Ok(replies) => mask_ids(replies.iter().map(stanza::to_xml_string).collect::<Vec<_>>().join("\n")),
        Err(e) => format!("error: {}", e.to_stanza_error()),
    }
}

#[test]
fn stanza_to_event_json() {
    check("events.txt", event_of);
}

#[test]
fn room_stanza_to_event_json() {
    let (outbox, _sent) = stanzahook::xmpp::Outbox::detached(16);
    let rooms = stanzahook::rooms::Rooms::new(outbox, std::sync::Arc::new(stanzahook::store::Store::new(None)));
    let config = stanzahook::config::from_toml_str(
        "domain = \"bot.example.org\"\nserver = \"h:1\"\nsecret = \"s\"\npost_url = \"http://x/\"\n\
         [[room]]\njid = \"room@muc.example.org\"\nnick = \"Bot\"\n\
         [[room]]\njid = \"quiet@muc.example.org\"\nnick = \"Bot\"\nforward = \"mentions\"\n",
        &Default::default(),
    )
    .expect("config");
    rooms.sync(&config.rooms);
    rooms.connected();
    rooms.send_due(std::time::Duration::from_secs(300));
    for room in ["room", "quiet"] {
        let joined = format!(
            "<presence from='{room}@muc.example.org/Bot' to='bot.example.org'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>"
        );
        let joined = stanza::parse_received(&joined).expect("parses");
        assert_eq!(rooms.intercept(&joined), stanzahook::rooms::Intercept::Consumed);
    }
    check("rooms.txt", |inputs| {
        let el = stanza::parse_received(&inputs[0]).expect("test stanza parses");
        match rooms.intercept(&el) {
            stanzahook::rooms::Intercept::Skip(why) => format!("not forwarded: {why}"),
            stanzahook::rooms::Intercept::Consumed => "taken by the rooms".into(),
            stanzahook::rooms::Intercept::Room(occupancy) => {
                serde_json::to_string_pretty(&event_value(&el, Some(&occupancy))).expect("json")
            }
            stanzahook::rooms::Intercept::None => {
                format!(
                    "no room: forwarded as\n{}",
                    serde_json::to_string_pretty(&event_value(&el, None)).expect("json")
                )
            }
        }
    });
}

#[test]
fn stanza_to_event_json_vocabulary() {
    check("vocabulary.txt", event_of);
}

#[test]
fn answer_to_reply_stanzas_vocabulary() {
    check("vocabulary_answers.txt", replies_of);
}

#[test]
fn answer_to_reply_stanzas() {
    check("replies.txt", replies_of);
}

#[test]
fn http_status_to_stanza_error() {
    check("statuses.txt", |inputs| {
        inputs[0]
            .lines()
            .map(|status| {
                let code: u16 = status.trim().parse().expect("status");
                format!("{code}: {}", webhook::status_error(code))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}

#[test]
fn hundred_kilobyte_body_and_non_bmp_text_survive() {
    let text = format!("{}🎉𝄞", "ab<&>'\"".repeat(100 * 1024 / 7));
    let mut el = stanza::new_stanza(stanza::Kind::Message, "a@example.org/r", "echo@bot.example.org");
    el.append_child(tokio_xmpp::minidom::Element::builder("body", stanza::NS_COMPONENT).append(text.as_str()).build());
    let event = event_value(&el, None);
    assert_eq!(event["body"], text.as_str());
    let reparsed = stanza::parse_received(event["stanza"].as_str().expect("string")).expect("reparses");
    assert_eq!(reparsed, el, "the stanza string is faithful XML of the stanza");

    let replies = payload::replies(&serde_json::json!({ "body": text }), &el, DOMAIN).expect("reply");
    let body = replies[0].get_child("body", stanza::NS_COMPONENT).expect("body").text();
    assert_eq!(body, text);
}

#[test]
fn error_reply_never_answers_errors() {
    // The gate in the pipeline relies on this classification.
    for (xml, unanswerable) in [
        ("<message type='error'/>", true),
        ("<iq type='result' id='1'/>", true),
        ("<iq type='error' id='1'/>", true),
        ("<presence type='error'/>", true),
        ("<message type='result'/>", false),
        ("<message type='chat'/>", false),
        ("<iq type='get' id='1'/>", false),
    ] {
        let el = stanza::parse_received(xml).expect("parses");
        assert_eq!(stanza::is_unanswerable(&el), unanswerable, "{xml}");
    }
}

/// The published schemas (`schema/`, README: "The JSON contract") describe what stanzahook does:
/// every event the golden cases produce validates against the event schema, and every answer
/// that makes a reply against the answer schema.
#[test]
fn every_event_and_answer_matches_its_schema() {
    let schema = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is no valid JSON Schema: {e}"))
    };
    let (events, answers) = (schema("event.schema.json"), schema("answer.schema.json"));
    let mut checked = 0;
    let mut invalid = Vec::new();
    for file in ["events.txt", "vocabulary.txt"] {
        let (_, cases) = parse(&std::fs::read_to_string(golden_path(file)).expect("golden file"));
        for case in cases {
            let el = stanza::parse_received(&case.inputs[0]).expect("test stanza parses");
            let event = event_value(&el, None);
            invalid.extend(
                events.iter_errors(&event).map(|e| format!("{file} {}: {e} at {}", case.name, e.instance_path())),
            );
            checked += 1;
        }
    }
    for file in ["replies.txt", "vocabulary_answers.txt"] {
        let (_, cases) = parse(&std::fs::read_to_string(golden_path(file)).expect("golden file"));
        for case in cases {
            let original = stanza::parse_received(&case.inputs[0]).expect("test stanza parses");
            let answer: serde_json::Value = serde_json::from_str(&case.inputs[1]).expect("test answer is JSON");
            if payload::replies(&answer, &original, DOMAIN).is_ok() {
                invalid.extend(
                    answers.iter_errors(&answer).map(|e| format!("{file} {}: {e} at {}", case.name, e.instance_path())),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} documents checked");
    assert!(invalid.is_empty(), "{} do not match the schema:\n{}", invalid.len(), invalid.join("\n"));
}

/// The answer examples of the README's vocabulary table are answers that work: each matches the
/// answer schema and makes a reply.
#[test]
fn the_readmes_answer_examples_match_the_schema_and_make_replies() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let table = readme
        .split_once("In an answer (a message reply")
        .and_then(|(_, rest)| rest.split_once("A value of the wrong shape"))
        .map(|(table, _)| table)
        .expect("the README's answer table");
    let schema_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/answer.schema.json"))
            .expect("answer schema");
    let schema = jsonschema::validator_for(&serde_json::from_str(&schema_text).expect("JSON")).expect("schema");
    let original = stanza::parse_received(
        "<message from='alice@example.org/phone' id='m-7' to='echo@bot.example.org' type='chat'><body>hi</body></message>",
    )
    .expect("parses");
    let examples: Vec<&str> = table.split('`').filter(|span| span.starts_with("{\"") && span.ends_with('}')).collect();
    assert!(examples.len() >= 8, "{examples:?}");
    for example in examples {
        let answer: serde_json::Value = serde_json::from_str(example).unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(schema.is_valid(&answer), "{example} does not match the answer schema");
        if let Err(e) = payload::replies(&answer, &original, DOMAIN) {
            panic!("{example} makes no reply: {e}");
        }
    }
}
