//! stanzahook: an XMPP external component (XEP-0114) that turns stanzas into webhook calls and
//! webhook answers into stanzas. `run` is the one entry point; the binary and the tests use it.

pub mod allocator;
pub mod api;
pub mod builtin;
pub mod config;
pub mod courtesy;
pub mod deliveries;
pub mod dev;
pub mod filter;
pub mod health;
pub mod lanes;
pub mod live;
pub mod metrics;
pub mod payload;
pub mod pipeline;
pub mod reload;
pub mod retries;
pub mod rooms;
pub mod shutdown;
pub mod signing;
pub mod stanza;
pub mod store;
pub mod vocabulary;
pub mod watch;
pub mod way;
pub mod webhook;
pub mod xml_depth;
pub mod xmpp;

use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Serves the configured domain until `shutdown` is cancelled, then drains and closes cleanly.
pub async fn run(source: config::ConfigSource, shutdown: CancellationToken) -> anyhow::Result<()> {
    let hangups = watch::hangups();
    let reloader = tokio::task::spawn_blocking(move || reload::Reloader::start(source)).await??;
    serve(reloader, hangups, None, shutdown).await
}

/// Test messages of `stanzahook dev`: the injector (for `POST /inject`) and what it sends.
pub type Injection = (std::sync::Arc<dev::Injector>, tokio::sync::mpsc::Receiver<tokio_xmpp::minidom::Element>);

/// `run` with the config and filters already loaded (the binary loads them first, so that a
/// mistake in either exits with the configuration error code); `injection` for `stanzahook dev`.
pub async fn serve(
    reloader: reload::Reloader,
    hangups: watch::Hangups,
    injection: Option<Injection>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let live = reloader.live();
    let config = live.load().config.clone();
    let filters = live.load().filters.names().join(" → ");
    if !filters.is_empty() {
        tracing::info!("filters: {filters}");
    }
    // Bound before connecting: a port in use is a start-up failure, not a surprise later.
    let api = match config.api.listen {
        Some(addr) => Some(api::bind(addr).await?),
        None => None,
    };
    let settings = xmpp::ConnectionSettings {
        server: config.server.clone(),
        domain: config.domain.clone(),
        secret: config.secret.expose().to_owned(),
        keepalive: config.connection.keepalive,
        dead_after: config.connection.dead_after,
        queue_capacity: config.connection.max_queued,
    };
    let (outbox, incoming, connection) = xmpp::spawn(settings, shutdown.clone());
    // Only `stanzahook dev` merges in test messages: everywhere else the pipeline reads the
    // server's stanzas with no task in between.
    let (injector, incoming) = match injection {
        Some((injector, injected)) => (Some(injector), dev::merge(incoming, injected)),
        None => (None, incoming),
    };
    let store = std::sync::Arc::new(store::Store::new(config.state_dir.clone()));
    let (deliveries, redeliveries) = deliveries::Deliveries::new(config.deliveries.clone(), store.clone());
    deliveries.spawn_pruning(shutdown.clone());
    let rooms = rooms::Rooms::new(outbox.clone(), store.clone());
    let restoring = rooms.clone();
    tokio::task::spawn_blocking(move || restoring.restore()).await?;
    if let Some(listener) = api {
        api::spawn(
            listener,
            live.clone(),
            outbox.clone(),
            rooms.clone(),
            injector,
            deliveries.clone(),
            shutdown.clone(),
        );
    }
    tracing::info!("{}", config.summary());
    let reloads = watch::spawn(reloader, hangups, shutdown.clone());
    let joins = rooms::spawn(rooms.clone(), live.clone(), shutdown.clone());
    // In `block_on`'s own future, not a task of its own: tokio then polls its I/O driver once
    // more, without waiting, per stanza (an `epoll_wait`), but as a task the pipeline saved no
    // CPU at 2,000 stanzas/s and lost replies/s at saturation in some runs (BENCHMARKS.md,
    // "Capacity").
    pipeline::Pipeline::new(live.clone(), outbox, rooms, deliveries).run(incoming, redeliveries, shutdown).await;
    reloads.abort();
    // The rooms are left (their presences queued) before the connection may close.
    let _ = joins.await;
    // The pipeline is gone, so the outbox has no producers left: the connection sends what is
    // queued and closes. A server that stays away must not hold the process hostage.
    let grace = live.load().config.shutdown_grace;
    let mut connection = connection;
    if tokio::time::timeout(grace, &mut connection).await.is_err() {
        tracing::error!("could not deliver the remaining replies: the server is unreachable");
        connection.abort();
    }
    // What must survive the restart (the failed deliveries, among them the calls the shutdown
    // cut short; the rooms joined or left) reaches the disk before the process exits.
    store.flush().await;
    Ok(())
}
