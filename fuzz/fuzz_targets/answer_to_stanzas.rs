//! A webhook's answer JSON → the reply stanzas sent to the server (README: "The answer").
//! The first byte picks the stanza answered (message, iq get, presence); the rest is the answer.
//! Properties: nothing panics; every reply comes from the component's domain (README: "The answer") and goes
//! to a valid address; it is well-formed XML of the length `xml_len` measured; an iq request
//! gets exactly one iq answer with its id (README: "The answer").
#![no_main]

use libfuzzer_sys::fuzz_target;
use stanzahook::{payload, stanza};
use tokio_xmpp::jid::Jid;

const DOMAIN: &str = "bot.example.org";
const ORIGINALS: [&str; 3] = [
    "<message from='alice@example.org/phone' to='echo@bot.example.org' type='chat' id='m1'><body>hi</body></message>",
    "<iq from='alice@example.org/phone' to='bot.example.org' type='get' id='q1'><query xmlns='urn:example'/></iq>",
    "<presence from='alice@example.org/phone' to='echo@bot.example.org' type='subscribe' id='p1'/>",
];

fuzz_target!(|data: &[u8]| {
    let Some((which, json)) = data.split_first() else { return };
    let Ok(original) = stanza::parse_received(ORIGINALS[usize::from(*which) % ORIGINALS.len()]) else {
        panic!("a fixed original does not parse")
    };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let replies = match payload::replies(&answer, &original, DOMAIN) {
        Ok(replies) => replies,
        Err(e) => {
            let _ = stanza::error_reply(&original, &e.to_stanza_error());
            return;
        }
    };
    for reply in &replies {
        let from = reply.attr("from").unwrap_or("");
        match Jid::new(from) {
            Ok(jid) => assert_eq!(jid.domain().as_str(), DOMAIN, "a reply from another domain: {from}"),
            Err(e) => panic!("a reply from an invalid address {from:?}: {e}"),
        }
        let to = reply.attr("to").unwrap_or("");
        assert!(Jid::new(to).is_ok(), "a reply to an invalid address {to:?}");
        let xml = stanza::to_xml_string(reply);
        assert_eq!(stanza::xml_len(reply), xml.len(), "xml_len disagrees with the writer");
        if let Err(e) = stanza::parse_received(&xml) {
            panic!("a reply is not well-formed: {e}\n{xml}");
        }
    }
    if stanza::is_iq_request(&original) {
        let answers = replies
            .iter()
            .filter(|r| {
                r.name() == "iq"
                    && matches!(r.attr("type"), Some("result" | "error"))
                    && r.attr("id") == original.attr("id")
            })
            .count();
        assert_eq!(answers, 1, "an iq request must get exactly one answer: {replies:?}");
    }
});
