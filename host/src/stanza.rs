//! Stanza vocabulary: kinds, namespaces, stanza errors (RFC 6120 §8.3) and the XML text forms
//! that cross the webhook boundary (written "as received", parsed from a webhook's `stanza`).

use std::fmt;

use tokio_xmpp::minidom::rxml::{Namespace, NcName, xml_ncname};
use tokio_xmpp::minidom::{Element, Node};

/// The component stream's namespace (XEP-0114): every stanza stanzahook sends is in it.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// The client namespace that webhook authors copy from client examples; rewritten on the way out.
pub const NS_CLIENT: &str = "jabber:client";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_VERSION: &str = "jabber:iq:version";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// The three stanza kinds of RFC 6120; the JSON `kind` is the element name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Message, Kind::Presence, Kind::Iq];

    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }

    /// The kind of a stanza element, or `None` for anything else on the stream.
    pub fn of(el: &Element) -> Option<Kind> {
        Kind::from_name(el.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` attribute of a stanza `<error/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error to send back to whoever sent the original stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub error_type: ErrorType,
    /// A defined condition of RFC 6120 §8.3.3, e.g. `item-not-found`.
    pub condition: &'static str,
    pub text: Option<String>,
}

impl StanzaError {
    pub fn new(error_type: ErrorType, condition: &'static str) -> Self {
        StanzaError { error_type, condition, text: None }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
}

impl fmt::Display for StanzaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.condition, self.error_type.as_str())?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// Sets (or replaces) an attribute without namespace.
pub fn set_attr(el: &mut Element, name: &'static str, value: &str) {
    let Ok(name) = NcName::try_from(name) else {
        // Only called with literal attribute names, which are all valid NCNames.
        return;
    };
    if let Some(old) = el.attrs_mut().get_mut(&Namespace::NONE, &name) {
        *old = value.to_owned();
    } else {
        el.attrs_mut().insert(Namespace::NONE, name, value.to_owned());
    }
}

/// Removes an attribute without namespace.
pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&Namespace::NONE, name);
}

/// A fresh stanza of `kind` in the component namespace, with optional addressing.
pub fn new_stanza(kind: Kind, from: &str, to: &str) -> Element {
    Element::builder(kind.as_str(), NS_COMPONENT)
        .attr(xml_ncname!("from").to_owned(), from)
        .attr(xml_ncname!("to").to_owned(), to)
        .build()
}

/// `type` of a stanza, if any.
pub fn stanza_type(el: &Element) -> Option<&str> {
    el.attr("type")
}

/// True for stanzas that must never be answered: errors (RFC 6120 §8.3.1) and iq results
/// (§8.2.3), whatever produced the answer. Answering them is how error loops start.
pub fn is_unanswerable(el: &Element) -> bool {
    match stanza_type(el) {
        Some("error") => true,
        Some("result") => el.name() == "iq",
        _ => false,
    }
}

/// True for an iq that requires exactly one iq answer.
pub fn is_iq_request(el: &Element) -> bool {
    el.name() == "iq" && matches!(stanza_type(el), Some("get" | "set"))
}

/// The bare part of an XMPP address: everything before the first `/` (a localpart or domain
/// cannot hold one; a resource can).
pub fn bare(addr: &str) -> &str {
    addr.split_once('/').map_or(addr, |(bare, _)| bare)
}

/// The domain part of an XMPP address, as written. A localpart cannot hold `@` or `/`, so the
/// domain is what lies between the first `@` and the first `/` after it.
pub fn domain_part(addr: &str) -> &str {
    let bare = bare(addr);
    bare.split_once('@').map_or(bare, |(_, host)| host)
}

/// True when the XMPP address `addr` (bare or full) is at exactly `domain`, ignoring ASCII case
/// as domain names do.
pub fn is_at_domain(addr: &str, domain: &str) -> bool {
    domain_part(addr).trim_end_matches('.').eq_ignore_ascii_case(domain.trim_end_matches('.'))
}

/// The error reply to `original`: addresses swapped, same id, `type="error"` (RFC 6120 §8.3.1).
pub fn error_reply(original: &Element, error: &StanzaError) -> Element {
    let mut reply = Element::builder(original.name(), NS_COMPONENT).build();
    if let Some(to) = original.attr("from") {
        set_attr(&mut reply, "to", to);
    }
    if let Some(from) = original.attr("to") {
        set_attr(&mut reply, "from", from);
    }
    if let Some(id) = original.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    set_attr(&mut reply, "type", "error");
    reply.append_child(error_element(error));
    reply
}

/// The `<error/>` child of an error stanza.
pub fn error_element(error: &StanzaError) -> Element {
    let mut el = Element::builder("error", NS_COMPONENT)
        .attr(xml_ncname!("type").to_owned(), error.error_type.as_str())
        .append(Element::bare(error.condition, NS_STANZAS))
        .build();
    if let Some(text) = &error.text {
        el.append_child(Element::builder("text", NS_STANZAS).append(text.as_str()).build());
    }
    el
}

/// The stanza as an XML string the way the reference (Prosody's serializer) writes it: without
/// the stream's namespace declaration; child elements declare their own `xmlns` where it
/// differs from their parent's. Attributes come in sorted order; entities as Prosody escapes them.
pub fn to_xml_string(el: &Element) -> String {
    let mut out = String::with_capacity(256);
    write_element(el, NS_COMPONENT, &mut out);
    out
}

/// The length in bytes of `to_xml_string(el)`, measured without building the string (every
/// reply is measured against the size cap before it is sent).
pub fn xml_len(el: &Element) -> usize {
    let mut count = Count(0);
    write_element(el, NS_COMPONENT, &mut count);
    count.0
}

/// Where the writer puts its text: a `String`, or a `Count` that only measures.
trait Sink {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl Sink for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

struct Count(usize);

impl Sink for Count {
    fn push_str(&mut self, s: &str) {
        self.0 += s.len();
    }

    fn push(&mut self, c: char) {
        self.0 += c.len_utf8();
    }
}

fn write_element(el: &Element, parent_ns: &str, out: &mut impl Sink) {
    let ns = el.ns();
    out.push('<');
    out.push_str(el.name());
    if ns != parent_ns {
        out.push_str(" xmlns=\"");
        escape_attr_into(&ns, out);
        out.push('"');
    }
    let mut extra_prefixes = 0;
    for ((attr_ns, name), value) in el.attrs().iter() {
        out.push(' ');
        let attr_ns: &str = attr_ns.as_ref();
        if attr_ns.is_empty() {
            out.push_str(name.as_str());
        } else if attr_ns == NS_XML {
            out.push_str("xml:");
            out.push_str(name.as_str());
        } else {
            // Foreign-namespace attributes are rare in stanzas; declare a local prefix for each.
            extra_prefixes += 1;
            let prefix = format!("ns{extra_prefixes}");
            out.push_str(&format!("xmlns:{prefix}=\""));
            escape_attr_into(attr_ns, out);
            out.push_str(&format!("\" {prefix}:{}", name.as_str()));
        }
        out.push_str("=\"");
        escape_attr_into(value, out);
        out.push('"');
    }
    if el.nodes().next().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for node in el.nodes() {
        match node {
            Node::Element(child) => write_element(child, &ns, out),
            Node::Text(text) => escape_into(text, out),
        }
    }
    out.push_str("</");
    out.push_str(el.name());
    out.push('>');
}

/// Escapes text as the reference does, plus carriage returns: a parser turns a raw CR into a
/// newline, so a CR the stanza carried (as `&#13;`) would not reach the webhook (found by fuzzing).
fn escape_into(text: &str, out: &mut impl Sink) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Escapes an attribute value: as text, plus tabs and newlines, which a parser would turn into
/// spaces in an attribute (XML 1.0 §3.3.3). Ordinary stanzas come out as the reference writes them.
fn escape_attr_into(value: &str, out: &mut impl Sink) {
    for c in value.chars() {
        match c {
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            c => escape_into(c.encode_utf8(&mut [0; 4]), out),
        }
    }
}

/// Why a webhook's `stanza` string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseStanzaError {
    #[error("`stanza` is not well-formed XML: {0}")]
    Xml(String),
    #[error("`stanza` must hold exactly one element, found {0}")]
    NotOneElement(usize),
    #[error("`stanza` must be a message, presence or iq element, not <{0}/>")]
    NotAStanza(String),
    #[error("`stanza` has namespace `{0}`; use none or jabber:client")]
    ForeignNamespace(String),
    #[error("`stanza` is {0}")]
    TooDeep(#[from] crate::xml_depth::TooDeep),
}

/// Parses a webhook's `stanza` string into one stanza in the component namespace (README: "The answer").
///
/// The text is parsed inside a wrapper that declares the component namespace as the default, so
/// an element without `xmlns` lands in it; `jabber:client` is rewritten to it throughout, since
/// Prosody bounces a component's stanza that declares `jabber:client`.
pub fn parse_stanza_override(xml: &str) -> Result<Element, ParseStanzaError> {
    // minidom recurses per level: refuse deep nesting before it builds anything.
    crate::xml_depth::check(xml, crate::xml_depth::MAX_STANZA_DEPTH)?;
    // The parser stops at the end of the wrapper, so markup that closes it early must not get
    // in. Only its closing tag can do that (`<` cannot appear unescaped in attribute values or
    // text), so the name itself may appear anywhere else: a body that mentions it is fine.
    if xml.contains(WRAPPER_END) {
        return Err(ParseStanzaError::Xml(format!("`{WRAPPER_END}` is reserved")));
    }
    let wrapped = format!("<stanzahook-wrapper xmlns='{NS_COMPONENT}'>{xml}</stanzahook-wrapper>");
    let wrapper: Element =
        wrapped.parse().map_err(|e: tokio_xmpp::minidom::Error| ParseStanzaError::Xml(e.to_string()))?;
    if wrapper.texts().any(|t| !t.trim().is_empty()) {
        return Err(ParseStanzaError::Xml("text outside the element".into()));
    }
    let count = wrapper.children().count();
    let Some(el) = wrapper.children().next().filter(|_| count == 1) else {
        return Err(ParseStanzaError::NotOneElement(count));
    };
    if Kind::of(el).is_none() {
        return Err(ParseStanzaError::NotAStanza(el.name().to_owned()));
    }
    let ns = el.ns();
    if ns != NS_COMPONENT && ns != NS_CLIENT {
        return Err(ParseStanzaError::ForeignNamespace(ns));
    }
    Ok(rewrite_client_ns(el))
}

const WRAPPER_END: &str = "</stanzahook-wrapper";

/// A copy of `el` with every `jabber:client` element moved into the component namespace.
fn rewrite_client_ns(el: &Element) -> Element {
    let ns = if el.ns() == NS_CLIENT { NS_COMPONENT.to_owned() } else { el.ns() };
    let mut out = Element::builder(el.name(), ns).build();
    for ((attr_ns, name), value) in el.attrs().iter() {
        out.attrs_mut().insert(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in el.nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(rewrite_client_ns(child));
            }
            Node::Text(text) => out.append_text_node(text.clone()),
        }
    }
    out
}

/// Parses stream XML in tests and golden files: `xml` as it would arrive on the component stream.
pub fn parse_received(xml: &str) -> Result<Element, ParseStanzaError> {
    parse_stanza_override(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_without_stream_namespace_and_keeps_child_namespaces() {
        let el = parse_received(
            "<message to='a@b' from='c@d/e' type='chat' id='1'><body>hi &amp; &lt;bye&gt;</body><x xmlns='urn:x'><y/></x></message>",
        )
        .expect("parses");
        assert_eq!(
            to_xml_string(&el),
            r#"<message from="c@d/e" id="1" to="a@b" type="chat"><body>hi &amp; &lt;bye&gt;</body><x xmlns="urn:x"><y/></x></message>"#
        );
    }

    #[test]
    fn xml_len_measures_what_to_xml_string_writes() {
        let el = parse_received(
            "<message to='a@b' xml:lang='de' x='&quot;&apos;'><body>1 &lt; 2 &amp; ☃ 😀</body><y xmlns='urn:y'/></message>",
        )
        .expect("parses");
        assert_eq!(xml_len(&el), to_xml_string(&el).len());
    }

    #[test]
    fn an_address_is_at_a_domain_by_its_domain_part_alone() {
        for at in [
            "bot.example",
            "BOT.Example",
            "echo@bot.example",
            "echo@bot.example/r",
            "bot.example/a@b/c",
            "bot.example.",
        ] {
            assert!(is_at_domain(at, "bot.example"), "{at}");
        }
        for elsewhere in [
            "",
            "example",
            "sub.bot.example",
            "bot.example@other.example",
            "a@other.example/bot.example",
            "a@bot.example.org",
        ] {
            assert!(!is_at_domain(elsewhere, "bot.example"), "{elsewhere}");
        }
    }

    #[test]
    fn keeps_xml_lang() {
        let el = parse_received("<message xml:lang='de' to='a@b'/>").expect("parses");
        assert_eq!(to_xml_string(&el), r#"<message to="a@b" xml:lang="de"/>"#);
    }

    #[test]
    fn client_namespace_is_rewritten_throughout() {
        let el = parse_stanza_override("<message xmlns='jabber:client'><body>x</body></message>").expect("parses");
        assert_eq!(el.ns(), NS_COMPONENT);
        assert!(el.children().all(|c| c.ns() == NS_COMPONENT));
    }

    #[test]
    fn whitespace_characters_survive_the_written_stanza() {
        // Found by fuzzing: a newline in an attribute or a CR in text, written raw, would reach
        // the webhook as a space or a newline.
        let el = parse_received("<message id='a&#10;b&#9;c'><body>x&#13;y\nz</body><x xmlns='urn:a&#10;b'/></message>")
            .expect("parses");
        let xml = to_xml_string(&el);
        assert_eq!(xml, "<message id=\"a&#10;b&#9;c\"><body>x&#13;y\nz</body><x xmlns=\"urn:a&#10;b\"/></message>");
        let again = parse_received(&xml).expect("parses again");
        assert_eq!(again.attr("id"), Some("a\nb\tc"));
        assert_eq!(again.get_child("body", NS_COMPONENT).map(Element::text).as_deref(), Some("x\ry\nz"));
        assert_eq!(xml_len(&el), xml.len());
    }

    #[test]
    fn override_rejects_what_is_not_one_stanza() {
        assert_eq!(parse_stanza_override(""), Err(ParseStanzaError::NotOneElement(0)));
        assert_eq!(parse_stanza_override("<message/><message/>"), Err(ParseStanzaError::NotOneElement(2)));
        assert_eq!(parse_stanza_override("<foo/>"), Err(ParseStanzaError::NotAStanza("foo".into())));
        assert!(matches!(parse_stanza_override("<message>"), Err(ParseStanzaError::Xml(_))));
        assert!(matches!(parse_stanza_override("x<message/>"), Err(ParseStanzaError::Xml(_))));
        assert!(matches!(
            parse_stanza_override("</stanzahook-wrapper><message/><stanzahook-wrapper>"),
            Err(ParseStanzaError::Xml(_))
        ));
        // Found by fuzzing: the wrapper's name in an attribute or in text is just text.
        let named =
            parse_stanza_override("<message to='b@x/stanzahook-wrapper'><body>stanzahook-wrapper</body></message>")
                .expect("the name alone is no markup");
        assert_eq!(named.attr("to"), Some("b@x/stanzahook-wrapper"));
        assert_eq!(
            parse_stanza_override("<message xmlns='urn:other'/>"),
            Err(ParseStanzaError::ForeignNamespace("urn:other".into()))
        );
    }

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let orig = parse_received("<iq to='bot.example' from='u@example/r' id='q1' type='get'><x xmlns='urn:x'/></iq>")
            .expect("parses");
        let reply = error_reply(&orig, &StanzaError::new(ErrorType::Cancel, "service-unavailable").with_text("no"));
        assert_eq!(
            to_xml_string(&reply),
            r#"<iq from="bot.example" id="q1" to="u@example/r" type="error"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">no</text></error></iq>"#
        );
    }
}
