//! The delivery log (README: "Deliveries"): the last deliveries in memory, bounded by count and
//! bytes, each with how it went (status, timings, attempts, each filter's verdict) and, with
//! `keep_bodies`, what was posted and answered; the failed ones also in the state directory's
//! database, so that a restart loses none. From here they are listed, watched live and
//! redelivered: a redelivery is the kept stanza handed to the pipeline again, as if the server
//! had sent it once more, so its reply goes to the original sender (or its room).

pub mod query;
pub mod record;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc};
use tokio_xmpp::minidom::Element;

use crate::config::DeliverySettings;
use crate::store::{DeliveryQuery, Store};
pub use query::Query;
pub use record::{Delivery, Record, Status};

/// A kept stanza on its way back into the pipeline.
#[derive(Debug)]
pub struct Redelivery {
    pub el: Element,
    /// The new delivery's id, known before it is handled so that the caller can follow it.
    pub id: u64,
    pub of: u64,
}

/// Why a delivery cannot be redelivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedeliverError {
    #[error("no delivery {0} is kept")]
    Unknown(u64),
    #[error("delivery {0} was not kept whole (only failed deliveries are, or every one with deliveries.keep_bodies)")]
    NotKept(u64),
    #[error("delivery {0} was already redelivered as {1}")]
    Already(u64, u64),
    #[error("delivery {0} cannot be redelivered: {1}")]
    Broken(u64, String),
    #[error("stanzahook is shutting down")]
    ShuttingDown,
}

/// Redeliveries waiting for the pipeline, at most.
const REDELIVERY_QUEUE: usize = 1024;
/// Live subscribers lagging further behind than this miss deliveries (and are told so).
const LIVE_BUFFER: usize = 256;
/// How often kept failed deliveries older than `keep_failed_for` are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Deliveries {
    settings: DeliverySettings,
    /// Where failed deliveries are kept; `None` when not (`state_dir` or `keep_failed_for` off).
    store: Option<Arc<Store>>,
    log: Mutex<Log>,
    last_id: AtomicU64,
    live: broadcast::Sender<Arc<Delivery>>,
    redeliveries: mpsc::Sender<Redelivery>,
}

#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<Arc<Delivery>>,
    bytes: usize,
}

impl Deliveries {
    /// The log for `settings`, keeping failed deliveries in `store` when it has a directory;
    /// and the redeliveries it hands to the pipeline.
    pub fn new(settings: DeliverySettings, store: Arc<Store>) -> (Arc<Deliveries>, mpsc::Receiver<Redelivery>) {
        let store = (store.dir().is_some() && settings.keep_failed_for.is_some()).then_some(store);
        let (redeliveries, pending) = mpsc::channel(REDELIVERY_QUEUE);
        let deliveries = Deliveries {
            settings,
            store,
            log: Mutex::default(),
            last_id: AtomicU64::new(0),
            live: broadcast::channel(LIVE_BUFFER).0,
            redeliveries,
        };
        (Arc::new(deliveries), pending)
    }

    /// Forgets kept failed deliveries older than `keep_failed_for`, now and every hour, until
    /// `stop`.
    pub fn spawn_pruning(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let (Some(store), Some(keep_for)) = (self.store.clone(), self.settings.keep_failed_for) else { return };
        tokio::spawn(async move {
            loop {
                let cutoff = unix_ms(SystemTime::now().checked_sub(keep_for).unwrap_or(SystemTime::UNIX_EPOCH));
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.prune_deliveries(cutoff)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!("forgot {n} failed deliveries older than deliveries.keep_failed_for"),
                    Ok(Err(e)) => tracing::warn!("cannot prune the failed deliveries: {e:#}"),
                    Err(e) => tracing::warn!("cannot prune the failed deliveries: {e}"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(PRUNE_EVERY) => {}
                }
            }
        });
    }

    /// Whether anything is recorded at all: the log, or failed deliveries kept on disk.
    fn is_on(&self) -> bool {
        self.settings.log > 0 || self.store.is_some()
    }

    /// A new delivery's id: milliseconds since 1970 times 1,000, plus a count within the
    /// millisecond, so ids grow with time and across restarts (and stay exact in JavaScript).
    fn next_id(&self) -> u64 {
        let now = unix_ms(SystemTime::now()) as u64 * 1000;
        let previous = self
            .last_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(now.max(last + 1)))
            .unwrap_or(now);
        now.max(previous + 1)
    }

    /// Starts gathering a delivery (`redelivery`: its id was given out already); `keep_bodies`
    /// is the current config's.
    pub fn begin(&self, keep_bodies: bool, redelivery: Option<(u64, u64)>) -> Record {
        if !self.is_on() {
            return Record::off();
        }
        match redelivery {
            Some((id, of)) => Record::start(id, keep_bodies, Some(of)),
            None => Record::start(self.next_id(), keep_bodies, None),
        }
    }

    /// Adds a finished delivery to the log (dropping the oldest beyond its bounds), keeps it on
    /// disk when it failed, and tells the live subscribers.
    pub fn record(&self, delivery: Delivery) {
        let delivery = Arc::new(delivery);
        if delivery.status == Status::Failed
            && let Some(store) = &self.store
        {
            let kept = delivery.clone();
            // Debug: the failure itself was logged as a warning already, one line per stanza.
            tracing::debug!(
                delivery = kept.id,
                "kept as a failed delivery (redeliver: POST /deliveries/{}/redeliver)",
                kept.id
            );
            // Written before the process exits (`Store::flush`), even when it is the call the
            // shutdown cut short.
            store.write_later(move |store| {
                if let Err(e) = store.keep_delivery(kept.id, unix_ms(kept.at), &kept.sender, &kept.to_row()) {
                    tracing::error!(delivery = kept.id, "cannot keep the failed delivery: {e:#}");
                }
            });
        }
        if self.settings.log > 0 {
            let size = delivery.size();
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.bytes += size;
            log.entries.push_back(delivery.clone());
            while log.entries.len() > self.settings.log || log.bytes > self.settings.log_memory {
                let Some(oldest) = log.entries.pop_front() else { break };
                log.bytes -= oldest.size();
            }
            crate::metrics::metrics().delivery_log(log.entries.len(), log.bytes);
        }
        // No subscriber is not an error: nobody is watching.
        let _ = self.live.send(delivery);
    }

    /// Deliveries and changes to them as they happen, for `GET /deliveries/live`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.live.subscribe()
    }

    /// A page of deliveries, newest first, from the log and the kept failed ones; and the `before`
    /// of the next page, when there may be one.
    pub async fn page(&self, query: &Query) -> anyhow::Result<(Vec<Arc<Delivery>>, Option<u64>)> {
        let mut found: Vec<Arc<Delivery>> = {
            let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.entries.iter().rev().filter(|d| query.matches(d)).take(query.limit).cloned().collect()
        };
        if let Some(store) = &self.store
            && query.status.is_none_or(|s| s == Status::Failed)
        {
            let asked = DeliveryQuery {
                before: query.before,
                sender: query.sender.clone(),
                since_ms: query.since.map(unix_ms),
                until_ms: query.until.map(unix_ms),
                limit: query.limit,
            };
            let store = store.clone();
            let kept = tokio::task::spawn_blocking(move || store.deliveries(&asked)).await??;
            for (row, redelivered_as) in kept {
                if let Some(d) = Delivery::from_row(&row, redelivered_as)
                    && !found.iter().any(|f| f.id == d.id)
                    && query.matches(&d)
                {
                    found.push(Arc::new(d));
                }
            }
        }
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        found.truncate(query.limit);
        let next = (found.len() == query.limit).then(|| found.last().map(|d| d.id)).flatten();
        Ok((found, next))
    }

    /// One delivery, from the log or the kept failed ones.
    pub async fn get(&self, id: u64) -> anyhow::Result<Option<Arc<Delivery>>> {
        if let Some(d) = self.in_log(id) {
            return Ok(Some(d));
        }
        let Some(store) = self.store.clone() else { return Ok(None) };
        let kept = tokio::task::spawn_blocking(move || store.delivery(id)).await??;
        Ok(kept.and_then(|(row, redelivered_as)| Delivery::from_row(&row, redelivered_as)).map(Arc::new))
    }

    fn in_log(&self, id: u64) -> Option<Arc<Delivery>> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.entries.iter().rev().find(|d| d.id == id).cloned()
    }

    /// Hands delivery `id`'s stanza to the pipeline again; the new delivery's id.
    pub async fn redeliver(&self, id: u64) -> Result<u64, RedeliverError> {
        let original = match self.get(id).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(RedeliverError::Unknown(id)),
            Err(e) => return Err(RedeliverError::Broken(id, format!("{e:#}"))),
        };
        self.redeliver_one(original).await
    }

    async fn redeliver_one(&self, original: Arc<Delivery>) -> Result<u64, RedeliverError> {
        let id = original.id;
        if let Some(already) = original.redelivered_as() {
            return Err(RedeliverError::Already(id, already));
        }
        let Some(stanza) = &original.stanza else { return Err(RedeliverError::NotKept(id)) };
        let el = crate::stanza::parse_stanza_override(stanza).map_err(|e| RedeliverError::Broken(id, e.to_string()))?;
        let new = self.next_id();
        // The kept copy decides first: two calls at once must not both redeliver it.
        if original.status == Status::Failed
            && let Some(store) = self.store.clone()
        {
            match tokio::task::spawn_blocking(move || store.mark_redelivered(id, new)).await {
                Ok(Ok(true)) => {}
                // Not on disk (kept in memory only, or pruned): the log's copy decides below.
                Ok(Ok(false)) if self.in_log(id).is_some() => {}
                Ok(Ok(false)) => {
                    return Err(self
                        .get(id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|d| d.redelivered_as())
                        .map_or(RedeliverError::Unknown(id), |already| RedeliverError::Already(id, already)));
                }
                Ok(Err(e)) => return Err(RedeliverError::Broken(id, format!("{e:#}"))),
                Err(e) => return Err(RedeliverError::Broken(id, e.to_string())),
            }
        }
        let in_log = self.in_log(id);
        let marked = in_log.as_ref().unwrap_or(&original);
        if !marked.mark_redelivered(new) {
            return Err(RedeliverError::Already(id, marked.redelivered_as().unwrap_or(new)));
        }
        self.redeliveries.send(Redelivery { el, id: new, of: id }).await.map_err(|_| RedeliverError::ShuttingDown)?;
        crate::metrics::metrics().redelivered();
        tracing::info!(delivery = id, "redelivering as {new}");
        let _ = self.live.send(marked.clone());
        Ok(new)
    }

    /// Redelivers every failed delivery since `since` not yet redelivered, oldest first (so each
    /// sender's stanzas keep their order); the pairs (new id, original id).
    pub async fn redeliver_since(&self, since: SystemTime) -> anyhow::Result<Vec<(u64, u64)>> {
        let mut failed = Vec::new();
        let mut before = None;
        loop {
            let query =
                Query { status: Some(Status::Failed), since: Some(since), before, limit: 500, ..Query::default() };
            let (page, next) = self.page(&query).await?;
            failed.extend(page.into_iter().filter(|d| d.redelivered_as().is_none() && d.stanza.is_some()));
            match next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let mut redelivered = Vec::new();
        for original in failed.into_iter().rev() {
            let of = original.id;
            match self.redeliver_one(original).await {
                Ok(id) => redelivered.push((id, of)),
                // Redelivered meanwhile by another call: nothing to do.
                Err(RedeliverError::Already(..)) => {}
                Err(e) => return Err(anyhow::anyhow!("{e} (after redelivering {} of them)", redelivered.len())),
            }
        }
        Ok(redelivered)
    }
}

pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::{Outcome, Posted};

    fn settings(log: usize, log_memory: usize) -> DeliverySettings {
        DeliverySettings { log, log_memory, keep_bodies: false, keep_failed_for: None }
    }

    fn message(from: &str) -> Element {
        crate::stanza::parse_received(&format!("<message from='{from}' to='bot@x' id='m'><body>hi</body></message>"))
            .expect("stanza")
    }

    fn finished(deliveries: &Deliveries, from: &str, failed: bool) -> u64 {
        let mut record = deliveries.begin(false, None);
        let outcome = if failed {
            Outcome::Failed {
                status: 503,
                error: crate::stanza::StanzaError::new(crate::stanza::ErrorType::Wait, "service-unavailable"),
                detail: "webhook answered HTTP 503".into(),
            }
        } else {
            Outcome::NoReply { status: 204 }
        };
        record.posted(&Posted { outcome, content_type: None, took: Duration::from_millis(1), attempts: 1 });
        let d = record.finish(&message(from), None, &[]).expect("on");
        let id = d.id;
        deliveries.record(d);
        id
    }

    #[tokio::test]
    async fn the_log_holds_at_most_its_count_and_its_bytes() {
        let (deliveries, _pending) = Deliveries::new(settings(3, 1 << 20), Arc::new(Store::new(None)));
        let ids: Vec<u64> = (0..5).map(|_| finished(&deliveries, "a@b/c", false)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
        let (page, next) = deliveries.page(&Query::default()).await.expect("page");
        assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[4], ids[3], ids[2]]);
        assert_eq!(next, None);
        let one = deliveries.in_log(ids[4]).expect("kept").size();
        let (small, _pending) = Deliveries::new(settings(100, one * 2), Arc::new(Store::new(None)));
        for _ in 0..10 {
            finished(&small, "a@b/c", false);
        }
        let log = small.log.lock().expect("lock");
        assert_eq!(log.entries.len(), 2, "bounded by bytes");
        assert!(log.bytes <= one * 2);
    }

    #[tokio::test]
    async fn pages_go_back_in_time_and_filter_by_status_and_sender() {
        let (deliveries, _pending) = Deliveries::new(settings(100, 1 << 20), Arc::new(Store::new(None)));
        for i in 0..7 {
            finished(&deliveries, if i % 2 == 0 { "a@b/phone" } else { "c@d/x" }, i == 3);
        }
        let (first, next) = deliveries.page(&Query { limit: 4, ..Query::default() }).await.expect("page");
        assert_eq!(first.len(), 4);
        let (second, last) =
            deliveries.page(&Query { limit: 4, before: next, ..Query::default() }).await.expect("page");
        assert_eq!((second.len(), last), (3, None));
        let (failed, _) =
            deliveries.page(&Query { status: Some(Status::Failed), ..Query::default() }).await.expect("page");
        assert_eq!(failed.len(), 1);
        let (alice, _) =
            deliveries.page(&Query { sender: Some("a@b".into()), ..Query::default() }).await.expect("page");
        assert_eq!(alice.len(), 4);
    }

    #[tokio::test]
    async fn a_failed_delivery_is_kept_on_disk_redelivered_once_and_the_pipeline_gets_its_stanza() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::new(Some(dir.path().to_owned())));
        let keep = DeliverySettings { keep_failed_for: Some(Duration::from_secs(60)), ..settings(0, 1 << 20) };
        let (deliveries, mut pending) = Deliveries::new(keep.clone(), store);
        let failed = finished(&deliveries, "a@b/phone", true);
        finished(&deliveries, "a@b/phone", false);
        // Written on a blocking thread: a new process over the same directory reads it back.
        let (again, mut pending_again) = loop {
            let (again, pending) = Deliveries::new(keep.clone(), Arc::new(Store::new(Some(dir.path().to_owned()))));
            if again.get(failed).await.expect("read").is_some() {
                break (again, pending);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (page, _) = again.page(&Query::default()).await.expect("page");
        assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), [failed], "only the failed one is kept");
        let new = again.redeliver(failed).await.expect("redelivered");
        let handed = pending_again.recv().await.expect("to the pipeline");
        assert_eq!((handed.id, handed.of), (new, failed));
        assert_eq!(handed.el.attr("from"), Some("a@b/phone"));
        assert_eq!(again.redeliver(failed).await, Err(RedeliverError::Already(failed, new)));
        assert_eq!(deliveries.redeliver(failed).await, Err(RedeliverError::Already(failed, new)), "the disk decides");
        assert!(pending.try_recv().is_err());
        assert_eq!(again.redeliver(1).await, Err(RedeliverError::Unknown(1)));
    }
}
