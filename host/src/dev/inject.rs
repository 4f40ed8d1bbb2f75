//! Test messages without an XMPP client: a line typed at `stanzahook dev`'s prompt, or a
//! `POST /inject` to the operator API (in `stanzahook dev` only), becomes a chat message from
//! the test address to the bot, handled as if the server had sent it. Its reply goes out through
//! the server to the test address, like any other (a client logged in as that address sees it);
//! the `--dev` log line shows its way either way.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_xmpp::minidom::Element;

use crate::stanza::{NS_COMPONENT, set_attr};

/// Hands test messages to the pipeline.
#[derive(Debug)]
pub struct Injector {
    to_pipeline: mpsc::Sender<Element>,
    /// The sender of a test message unless the call names another.
    pub from: String,
    /// Its recipient unless the call names another: an address at the component's domain.
    pub to: String,
    domain: String,
    sent: AtomicU64,
}

impl Injector {
    /// An injector for the component's `domain` and the stanzas it makes, for the pipeline to
    /// merge with the server's; refused when the default addresses are not ones `addresses` takes.
    pub fn new(from: String, to: String, domain: &str) -> anyhow::Result<(Injector, mpsc::Receiver<Element>)> {
        let (to_pipeline, stanzas) = mpsc::channel(64);
        let injector = Injector { to_pipeline, from, to, domain: domain.to_owned(), sent: AtomicU64::new(0) };
        injector.addresses(None, None).map_err(|e| anyhow::anyhow!("{e} (--from, --to)"))?;
        Ok((injector, stanzas))
    }

    /// The sender and recipient of a test message: the defaults unless given. The sender must be
    /// an address outside the component's domain (what comes from it is never handled), the
    /// recipient one at it (the server would route nothing else here).
    pub fn addresses<'a>(&'a self, from: Option<&'a str>, to: Option<&'a str>) -> Result<(&'a str, &'a str), String> {
        let (from, to) = (from.unwrap_or(&self.from), to.unwrap_or(&self.to));
        let domain = |address: &str, role: &str| match tokio_xmpp::jid::Jid::new(address) {
            Ok(jid) => Ok(jid.domain().as_str().to_owned()),
            Err(e) => Err(format!("{role} {address:?} is not an XMPP address: {e}")),
        };
        if domain(from, "the sender")? == self.domain {
            return Err(format!(
                "the sender {from:?} is at the component's own domain, whose stanzas are never handled"
            ));
        }
        if domain(to, "the recipient")? != self.domain {
            return Err(format!("the recipient {to:?} is not at the component's domain {}", self.domain));
        }
        Ok((from, to))
    }

    /// Sends `body` as a chat message (from and to the defaults unless given, checked by
    /// `addresses`); returns its id.
    pub async fn message(&self, body: &str, from: Option<&str>, to: Option<&str>) -> anyhow::Result<String> {
        let (from, to) = self.addresses(from, to).map_err(anyhow::Error::msg)?;
        let id = format!("dev-{}", self.sent.fetch_add(1, Ordering::Relaxed) + 1);
        let mut message = Element::builder("message", NS_COMPONENT)
            .append(Element::builder("body", NS_COMPONENT).append(body))
            .build();
        set_attr(&mut message, "from", from);
        set_attr(&mut message, "to", to);
        set_attr(&mut message, "type", "chat");
        set_attr(&mut message, "id", &id);
        self.to_pipeline.send(message).await.map_err(|_| anyhow::anyhow!("stanzahook is shutting down"))?;
        Ok(id)
    }
}

/// Merges the server's stanzas and the injected ones into one stream for the pipeline; ends when
/// the server's does (the connection task is gone).
pub fn merge(mut server: mpsc::Receiver<Element>, mut injected: mpsc::Receiver<Element>) -> mpsc::Receiver<Element> {
    let (merged, stanzas) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut injecting = true;
        loop {
            let stanza = tokio::select! {
                stanza = server.recv() => match stanza {
                    Some(stanza) => stanza,
                    None => return,
                },
                stanza = injected.recv(), if injecting => match stanza {
                    Some(stanza) => stanza,
                    None => {
                        injecting = false;
                        continue;
                    }
                },
            };
            if merged.send(stanza).await.is_err() {
                return;
            }
        }
    });
    stanzas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_message_comes_from_outside_the_domain_and_goes_to_an_address_at_it() {
        let (injector, _stanzas) = Injector::new("dev@localhost".into(), "bot@bot.localhost".into(), "bot.localhost")
            .expect("the defaults are fine");
        assert_eq!(injector.addresses(None, None), Ok(("dev@localhost", "bot@bot.localhost")));
        assert_eq!(
            injector.addresses(Some("alice@localhost/phone"), Some("echo@bot.localhost")).map(|a| a.1),
            Ok("echo@bot.localhost")
        );
        let refused = |from, to| injector.addresses(from, to).expect_err("refused");
        assert!(refused(Some("x@bot.localhost"), None).contains("own domain"));
        assert!(refused(None, Some("bot@elsewhere.example")).contains("not at the component's domain bot.localhost"));
        assert!(refused(Some("not an address@"), None).contains("is not an XMPP address"));
        assert!(Injector::new("dev@localhost".into(), "bot@x.example".into(), "bot.localhost").is_err());
    }
}
