//! The configured filters in order: `before` hooks in config order ahead of the webhook call,
//! `after` hooks in reverse behind it, like middleware unwinding (README: "Filters"). A failing
//! filter is logged and handled per its `on_error`; nothing a guest does reaches further.

use std::sync::Arc;

use super::call::{AfterDecision, BeforeDecision, CallReport, FilterError, LoadedFilter};
use super::workers::FilterWorkers;
use super::{Level, OnError};
use serde_json::Value;

/// The filters a stanza passed on its way in, with the event each one saw: their `after` hooks
/// run on the way back.
#[derive(Debug, Default, Clone)]
pub struct Trail {
    seen: Vec<(usize, String)>,
}

impl Trail {
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What one filter hook decided, and how long it took (instantiation and teardown included): the
/// way a stanza went, as `--dev` tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub filter: String,
    pub hook: &'static str,
    pub outcome: &'static str,
    pub took: std::time::Duration,
}

/// Where the `before` hooks leave a stanza.
#[derive(Debug)]
pub enum BeforeOutcome {
    /// POST this event (the JSON text of an object) to the webhook.
    Post { event: String, trail: Trail },
    /// A filter answered: use this reply JSON without calling the webhook.
    Answer { reply: Value, trail: Trail },
    /// A filter dropped the stanza.
    Drop { filter: String },
    /// A filter failed with `on_error = "reject"`.
    Reject { filter: String },
}

/// Where the `after` hooks leave the reply.
#[derive(Debug, PartialEq)]
pub enum AfterOutcome {
    /// As the webhook (or the answering filter) left it.
    Keep,
    /// Use this reply JSON instead.
    Replace(Value),
    Drop {
        filter: String,
    },
    Reject {
        filter: String,
    },
}

#[derive(Debug, Default)]
pub struct FilterChain {
    filters: Vec<LoadedFilter>,
    /// The engine's threads; `None` only for the empty chain.
    workers: Option<Arc<FilterWorkers>>,
}

impl FilterChain {
    /// The filters in config order, run on `workers`.
    pub fn new(filters: Vec<LoadedFilter>, workers: Arc<FilterWorkers>) -> FilterChain {
        FilterChain { filters, workers: Some(workers) }
    }

    /// No filters: every event goes to the webhook as built.
    pub fn empty() -> FilterChain {
        FilterChain::default()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters' names, for the log: a filter whose instances are kept between calls says so.
    pub fn names(&self) -> Vec<String> {
        let describe = |f: &LoadedFilter| {
            let kept = if f.reuses_instances() { " (keeps its instance)" } else { "" };
            format!("{}{kept}", f.name())
        };
        self.filters.iter().map(describe).collect()
    }

    /// Runs the `before` hooks on the event's JSON text; with each hook's verdict in order.
    pub async fn before(self: &Arc<Self>, event: String) -> (BeforeOutcome, Vec<Verdict>) {
        self.off_thread(move |chain| {
            let mut verdicts = Vec::with_capacity(chain.filters.len());
            (chain.before_blocking(event, &mut verdicts), verdicts)
        })
        .await
        .unwrap_or_else(|| (BeforeOutcome::Reject { filter: "chain".into() }, Vec::new()))
    }

    /// Runs the `after` hooks of the filters in `trail`, last first, on the reply's JSON text;
    /// with each hook's verdict in order.
    pub async fn after(
        self: &Arc<Self>,
        trail: Trail,
        status: u16,
        reply: Option<String>,
    ) -> (AfterOutcome, Vec<Verdict>) {
        self.off_thread(move |chain| {
            let mut verdicts = Vec::with_capacity(trail.seen.len());
            (chain.after_blocking(trail, status, reply, &mut verdicts), verdicts)
        })
        .await
        .unwrap_or_else(|| (AfterOutcome::Reject { filter: "chain".into() }, Vec::new()))
    }

    /// Runs `work` on a filter thread (guests are CPU work). `None` if it failed, which is logged.
    async fn off_thread<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&FilterChain) -> R + Send + 'static,
    ) -> Option<R> {
        let workers = self.workers.as_ref()?;
        let chain = self.clone();
        workers.run(move || work(&chain)).await
    }

    fn before_blocking(&self, mut event: String, verdicts: &mut Vec<Verdict>) -> BeforeOutcome {
        let mut trail = Trail::default();
        for (index, filter) in self.filters.iter().enumerate() {
            let (result, report) = filter.before(&event);
            emit_logs(filter, &report);
            let outcome = result.as_ref().map_or("error", BeforeDecision::name);
            verdicts.push(record(filter, "before", outcome, &report));
            match result {
                Ok(BeforeDecision::Pass) => trail.seen.push((index, event.clone())),
                Ok(BeforeDecision::Rewrite(new_event)) => {
                    let seen = std::mem::replace(&mut event, new_event.into_string());
                    trail.seen.push((index, seen));
                }
                Ok(BeforeDecision::Answer(reply)) => {
                    tracing::debug!(filter = filter.name(), "answered without the webhook");
                    return BeforeOutcome::Answer { reply, trail };
                }
                Ok(BeforeDecision::Drop) => {
                    return BeforeOutcome::Drop { filter: filter.name().to_owned() };
                }
                Err(e) => {
                    if failed(filter, "before", &e) == OnError::Reject {
                        return BeforeOutcome::Reject { filter: filter.name().to_owned() };
                    }
                }
            }
        }
        BeforeOutcome::Post { event, trail }
    }

    fn after_blocking(
        &self,
        trail: Trail,
        status: u16,
        mut reply: Option<String>,
        verdicts: &mut Vec<Verdict>,
    ) -> AfterOutcome {
        // Replacements stay text until the end: the next filter reads the text anyway.
        let mut replaced_by: Option<&LoadedFilter> = None;
        for (index, seen) in trail.seen.iter().rev() {
            let Some(filter) = self.filters.get(*index) else {
                continue;
            };
            let (result, report) = filter.after(seen, status, reply.as_deref());
            emit_logs(filter, &report);
            let outcome = result.as_ref().map_or("error", AfterDecision::name);
            verdicts.push(record(filter, "after", outcome, &report));
            match result {
                Ok(AfterDecision::Replace(text)) => {
                    reply = Some(text.into_string());
                    replaced_by = Some(filter);
                }
                Ok(AfterDecision::Pass) => {}
                Ok(AfterDecision::Drop) => return AfterOutcome::Drop { filter: filter.name().to_owned() },
                Err(e) => {
                    if failed(filter, "after", &e) == OnError::Reject {
                        return AfterOutcome::Reject { filter: filter.name().to_owned() };
                    }
                }
            }
        }
        let (Some(filter), Some(text)) = (replaced_by, reply) else { return AfterOutcome::Keep };
        match super::call::tree(&text) {
            Ok(value) => AfterOutcome::Replace(value),
            Err(e) => match failed(filter, "after", &e) {
                OnError::Reject => AfterOutcome::Reject { filter: filter.name().to_owned() },
                OnError::Skip => AfterOutcome::Keep,
            },
        }
    }
}

/// Logs a filter failure once, naming the filter and the hook; returns what to do about it.
fn failed(filter: &LoadedFilter, hook: &str, error: &FilterError) -> OnError {
    let on_error = filter.settings.on_error;
    let action = match on_error {
        OnError::Skip => "skipped",
        OnError::Reject => "rejecting the stanza",
    };
    tracing::warn!(filter = filter.name(), "filter {hook} hook {error}; {action}");
    on_error
}

fn record(filter: &LoadedFilter, hook: &'static str, outcome: &'static str, report: &CallReport) -> Verdict {
    let took = report.instantiate + report.call + report.teardown;
    crate::metrics::metrics().filter_call(filter.name(), hook, outcome, took);
    Verdict { filter: filter.name().to_owned(), hook, outcome, took }
}

/// The guest's own log lines, tagged with its name, inside the stanza's span.
fn emit_logs(filter: &LoadedFilter, report: &CallReport) {
    for (level, message) in &report.logs {
        let name = filter.name();
        match level {
            Level::Trace => tracing::trace!(filter = name, "{message}"),
            Level::Debug => tracing::debug!(filter = name, "{message}"),
            Level::Info => tracing::info!(filter = name, "{message}"),
            Level::Warn => tracing::warn!(filter = name, "{message}"),
            Level::Error => tracing::error!(filter = name, "{message}"),
        }
    }
}
