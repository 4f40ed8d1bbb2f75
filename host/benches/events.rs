//! What building an event costs (issue: the vocabulary): `payload::event` for a plain chat
//! message (the suite's load) and for a message carrying a reply, an attachment and reactions,
//! and, for each, the part that reading the vocabulary's keys takes (`event_keys` alone),
//! so the cost before the vocabulary is the difference, measured in the same run. Also the whole
//! answer → reply path for `{"body"}` and for an answer with vocabulary keys.
//!
//! Run with `cargo bench -p stanzahook --bench events` (release build). Prints ns per call, the
//! median of 9 rounds.

use std::hint::black_box;
use std::time::Instant;

use stanzahook::{payload, stanza, vocabulary};

const ROUNDS: usize = 9;
const CALLS: usize = 20_000;

fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                f();
            }
            started.elapsed().as_nanos() as f64 / CALLS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let plain = stanza::parse_received(
        "<message from='alice@example.org/phone' id='a1' to='echo@bot.example.org' type='chat' xml:lang='en'>\
         <body>Hello from the benchmark, a message of about the usual size.</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='0f3c2a9e-6d1b-4b8e-9a53-2b7d1c4e5f60'/></message>",
    )
    .expect("parses");
    let rich = stanza::parse_received(
        "<message from='alice@example.org/phone' id='a2' to='echo@bot.example.org' type='chat' xml:lang='en'>\
         <body>&gt; Anna wrote:\n&gt; a cat?\nhere it is</body>\
         <reply xmlns='urn:xmpp:reply:0' id='m-41' to='anna@example.org/laptop'/>\
         <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='23'/></fallback>\
         <x xmlns='jabber:x:oob'><url>https://files.example.org/cat.jpg</url></x>\
         <reactions xmlns='urn:xmpp:reactions:0' id='m-40'><reaction>👍</reaction></reactions>\
         <markable xmlns='urn:xmpp:chat-markers:0'/><request xmlns='urn:xmpp:receipts'/></message>",
    )
    .expect("parses");
    println!("event building, ns per call (median of {ROUNDS} rounds of {CALLS}):");
    for (name, el) in [("plain chat message", &plain), ("reply + attachment + reactions", &rich)] {
        let whole = median_ns(|| {
            black_box(payload::event(black_box(el), None));
        });
        let keys = median_ns(|| {
            black_box(vocabulary::event_keys(black_box(el), Some("")));
        });
        println!(
            "  {name:32} event + JSON text {whole:7.0} ns, of which the vocabulary's keys {keys:5.0} ns ({:.1} %); \
             without them {:7.0} ns",
            keys / whole * 100.0,
            whole - keys
        );
    }
    let answers = [
        ("answer {\"body\"}", serde_json::json!({"body": "hello"})),
        (
            "answer with reply, oob, reactions",
            serde_json::json!({"body": "here", "reply": true, "oob": "https://files.example.org/cat.jpg", "reactions": ["👍"]}),
        ),
    ];
    for (name, answer) in answers {
        let ns = median_ns(|| {
            black_box(payload::replies(black_box(&answer), &plain, "bot.example.org").ok());
        });
        println!("  {name:32} answer → replies  {ns:7.0} ns");
    }
    // What an answer keeping the original's addresses no longer pays: parsing both again.
    let (to, from) = (plain.attr("from").unwrap_or(""), plain.attr("to").unwrap_or(""));
    let ns = median_ns(|| {
        black_box(tokio_xmpp::jid::Jid::new(black_box(to)).ok());
        black_box(tokio_xmpp::jid::Jid::new(black_box(from)).ok());
    });
    println!("  {:32} the two address checks an answer keeping the original's addresses skips {ns:5.0} ns", "");
    delivery_log(&plain);
}

/// What the delivery log adds to one delivery (README: "Deliveries"): gathering it along the way
/// and keeping it in a full log of 1,000, which drops its oldest for each new one; with the log
/// off, with it on (the default, bodies off), and keeping bodies.
fn delivery_log(el: &tokio_xmpp::minidom::Element) {
    use stanzahook::config::DeliverySettings;
    use stanzahook::deliveries::Deliveries;
    use stanzahook::webhook::{Outcome, Posted};
    let posted = Posted {
        outcome: Outcome::Answer(serde_json::json!({"body": "hello"})),
        content_type: None,
        took: std::time::Duration::from_micros(300),
        attempts: 1,
    };
    let reply = stanza::parse_received(
        "<message to='alice@example.org/phone' from='echo@bot.example.org' type='chat'><body>hello</body></message>",
    )
    .expect("parses");
    println!("delivery log, ns per delivery (median of {ROUNDS} rounds of {CALLS}):");
    for (name, log, keep_bodies) in
        [("off", 0, false), ("on, bodies off", 1000, false), ("on, bodies kept", 1000, true)]
    {
        let settings = DeliverySettings { log, log_memory: 8 << 20, keep_bodies, keep_failed_for: None };
        let (deliveries, _redeliveries) =
            Deliveries::new(settings, std::sync::Arc::new(stanzahook::store::Store::new(None)));
        let ns = median_ns(|| {
            let mut record = deliveries.begin(keep_bodies, None);
            if record.keeps_bodies() {
                record.posting("{\"body\":\"Hello\"}".to_owned());
            }
            record.posted(black_box(&posted));
            if let Some(delivery) = record.finish(el, None, std::slice::from_ref(&reply)) {
                deliveries.record(delivery);
            }
        });
        println!("  {name:32} {ns:7.0} ns");
    }
}
