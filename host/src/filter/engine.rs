//! The wasmtime engine, configured once: component model, epoch interruption for CPU limits, the
//! pooling allocator (copy-on-write memory images make a fresh instance per call cheap), and one
//! linker with WASI preview 2 and the host imports.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::FilterSettings;
use super::bindings::FilterPre;
use super::call::{CallState, Hooks, LoadedFilter};
use super::chain::FilterChain;
use super::compile_threads::CompileThreads;
use super::function_cache::FunctionCache;
use super::warm::{WarmBudget, WarmPool};
use super::workers::FilterWorkers;

/// How often the epoch advances: the granularity of the CPU limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Filter calls running at once, one per filter thread: one per core (more gains nothing; measured
/// 2 against 16 on two cores), which also keeps the instance pool and its resident memory small.
pub fn max_concurrent_calls() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16)
}
/// Instances all filters together may keep between calls (`warm.rs`), beside the pool's room
/// for the calls in flight. Each holds a pool slot and its memory.
const WARM_BUDGET: usize = 16;
/// The export through which a filter says whether its instances may be kept (WIT
/// `instances.reuse`, since 0.1.1).
const INSTANCES_EXPORT: &str = "stanzahook:filter/instances@0.1.1";
/// Memory per pool slot kept resident between instances; only its dirty pages are reset.
const KEEP_RESIDENT_BYTES: usize = 8 << 20;
/// The largest linear memory any filter may be given.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

#[derive(Clone)]
pub struct FilterEngine {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    workers: Arc<FilterWorkers>,
    warm_budget: Arc<WarmBudget>,
    compile_threads: Arc<CompileThreads>,
}

impl std::fmt::Debug for FilterEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilterEngine")
    }
}

impl FilterEngine {
    /// `functions`: where cranelift keeps compiled functions for the next compile (its directory
    /// may be set or moved later).
    pub fn new(functions: Arc<FunctionCache>) -> anyhow::Result<FilterEngine> {
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component holds a handful of core instances, memories and tables.
        let in_flight = u32::try_from(max_concurrent_calls() * 2).unwrap_or(32);
        let instances = in_flight + u32::try_from(WARM_BUDGET).unwrap_or(0);
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 4)
            .total_tables(instances * 8)
            .max_memory_size(MAX_MEMORY_BYTES)
            // Resetting a slot with madvise shoots down TLB entries on every core the process
            // runs on (measured: a fifth of all CPU time under load). Keeping memory resident and
            // asking the kernel which pages are dirty (PAGEMAP_SCAN, Linux 6.7+) resets only
            // those, with memset; older kernels fall back to madvise.
            .pagemap_scan(Enabled::Auto)
            // Resident slots cost memory: keep no more warm than calls can run at once.
            .max_unused_warm_slots(in_flight)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 64);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .enable_incremental_compilation(functions)
            .map_err(anyhow::Error::from)
            .context("cannot set up the function cache")?;
        let engine =
            Engine::new(&config).map_err(anyhow::Error::from).context("cannot set up the WebAssembly engine")?;
        start_epoch_ticker(&engine).context("cannot start the timer that enforces filter CPU limits")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from).context("cannot link WASI")?;
        super::waits::bound_clock_waits(&mut linker).context("cannot bound the guests' clock waits")?;
        super::bindings::add_to_linker(&mut linker).context("cannot link the host imports")?;
        let workers = FilterWorkers::start(max_concurrent_calls()).context("cannot start the filter threads")?;
        let warm_budget = WarmBudget::new(WARM_BUDGET);
        let compile_threads = Arc::new(CompileThreads::start(max_concurrent_calls())?);
        Ok(FilterEngine { engine, linker: Arc::new(linker), workers: Arc::new(workers), warm_budget, compile_threads })
    }

    /// A chain of filters loaded by this engine, run on its threads.
    pub fn chain(&self, filters: Vec<LoadedFilter>) -> FilterChain {
        FilterChain::new(filters, self.workers.clone())
    }

    /// Compiles the filter's file and pre-instantiates it: the expensive part, done once.
    pub fn load(&self, settings: FilterSettings) -> anyhow::Result<LoadedFilter> {
        let bytes = std::fs::read(&settings.path)
            .with_context(|| format!("filter `{}`: cannot read {}", settings.name, settings.path.display()))?;
        self.load_bytes(settings, &bytes)
    }

    pub fn load_bytes(&self, settings: FilterSettings, bytes: &[u8]) -> anyhow::Result<LoadedFilter> {
        let component = self.compile(bytes).with_context(|| describe(&settings))?;
        self.prepare(settings, &component)
    }

    /// Compiles a component for this engine: cranelift, seconds for a large guest in a debug
    /// build, so never on the async thread, and on the compile threads, below the priority of
    /// the stanzas being served.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        if let Some(what) = not_a_component(bytes) {
            anyhow::bail!("not a WebAssembly component: {what}");
        }
        self.compile_threads
            .run(|| Component::new(&self.engine, bytes))
            // wasmtime's error spans lines (a cause per line): one line for the log.
            .map_err(|e| anyhow::anyhow!("{}", format!("{e:#}").replace('\n', " ")))
            .context("not a WebAssembly component this host can compile")
    }

    /// Links a compiled component against the host's imports and checks it is a filter; asks a
    /// filter that exports `instances` whether its instances may be kept, unless its settings
    /// refuse that anyway.
    pub fn prepare(&self, settings: FilterSettings, component: &Component) -> anyhow::Result<LoadedFilter> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{}: imports something stanzahook does not offer", describe(&settings)))?;
        let pre = FilterPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{}: does not implement the stanzahook:filter@0.1 world", describe(&settings)))?;
        // `FilterPre::new` checked that both are exported with the WIT's types.
        let hook = |name| component.get_export_index(None, name);
        let (Some(before), Some(after)) = (hook("before"), hook("after")) else {
            anyhow::bail!("{}: does not export the `before` and `after` hooks", describe(&settings));
        };
        let reuse = component
            .get_export_index(None, INSTANCES_EXPORT)
            .and_then(|instances| component.get_export_index(Some(&instances), "reuse"))
            .filter(|_| settings.reuse_instances);
        let filter = LoadedFilter::new(settings, self.engine.clone(), pre, Hooks { before, after });
        let Some(reuse) = reuse else { return Ok(filter) };
        // Only a clear yes keeps instances: a `reuse()` that fails or runs out of time is a no.
        let allowed = filter.allows_reuse(&reuse).unwrap_or_else(|e| {
            tracing::warn!("{}: its reuse() {e}; each call gets a fresh instance", describe(&filter.settings));
            false
        });
        Ok(if allowed {
            filter.reusing(WarmPool::new(max_concurrent_calls(), self.warm_budget.clone()))
        } else {
            filter
        })
    }

    pub(super) fn wasmtime(&self) -> &Engine {
        &self.engine
    }
}

/// What a file that cannot be a component is, said so that its author knows what to do; `None`
/// for the preamble of a component (the version and layer of the binary format say which).
fn not_a_component(bytes: &[u8]) -> Option<String> {
    const BUILD: &str = "build the filter as a component: `cargo build --target wasm32-wasip2 --release` \
                         (the Rust SDK), componentize-py or componentize-js";
    let Some(preamble) = bytes.get(..8) else {
        return Some(format!("the file has {} bytes, too few for WebAssembly; {BUILD}", bytes.len()));
    };
    if &preamble[..4] != b"\0asm" {
        let start = String::from_utf8_lossy(&preamble[..4]).escape_debug().to_string();
        return Some(format!("the file is not WebAssembly at all (it starts with \"{start}\"); {BUILD}"));
    }
    match preamble[4..8] {
        // Layer 0: a core module (`cargo build --target wasm32-unknown-unknown` or wasip1).
        [1, 0, 0, 0] => Some(format!(
            "the file is a core WebAssembly module, not a component (a wasm32-wasip1 or \
             wasm32-unknown-unknown build?); {BUILD}"
        )),
        _ => None,
    }
}

fn describe(settings: &FilterSettings) -> String {
    format!("filter `{}` ({})", settings.name, settings.path.display())
}

/// Advances the engine's epoch every tick for as long as the engine lives. Without it no guest
/// could be interrupted, so failing to start it fails the engine.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new().name("filter-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(())
}
