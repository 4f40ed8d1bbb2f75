//! What stanzahook counts, for `GET /metrics` (README: "The operator API"): one registry for the process, filled
//! where things happen (connection, pipeline, webhook, filters, reloads) and written out in the
//! Prometheus/OpenMetrics text format by prometheus-client.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    /// `2xx` … `5xx`, or `error` when no HTTP answer came (refused, timed out).
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterCallLabel {
    filter: String,
    hook: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabel {
    filter: String,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Family<KindLabel, Counter>,
    sent: Family<KindLabel, Counter>,
    webhook_calls: Family<StatusLabel, Counter>,
    webhook_seconds: Histogram,
    webhook_retries: Counter,
    redeliveries: Counter,
    delivery_log_entries: Gauge,
    delivery_log_bytes: Gauge,
    filter_calls: Family<FilterCallLabel, Counter>,
    filter_seconds: HistogramFamily<FilterLabel>,
    reloads: Family<ResultLabel, Counter>,
    reconnects: Counter,
    in_flight: Gauge,
    connected: Gauge,
    room_withheld: Family<ReasonLabel, Counter>,
    rooms: Family<StateLabel, Gauge>,
    room_joins: Family<ResultLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn webhook_buckets() -> Histogram {
    // 1 ms … ~16 s: a fast local bot to one at the default timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn filter_buckets() -> Histogram {
    // 10 µs … ~160 ms: a fresh instance to one at the default CPU limit.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stanzahook");
        let received = Family::<KindLabel, Counter>::default();
        registry.register("stanzas_received", "Stanzas received from the server, by kind", received.clone());
        let sent = Family::<KindLabel, Counter>::default();
        registry.register("stanzas_sent", "Stanzas queued for the server, by kind", sent.clone());
        let webhook_calls = Family::<StatusLabel, Counter>::default();
        registry.register("webhook_calls", "Webhook calls, by HTTP status class", webhook_calls.clone());
        let webhook_seconds = webhook_buckets();
        registry.register("webhook_duration_seconds", "Time of a webhook call", webhook_seconds.clone());
        let webhook_retries = Counter::default();
        registry.register(
            "webhook_retries",
            "Webhook calls that were a retry of a failed one",
            webhook_retries.clone(),
        );
        let redeliveries = Counter::default();
        registry.register(
            "redeliveries",
            "Deliveries handed to the pipeline again (POST /deliveries/…/redeliver)",
            redeliveries.clone(),
        );
        let delivery_log_entries = Gauge::default();
        registry.register("delivery_log_entries", "Deliveries in the in-memory log", delivery_log_entries.clone());
        let delivery_log_bytes = Gauge::default();
        registry.register(
            "delivery_log_bytes",
            "What the in-memory delivery log holds, in bytes (bounded by deliveries.log_memory)",
            delivery_log_bytes.clone(),
        );
        let filter_calls = Family::<FilterCallLabel, Counter>::default();
        registry.register("filter_calls", "Filter hook calls, by filter, hook and outcome", filter_calls.clone());
        let filter_seconds: HistogramFamily<FilterLabel> = Family::new_with_constructor(filter_buckets);
        registry.register(
            "filter_duration_seconds",
            "Host time of a filter hook call: instance, call, teardown",
            filter_seconds.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("reloads", "Reloads of config and filters, by result", reloads.clone());
        let reconnects = Counter::default();
        registry.register("reconnects", "Connections to the server made after the first", reconnects.clone());
        let in_flight = Gauge::default();
        registry.register("in_flight", "Stanzas being handled or waiting in their sender's lane", in_flight.clone());
        let connected = Gauge::default();
        registry.register("connected", "1 while the component stream is up", connected.clone());
        let room_withheld = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "room_replies_withheld",
            "Stanzas not sent to a room: an error (a room kicks for it), or past room_reply_limit",
            room_withheld.clone(),
        );
        let rooms = Family::<StateLabel, Gauge>::default();
        registry.register("rooms", "Configured rooms, by state (joining, joined, failed, kicked)", rooms.clone());
        let room_joins = Family::<ResultLabel, Counter>::default();
        registry.register(
            "room_joins",
            "Answers to the bot's room joins, by result (joined, failed)",
            room_joins.clone(),
        );
        Metrics {
            registry,
            received,
            sent,
            webhook_calls,
            webhook_seconds,
            webhook_retries,
            redeliveries,
            delivery_log_entries,
            delivery_log_bytes,
            filter_calls,
            filter_seconds,
            reloads,
            reconnects,
            in_flight,
            connected,
            room_withheld,
            rooms,
            room_joins,
        }
    }

    pub fn stanza_received(&self, kind: &str) {
        self.received.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    pub fn stanza_sent(&self, kind: &str) {
        self.sent.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    /// `status` 0: no HTTP answer.
    pub fn webhook_call(&self, status: u16, took: Duration) {
        let status = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "error",
        };
        self.webhook_calls.get_or_create(&StatusLabel { status }).inc();
        self.webhook_seconds.observe(took.as_secs_f64());
    }

    pub fn webhook_retry(&self) {
        self.webhook_retries.inc();
    }

    pub fn redelivered(&self) {
        self.redeliveries.inc();
    }

    pub fn delivery_log(&self, entries: usize, bytes: usize) {
        self.delivery_log_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.delivery_log_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn filter_call(&self, filter: &str, hook: &'static str, outcome: &'static str, took: Duration) {
        self.filter_calls.get_or_create(&FilterCallLabel { filter: filter.to_owned(), hook, outcome }).inc();
        self.filter_seconds.get_or_create(&FilterLabel { filter: filter.to_owned(), hook }).observe(took.as_secs_f64());
    }

    /// `result`: `swapped` or `failed`.
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// `reason`: `error` (a stanza error a room would kick for) or `limit` (room_reply_limit).
    pub fn room_withheld(&self, reason: &'static str) {
        self.room_withheld.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// How many rooms are in each state, all states given.
    pub fn rooms(&self, counts: &[(&'static str, i64)]) {
        for (state, n) in counts {
            self.rooms.get_or_create(&StateLabel { state }).set(*n);
        }
    }

    /// `result`: `joined` or `failed`.
    pub fn room_join(&self, result: &'static str) {
        self.room_joins.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn connection_up(&self, reconnect: bool) {
        self.connected.set(1);
        if reconnect {
            self.reconnects.inc();
        }
    }

    pub fn connection_down(&self) {
        self.connected.set(0);
    }

    /// Counts a stanza in flight until the guard is dropped.
    pub fn in_flight(&'static self) -> InFlight {
        self.in_flight.inc();
        InFlight(self)
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One stanza in flight; see `Metrics::in_flight`.
#[derive(Debug)]
pub struct InFlight(&'static Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text() {
        let m = Metrics::new();
        m.stanza_received("message");
        m.stanza_received("message");
        m.webhook_call(503, Duration::from_millis(3));
        m.webhook_call(0, Duration::from_secs(10));
        m.filter_call("tag", "before", "rewrite", Duration::from_micros(40));
        let text = m.encode();
        assert!(text.contains("stanzahook_stanzas_received_total{kind=\"message\"} 2"), "{text}");
        assert!(text.contains("stanzahook_webhook_calls_total{status=\"5xx\"} 1"), "{text}");
        assert!(text.contains("stanzahook_webhook_calls_total{status=\"error\"} 1"), "{text}");
        assert!(text.contains("stanzahook_webhook_duration_seconds_count 2"), "{text}");
        assert!(
            text.contains("stanzahook_filter_calls_total{filter=\"tag\",hook=\"before\",outcome=\"rewrite\"} 1"),
            "{text}"
        );
    }
}
