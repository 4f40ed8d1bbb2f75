//! What stanzas are served with right now: the config, the webhook client made from it and the
//! filter chain, as one snapshot. A reload swaps the whole snapshot atomically; a stanza takes the
//! snapshot once when its handling starts and keeps it to the end, so its `before` and `after`
//! hooks run in the same chain and its reply goes through the same checks (README: "Reloading while serving").

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::filter::FilterChain;
use crate::webhook::Webhook;

#[derive(Debug)]
pub struct Live {
    pub config: Arc<Config>,
    pub webhook: Webhook,
    pub filters: Arc<FilterChain>,
}

/// The current snapshot, shared by the pipeline (readers) and the reloader (the one writer).
pub type LiveCell = Arc<ArcSwap<Live>>;

impl Live {
    pub fn new(config: Config, filters: FilterChain) -> anyhow::Result<Live> {
        let webhook = Webhook::new(config.post_url.clone(), &config.webhook)?;
        Ok(Live { config: Arc::new(config), webhook, filters: Arc::new(filters) })
    }

    pub fn into_cell(self) -> LiveCell {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
