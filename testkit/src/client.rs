//! A real XMPP client (tokio-xmpp over plaintext TCP to the test Prosody) that sends stanzas
//! written as XML and hands back what it receives as XML elements.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use xmpp_client::connect::DnsConfig;
use xmpp_client::minidom::Element;
use xmpp_client::xmlstream::Timeouts;
use xmpp_client::{Client, Event, Stanza};

const NS_CLIENT: &str = "jabber:client";

#[derive(Debug)]
pub struct XmppClient {
    client: Client,
    /// The full JID the server bound.
    pub jid: String,
}

impl XmppClient {
    /// Logs in as `user@localhost` and announces availability.
    pub async fn login(c2s_port: u16, user: &str, password: &str) -> anyhow::Result<XmppClient> {
        let bare = format!("{user}@{}", crate::CLIENT_DOMAIN);
        let jid = xmpp_client::jid::BareJid::new(&bare)?;
        let mut client =
            Client::new_plaintext(jid, password, DnsConfig::addr(&format!("127.0.0.1:{c2s_port}")), Timeouts::tight());
        let bound = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = client.next().await {
                match event {
                    Event::Online { bound_jid, .. } => return Ok(bound_jid.to_string()),
                    Event::Disconnected(e) => return Err(anyhow!("login failed: {e}")),
                    Event::Stanza(_) => {}
                }
            }
            Err(anyhow!("client stream ended during login"))
        })
        .await
        .context("login timed out")??;
        let mut me = XmppClient { client, jid: bound };
        me.send("<presence/>").await?;
        // The server reflects the initial presence back; wait for it so it is not mistaken later.
        let own = me.jid.clone();
        me.expect(Duration::from_secs(10), "own presence", |el| {
            el.name() == "presence" && el.attr("from") == Some(&own)
        })
        .await?;
        Ok(me)
    }

    /// Sends a stanza written as XML (in the client namespace unless it says otherwise).
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        let el = parse_client_xml(xml)?;
        let stanza = Stanza::try_from(el).map_err(|e| anyhow!("not a stanza the client can send: {e:?}"))?;
        self.client.send_stanza(stanza).await?;
        Ok(())
    }

    /// The next stanza received within `within`, or `None`; roster pushes and the server's
    /// reflections of our own presence are skipped.
    pub async fn recv(&mut self, within: Duration) -> anyhow::Result<Option<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) if self.is_noise(&el) => continue,
                other => return Ok(other),
            }
        }
    }

    fn is_noise(&self, el: &Element) -> bool {
        is_roster_push(el) || (el.name() == "presence" && el.attr("from") == Some(self.jid.as_str()))
    }

    /// The next stanza received within `within`, whatever it is.
    pub async fn recv_any(&mut self, within: Duration) -> anyhow::Result<Option<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.client.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("client stream ended"),
                Ok(Some(event)) => event,
            };
            match event {
                Event::Stanza(stanza) => return Ok(Some(Element::from(stanza))),
                Event::Disconnected(e) => bail!("client disconnected: {e}"),
                Event::Online { .. } => {}
            }
        }
    }

    /// The next stanza matching `pred` within `within` (roster pushes included); the others are
    /// returned too, less roster pushes and presence reflections, so a test can assert that
    /// nothing unexpected arrived.
    pub async fn expect(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<(Element, Vec<Element>)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_any(left).await? {
                Some(el) if pred(&el) => return Ok((el, others)),
                Some(el) if self.is_noise(&el) => {}
                Some(el) => others.push(el),
                None => bail!(
                    "no {what} within {} ms; received instead: {:?}",
                    within.as_millis(),
                    others.iter().map(String::from).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything received within `within`.
    pub async fn drain(&mut self, within: Duration) -> anyhow::Result<Vec<Element>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Some(el) => all.push(el),
                None => return Ok(all),
            }
        }
    }
}

fn parse_client_xml(xml: &str) -> anyhow::Result<Element> {
    let wrapped = format!("<wrapper xmlns='{NS_CLIENT}'>{xml}</wrapper>");
    let wrapper: Element = wrapped.parse().with_context(|| format!("bad test XML: {xml}"))?;
    wrapper.children().next().cloned().ok_or_else(|| anyhow!("no element in: {xml}"))
}

/// Prosody pushes roster changes to the client after a subscription.
pub fn is_roster_push(el: &Element) -> bool {
    el.name() == "iq" && el.children().any(|c| c.ns() == "jabber:iq:roster")
}

/// The text of the `<body/>` of a received message.
pub fn body(el: &Element) -> Option<String> {
    el.get_child("body", NS_CLIENT).map(Element::text)
}

/// The defined condition and type of a received stanza error, e.g. ("item-not-found", "cancel").
pub fn error_of(el: &Element) -> Option<(String, String)> {
    let error = el.get_child("error", NS_CLIENT)?;
    let condition = error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")?
        .name()
        .to_owned();
    Some((condition, error.attr("type").unwrap_or("").to_owned()))
}

/// The text of a received stanza error, if any.
pub fn error_text(el: &Element) -> Option<String> {
    el.get_child("error", NS_CLIENT)?.get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas").map(Element::text)
}
