//! stanzahook: an XMPP external component (XEP-0114) that turns stanzas into webhook calls and
//! webhook answers into stanzas. `run` is the one entry point; the binary and the tests use it.

pub mod builtin;
pub mod config;
pub mod filter;
pub mod lanes;
pub mod payload;
pub mod pipeline;
pub mod shutdown;
pub mod signing;
pub mod stanza;
pub mod webhook;
pub mod xml_depth;
pub mod xmpp;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Serves the configured domain until `shutdown` is cancelled, then drains and closes cleanly.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.filters.clone();
    let filters = tokio::task::spawn_blocking(move || load_filters(&settings)).await??;
    run_with(config, filters, shutdown).await
}

/// Compiles and pre-instantiates the configured filters: CPU work, seconds for large guests, so
/// call it off the async threads.
pub fn load_filters(settings: &[filter::FilterSettings]) -> anyhow::Result<filter::FilterChain> {
    if settings.is_empty() {
        return Ok(filter::FilterChain::empty());
    }
    let engine = filter::FilterEngine::new()?;
    let loaded = settings.iter().cloned().map(|s| engine.load(s)).collect::<anyhow::Result<_>>()?;
    Ok(engine.chain(loaded))
}

/// `run` with filters already loaded.
pub async fn run_with(config: Config, filters: filter::FilterChain, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    if !filters.is_empty() {
        tracing::info!("filters: {}", filters.names().join(" → "));
    }
    let webhook =
        webhook::Webhook::new(config.post_url.clone(), &config.webhook).context("cannot set up the HTTP client")?;
    let settings = xmpp::ConnectionSettings {
        server: config.server.clone(),
        domain: config.domain.clone(),
        secret: config.secret.expose().to_owned(),
        keepalive: config.connection.keepalive,
        dead_after: config.connection.dead_after,
        queue_capacity: config.connection.max_queued,
    };
    let (outbox, incoming, connection) = xmpp::spawn(settings, shutdown.clone());
    tracing::info!("{}", config.summary());
    pipeline::Pipeline::new(config.clone(), webhook, Arc::new(filters), outbox).run(incoming, shutdown).await;
    // The pipeline is gone, so the outbox has no producers left: the connection sends what is
    // queued and closes. A server that stays away must not hold the process hostage.
    let mut connection = connection;
    if tokio::time::timeout(config.shutdown_grace, &mut connection).await.is_err() {
        tracing::error!("could not deliver the remaining replies: the server is unreachable");
        connection.abort();
    }
    Ok(())
}
