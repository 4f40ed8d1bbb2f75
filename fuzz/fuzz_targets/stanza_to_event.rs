//! A stanza as the server sends it → the event JSON posted to the webhook (README: "The request").
//! Properties: nothing panics; the event's `stanza` is the length `xml_len` measured; it is
//! well-formed XML that parses back to the same stanza; the event is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stanzahook::{payload, stanza};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(el) = stanza::parse_received(text) else { return };
    let event: serde_json::Value = match serde_json::from_str(payload::event(&el, None).as_str()) {
        Ok(event) => event,
        Err(e) => panic!("the event is not JSON: {e}"),
    };
    let Some(xml) = event["stanza"].as_str() else { panic!("`stanza` is not a string: {event}") };
    assert_eq!(stanza::xml_len(&el), xml.len(), "xml_len disagrees with the writer");
    let again = match stanza::parse_received(xml) {
        Ok(again) => again,
        Err(e) => panic!("the event's stanza does not parse back: {e}\n{xml}"),
    };
    assert_eq!(stanza::to_xml_string(&again), xml, "the stanza changed on the way through");
});
