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
    sent: AtomicU64,
}

impl Injector {
    /// An injector and the stanzas it makes, for the pipeline to merge with the server's.
    pub fn new(from: String, to: String) -> (Injector, mpsc::Receiver<Element>) {
        let (to_pipeline, stanzas) = mpsc::channel(64);
        (Injector { to_pipeline, from, to, sent: AtomicU64::new(0) }, stanzas)
    }

    /// Sends `body` as a chat message (from and to the defaults unless given); returns its id.
    pub async fn message(&self, body: &str, from: Option<&str>, to: Option<&str>) -> anyhow::Result<String> {
        let id = format!("dev-{}", self.sent.fetch_add(1, Ordering::Relaxed) + 1);
        let mut message = Element::builder("message", NS_COMPONENT)
            .append(Element::builder("body", NS_COMPONENT).append(body))
            .build();
        set_attr(&mut message, "from", from.unwrap_or(&self.from));
        set_attr(&mut message, "to", to.unwrap_or(&self.to));
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
