//! One hook call: a fresh instance from the pre-instantiated component (or, for a filter that
//! allows it, one kept from an earlier call that succeeded), in a store with the filter's limits
//! (epoch deadline for CPU, a resource limiter for memory), no WASI capability beyond the granted
//! ones, and the guest's output captured for the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{ComponentExportIndex, Instance, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use serde_json::Value;

use super::FilterSettings;
use super::bindings::{FilterPre, HookResult, Level, RawAfter, RawBefore, WebhookAnswer};
use super::engine::EPOCH_TICK;
use super::guest_log::{GuestLog, GuestOutput};
use super::guest_text::{self, Refused};
use super::waits::CallWaits;
use super::warm::WarmPool;

/// Guest stdout/stderr kept per call; more is cut.
const CAPTURED_OUTPUT_BYTES: usize = 64 * 1024;

/// Why a filter call failed. The chain logs it and applies the filter's `on_error`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FilterError {
    #[error("cannot start an instance: {0}")]
    Instantiate(String),
    #[error("ran out of its CPU time ({} ms)", .0.as_millis())]
    Timeout(Duration),
    #[error("exceeded its memory limit ({0} bytes)")]
    Memory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned an error: {0}")]
    Returned(String),
    #[error("returned {size} bytes, more than its limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("returned invalid JSON: {0}")]
    InvalidJson(String),
    #[error("returned a string that is not text: {0}")]
    NotText(String),
}

/// JSON text a guest returned, checked to be well formed and within the filter's output cap.
///
/// A rewritten event goes to the next filter and to the webhook as this text: parsing it into a
/// tree and writing it out again for every filter was half the JSON work of a filtered stanza
/// (measured: 5.1 → 2.6 µs of ~50 µs for two filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(String);

impl JsonText {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The text as a tree, for the places that read it (reply checks, `stanzahook filter run`).
    pub fn to_value(&self) -> Result<Value, FilterError> {
        tree(&self.0)
    }
}

/// A string a hook returned, taken only if it is within the output cap.
fn read(text: &str, limit: usize) -> Result<&str, FilterError> {
    guest_text::within(text, limit).map_err(|refused| match refused {
        Refused::TooLarge(size) => FilterError::OutputTooLarge { size, limit },
        Refused::Encoding(why) => FilterError::NotText(why),
    })
}

/// JSON text a hook returned, checked as a webhook's JSON would be (nesting, escapes, one
/// value), without building a tree; copied only once it passed.
fn checked(text: &str) -> Result<JsonText, FilterError> {
    guest_text::check_json(text).map_err(|e| FilterError::InvalidJson(e.to_string()))?;
    Ok(JsonText(text.to_owned()))
}

/// JSON text from a guest as a tree; a failure is the guest's. serde_json's tree has the same
/// limits as `checked`.
pub(super) fn tree(text: &str) -> Result<Value, FilterError> {
    serde_json::from_str(text).map_err(|e| FilterError::InvalidJson(e.to_string()))
}

/// An event must stay an object (README: "The request"). Well-formed JSON, so its first character tells.
fn object(json: JsonText) -> Result<JsonText, FilterError> {
    if json.as_str().trim_start().starts_with('{') {
        Ok(json)
    } else {
        Err(FilterError::InvalidJson("a rewritten event must be a JSON object".into()))
    }
}

/// A `before` hook's decision, its JSON checked.
#[derive(Debug, Clone, PartialEq)]
pub enum BeforeDecision {
    Pass,
    /// Go on with this event (a JSON object).
    Rewrite(JsonText),
    /// Answer with this reply JSON without calling the webhook.
    Answer(Value),
    Drop,
}

/// An `after` hook's decision, its JSON checked.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterDecision {
    Pass,
    Replace(JsonText),
    Drop,
}

impl BeforeDecision {
    /// The verdict's name, as the WIT and the logs say it.
    pub fn name(&self) -> &'static str {
        match self {
            BeforeDecision::Pass => "pass",
            BeforeDecision::Rewrite(_) => "rewrite",
            BeforeDecision::Answer(_) => "answer",
            BeforeDecision::Drop => "drop",
        }
    }

    /// The JSON it carries, if any, as a tree (for `filter run` and `filter test`).
    pub fn json(&self) -> Option<Value> {
        match self {
            BeforeDecision::Rewrite(j) => j.to_value().ok(),
            BeforeDecision::Answer(j) => Some(j.clone()),
            BeforeDecision::Pass | BeforeDecision::Drop => None,
        }
    }
}

impl AfterDecision {
    /// The verdict's name, as the WIT and the logs say it.
    pub fn name(&self) -> &'static str {
        match self {
            AfterDecision::Pass => "pass",
            AfterDecision::Replace(_) => "replace",
            AfterDecision::Drop => "drop",
        }
    }

    /// The JSON it carries, if any, as a tree.
    pub fn json(&self) -> Option<Value> {
        match self {
            AfterDecision::Replace(j) => j.to_value().ok(),
            AfterDecision::Pass | AfterDecision::Drop => None,
        }
    }
}

/// What a call did besides its verdict: for the log, and for `stanzahook filter run`.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub logs: Vec<(Level, String)>,
    /// Store set-up and instantiation.
    pub instantiate: Duration,
    /// The guest's hook itself.
    pub call: Duration,
    /// Dropping the store: the instance's memory goes back to the pool.
    pub teardown: Duration,
}

/// The store's data for one call.
pub struct CallState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) waits: CallWaits,
    limits: CallLimits,
    pub(super) settings: Arc<FilterSettings>,
    pub(super) log: GuestLog,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A compiled, pre-instantiated filter. Cheap to share; every call gets a fresh instance, unless
/// the filter allows reuse, when calls take one from `warm` if there is one.
#[derive(Clone)]
pub struct LoadedFilter {
    pub settings: Arc<FilterSettings>,
    engine: Engine,
    pre: FilterPre<CallState>,
    hooks: Hooks,
    warm: Option<Arc<WarmPool<Warm>>>,
}

/// Where the component exports its hooks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hooks {
    pub before: ComponentExportIndex,
    pub after: ComponentExportIndex,
}

/// An instance kept for a later call, with its store.
pub(super) struct Warm {
    store: Store<CallState>,
    pipes: Pipes,
    instance: Instance,
}

impl std::fmt::Debug for LoadedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedFilter").field("name", &self.settings.name).finish()
    }
}

struct Pipes {
    stdout: GuestOutput,
    stderr: GuestOutput,
}

impl LoadedFilter {
    pub(super) fn new(
        settings: FilterSettings,
        engine: Engine,
        pre: FilterPre<CallState>,
        hooks: Hooks,
    ) -> LoadedFilter {
        LoadedFilter { settings: Arc::new(settings), engine, pre, hooks, warm: None }
    }

    /// This filter, keeping instances between calls in `warm`.
    pub(super) fn reusing(self, warm: WarmPool<Warm>) -> LoadedFilter {
        LoadedFilter { warm: Some(Arc::new(warm)), ..self }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether calls may run in an instance kept from an earlier one.
    pub fn reuses_instances(&self) -> bool {
        self.warm.is_some()
    }

    /// Asks the filter, in an instance of its own, whether it allows reuse (WIT
    /// `instances.reuse`, exported at `reuse`).
    pub(super) fn allows_reuse(&self, reuse: &ComponentExportIndex) -> Result<bool, FilterError> {
        let (mut store, _pipes) = self.store().map_err(|e| FilterError::Instantiate(format!("{e:#}")))?;
        let answer = self.pre.instance_pre().instantiate(&mut store).and_then(|instance| {
            let ask = instance.get_typed_func::<(), (bool,)>(&mut store, reuse)?;
            ask.call(&mut store, ())
        });
        // A wait cut at the deadline makes the answer a timeout, whatever came back after it.
        if store.data().waits.cut() {
            return Err(FilterError::Timeout(self.settings.limits.cpu));
        }
        answer.map(|(allowed,)| allowed).map_err(|e| self.classify(e))
    }

    /// Makes one instance and drops it, calling nothing: a reload swaps a filter in only once this
    /// works (README: "Reloading while serving"), so a component that traps at start-up or needs more memory than its
    /// limit never replaces a working one.
    pub fn try_instantiate(&self) -> Result<(), FilterError> {
        let (mut store, _pipes) = self.store().map_err(|e| FilterError::Instantiate(format!("{e:#}")))?;
        self.pre.instance_pre().instantiate(&mut store).map(drop).map_err(|e| self.classify(e))
    }

    /// Runs the `before` hook on `event` (JSON text).
    pub fn before(&self, event: &str) -> (Result<BeforeDecision, FilterError>, CallReport) {
        let limit = self.settings.limits.max_output_bytes;
        self.call(
            |instance, store| {
                let hook = instance.get_typed_func::<(&str,), HookResult<RawBefore>>(&mut *store, self.hooks.before)?;
                Ok(hook.call(&mut *store, (event,))?.0)
            },
            |verdict| match verdict {
                RawBefore::Pass => Ok(BeforeDecision::Pass),
                RawBefore::Drop => Ok(BeforeDecision::Drop),
                RawBefore::Answer(text) => tree(read(&text, limit)?).map(BeforeDecision::Answer),
                RawBefore::Rewrite(text) => object(checked(read(&text, limit)?)?).map(BeforeDecision::Rewrite),
            },
        )
    }

    /// Runs the `after` hook.
    pub fn after(
        &self,
        event: &str,
        status: u16,
        reply: Option<&str>,
    ) -> (Result<AfterDecision, FilterError>, CallReport) {
        let limit = self.settings.limits.max_output_bytes;
        let answer = WebhookAnswer { status, reply: reply.map(str::to_owned) };
        self.call(
            |instance, store| {
                let hook = instance
                    .get_typed_func::<(&str, &WebhookAnswer), HookResult<RawAfter>>(&mut *store, self.hooks.after)?;
                Ok(hook.call(&mut *store, (event, &answer))?.0)
            },
            |verdict| match verdict {
                RawAfter::Pass => Ok(AfterDecision::Pass),
                RawAfter::Drop => Ok(AfterDecision::Drop),
                RawAfter::Replace(text) => checked(read(&text, limit)?).map(AfterDecision::Replace),
            },
        )
    }

    /// One hook call: `invoke` calls the hook, `read` turns its verdict into a decision.
    fn call<R, V>(
        &self,
        invoke: impl FnOnce(&Instance, &mut Store<CallState>) -> wasmtime::Result<Result<R, String>>,
        read: impl FnOnce(R) -> Result<V, FilterError>,
    ) -> (Result<V, FilterError>, CallReport) {
        let mut report = CallReport::default();
        let started = Instant::now();
        let kept = self.warm.as_ref().and_then(|warm| warm.take());
        let Warm { mut store, pipes, instance } = match kept {
            Some(mut kept) => {
                let limit = self.settings.limits.cpu;
                kept.store.data_mut().waits.restart(limit);
                kept.store.set_epoch_deadline(epoch_ticks(limit));
                kept
            }
            None => {
                let (mut store, pipes) = match self.store() {
                    Ok(s) => s,
                    Err(e) => return (Err(FilterError::Instantiate(format!("{e:#}"))), report),
                };
                match self.pre.instance_pre().instantiate(&mut store) {
                    Ok(instance) => Warm { store, pipes, instance },
                    Err(e) => return (Err(self.classify(e)), report),
                }
            }
        };
        report.instantiate = started.elapsed();
        let call_started = Instant::now();
        let outcome = invoke(&instance, &mut store);
        let out_of_time = store.data().waits.cut();
        let mut refused_bytes = 0;
        let result = match outcome {
            Err(e) => Err(self.classify(e)),
            // A wait cut at the deadline: the guest may have returned before an epoch check.
            Ok(_) if out_of_time => Err(FilterError::Timeout(self.settings.limits.cpu)),
            Ok(Ok(verdict)) => read(verdict),
            Ok(Err(message)) => {
                refused_bytes = message.len();
                Err(FilterError::Returned(guest_text::cut_line(&message, guest_text::MAX_MESSAGE_BYTES)))
            }
        };
        if let Err(FilterError::OutputTooLarge { size, .. }) = &result {
            refused_bytes = *size;
        }
        report.call = call_started.elapsed();
        // The refused text's copy is freed by now; a guest that keeps returning its memory's worth
        // must not keep that much resident on every filter thread. Host work, so after the call's
        // time is taken.
        if refused_bytes >= crate::allocator::RETURN_AT_ONCE_BYTES {
            crate::allocator::return_freed_memory();
        }
        let mut log = std::mem::take(&mut store.data_mut().log);
        for (name, pipe, level) in [("stdout", &pipes.stdout, Level::Info), ("stderr", &pipes.stderr, Level::Warn)] {
            let (text, cut) = pipe.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                log.push(level, &format!("[{name}] {line}"));
            }
            if cut > 0 {
                log.push(
                    Level::Warn,
                    &format!("[{name}] … {cut} more bytes not kept: a call keeps {CAPTURED_OUTPUT_BYTES} bytes"),
                );
            }
        }
        report.logs = log.into_lines();
        let teardown = Instant::now();
        match &self.warm {
            // Only an instance whose call went well is kept: a trap or a limit may have left it
            // anywhere.
            Some(warm) if result.is_ok() && !store.data().limits.nearly_full(self.settings.limits.memory_bytes) => {
                warm.put(Warm { store, pipes, instance })
            }
            _ => drop(store),
        }
        report.teardown = teardown.elapsed();
        (result, report)
    }

    fn store(&self) -> anyhow::Result<(Store<CallState>, Pipes)> {
        let pipes =
            Pipes { stdout: GuestOutput::new(CAPTURED_OUTPUT_BYTES), stderr: GuestOutput::new(CAPTURED_OUTPUT_BYTES) };
        let waits = CallWaits::new(self.settings.limits.cpu);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(pipes.stdout.clone()).stderr(pipes.stderr.clone()).monotonic_clock(waits.clock);
        for (key, value) in &self.settings.grants.env {
            wasi.env(key, value);
        }
        for dir in &self.settings.grants.read_dirs {
            let guest_path = dir.to_string_lossy();
            wasi.preopened_dir(dir, guest_path.as_ref(), FsPerms::ReadOnly).map_err(anyhow::Error::from)?;
        }
        let limits = CallLimits {
            limits: StoreLimitsBuilder::new()
                .memory_size(self.settings.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            largest_memory: 0,
        };
        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            waits,
            limits,
            settings: self.settings.clone(),
            log: GuestLog::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(epoch_ticks(self.settings.limits.cpu));
        store.epoch_deadline_trap();
        Ok((store, pipes))
    }

    fn classify(&self, e: wasmtime::Error) -> FilterError {
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return FilterError::Timeout(self.settings.limits.cpu);
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
            return FilterError::Memory(self.settings.limits.memory_bytes);
        }
        // A trap's text holds the guest's own function names and panic message.
        FilterError::Trap(guest_text::cut_line(&text, guest_text::MAX_MESSAGE_BYTES))
    }
}

/// The memory limit of a call's store, and how far the guest's memory grew. A kept instance's
/// memory may creep up over many calls (a JavaScript engine's heap grew from 9 to ~68 MiB over
/// ~180,000 calls before it levelled off): one that has used most of its limit is not kept again,
/// so that no call fails for what earlier stanzas left behind.
struct CallLimits {
    limits: StoreLimits,
    largest_memory: usize,
}

/// Past this share of `memory_limit`, a kept instance is retired after its call.
const RETIRE_AT_PERCENT: usize = 75;

impl CallLimits {
    fn nearly_full(&self, limit: usize) -> bool {
        self.largest_memory > limit / 100 * RETIRE_AT_PERCENT
    }
}

impl wasmtime::ResourceLimiter for CallLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.largest_memory = self.largest_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
}

/// The epoch deadline for a call allowed `limit`.
fn epoch_ticks(limit: Duration) -> u64 {
    u64::try_from(limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_json_is_checked_without_being_rebuilt() {
        let text = r#"{ "body": "hi",  "extra": [1, 2.5e3, null] }"#;
        let checked = checked(text).expect("well formed");
        assert_eq!(checked.as_str(), text, "passed on byte for byte");
        assert!(object(checked).is_ok());
    }

    #[test]
    fn malformed_or_non_object_output_is_refused() {
        for bad in [
            "{this is not json",
            "{\"a\": \"raw\nnewline\"}",
            r#"{"a": 1} trailing"#,
            r#"{"a": "\x"}"#,
            "",
            r#"{"a": 1"#,
        ] {
            assert!(matches!(checked(bad), Err(FilterError::InvalidJson(_))), "{bad:?} is not JSON");
        }
        for not_object in ["[1]", "\"text\"", " 42", "null"] {
            let json = checked(not_object).expect("well formed");
            assert!(matches!(object(json), Err(FilterError::InvalidJson(_))), "{not_object} is no event");
        }
    }

    #[test]
    fn a_rewrite_nested_deeper_than_a_webhook_may_nest_is_refused() {
        let deep = format!("{{\"body\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(checked(&deep), Err(FilterError::InvalidJson(e)) if e.contains("recursion limit")));
        assert!(matches!(checked(r#"{"body": "\ud800"}"#), Err(FilterError::InvalidJson(_))), "a lone surrogate");
    }
}
