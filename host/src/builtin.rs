//! Answers that need no webhook: presence and iq (README: "Built-in answers") for the kinds that are not
//! forwarded. Pure functions from a received stanza to the stanzas to send.

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::minidom::rxml::xml_ncname;

use crate::config::Identity;
use crate::payload::empty_result;
use crate::stanza::{
    self, ErrorType, Kind, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION, StanzaError, new_stanza, set_attr,
};

/// The features disco#info announces: exactly what this module answers.
const FEATURES: [&str; 4] = [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION];

/// The domain looks always online and accepts every subscription (README: "Built-in answers").
pub fn presence(el: &Element) -> Vec<Element> {
    let (Some(sender), Some(to)) = (el.attr("from"), el.attr("to")) else {
        return Vec::new();
    };
    let Ok(to) = Jid::new(to) else {
        return Vec::new();
    };
    let me = format!("{}/default", to.to_bare());
    let available = || new_stanza(Kind::Presence, &me, sender);
    match el.attr("type") {
        Some("probe") => vec![available()],
        Some("subscribe") => {
            let mut subscribed = available();
            set_attr(&mut subscribed, "type", "subscribed");
            vec![subscribed, available()]
        }
        Some("unsubscribe") => {
            let mut gone = available();
            set_attr(&mut gone, "type", "unavailable");
            vec![gone]
        }
        _ => Vec::new(),
    }
}

/// Service discovery, ping and version for the domain; everything else is refused (README: "Built-in answers").
pub fn iq(el: &Element, identity: &Identity) -> Vec<Element> {
    if !stanza::is_iq_request(el) {
        return Vec::new();
    }
    let mut payloads = el.children();
    let (Some(query), None) = (payloads.next(), payloads.next()) else {
        return vec![service_unavailable(el)];
    };
    let get = el.attr("type") == Some("get");
    let answer = match query.ns().as_str() {
        NS_DISCO_INFO if get && query.name() == "query" => Some(disco_info(identity, query.attr("node"))),
        NS_DISCO_ITEMS if get && query.name() == "query" => Some(Element::bare("query", NS_DISCO_ITEMS)),
        NS_PING if get && query.name() == "ping" => None,
        NS_VERSION if get && query.name() == "query" => Some(version()),
        _ => return vec![service_unavailable(el)],
    };
    let mut result = empty_result(el);
    if let Some(answer) = answer {
        result.append_child(answer);
    }
    vec![result]
}

fn disco_info(identity: &Identity, node: Option<&str>) -> Element {
    let mut query = Element::builder("query", NS_DISCO_INFO).build();
    if let Some(node) = node {
        set_attr(&mut query, "node", node);
    }
    query.append_child(
        Element::builder("identity", NS_DISCO_INFO)
            .attr(xml_ncname!("category").to_owned(), identity.category.as_str())
            .attr(xml_ncname!("type").to_owned(), identity.kind.as_str())
            .attr(xml_ncname!("name").to_owned(), identity.name.as_str())
            .build(),
    );
    for feature in FEATURES {
        query.append_child(
            Element::builder("feature", NS_DISCO_INFO).attr(xml_ncname!("var").to_owned(), feature).build(),
        );
    }
    query
}

fn version() -> Element {
    Element::builder("query", NS_VERSION)
        .append(Element::builder("name", NS_VERSION).append("stanzahook").build())
        .append(Element::builder("version", NS_VERSION).append(env!("CARGO_PKG_VERSION")).build())
        .build()
}

fn service_unavailable(el: &Element) -> Element {
    stanza::error_reply(el, &StanzaError::new(ErrorType::Cancel, "service-unavailable"))
}
