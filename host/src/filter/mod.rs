//! Filters: WebAssembly components that reshape the event before the webhook call and
//! the reply after it. `engine` owns wasmtime, `call` runs one hook in a fresh instance (or one
//! `warm` kept, for a filter that allows reuse) under limits (its waits ending at the deadline, by
//! `waits`), keeping what the guest says within `guest_log`'s budget and reading what it returns
//! through `guest_text`'s checks; `chain` runs the configured filters in order and applies each
//! one's `on_error`, `workers` are the threads the chain runs on, `loader` makes chains at start
//! and on reload, through `cache`, the compiled filters on disk, compiled on `compile_threads`
//! through `function_cache`, the compiled functions on disk (an edited interpreter filter
//! recompiles only what changed).

mod bindings;
mod cache;
mod call;
pub mod cases;
mod chain;
mod compile_threads;
mod engine;
mod function_cache;
mod guest_log;
mod guest_text;
mod loader;
pub mod local;
mod waits;
mod warm;
mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use cache::{CompileCache, content_hash};
pub use call::{AfterDecision, BeforeDecision, CallReport, FilterError, JsonText, LoadedFilter};
pub use chain::{AfterOutcome, BeforeOutcome, FilterChain, Trail, Verdict};
pub use engine::{FilterEngine, MAX_MEMORY_BYTES};
pub use function_cache::{FunctionCache, FunctionCounts};
pub use loader::{FilterLoader, Loaded};

pub use bindings::Level;

/// One configured filter, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSettings {
    /// Names the filter in logs; defaults to the file's stem.
    pub name: String,
    pub path: PathBuf,
    /// The `[filter.config]` table, readable by the guest through the host.
    pub config: BTreeMap<String, String>,
    pub limits: FilterLimits,
    pub on_error: OnError,
    pub grants: Grants,
    /// Whether an instance may be kept between calls when the filter says it may (WIT
    /// `instances.reuse`); `false` gives this filter a fresh instance per call whatever it says.
    pub reuse_instances: bool,
    /// Where the filter is built from, for `stanzahook dev`; the other commands ignore it.
    pub source: Option<FilterSource>,
}

/// A filter's source directory and the command that builds it into the filter's `path`
/// (README: "The development loop").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSource {
    pub dir: PathBuf,
    /// A shell command run in `dir`; `None` goes by what the directory holds (`Cargo.toml`,
    /// `app.py`, `filter.js`).
    pub build: Option<String>,
}

/// Per-call limits (README: "Filters").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterLimits {
    pub cpu: Duration,
    pub memory_bytes: usize,
    pub max_output_bytes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits { cpu: Duration::from_millis(100), memory_bytes: 64 << 20, max_output_bytes: 1 << 20 }
    }
}

/// What happens when a filter traps, exceeds a limit or returns an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Go on as if the filter were absent.
    #[default]
    Skip,
    /// Answer the sender with `internal-server-error`.
    Reject,
}

/// WASI capabilities granted explicitly; none by default (README: "Filters").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables the guest sees.
    pub env: BTreeMap<String, String>,
    /// Host directories the guest may read, visible under the same path.
    pub read_dirs: Vec<PathBuf>,
}

impl FilterSettings {
    /// A filter with default settings, as `--filter PATH` adds it.
    pub fn from_path(path: PathBuf) -> FilterSettings {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "filter".into());
        FilterSettings {
            name,
            path,
            config: BTreeMap::new(),
            limits: FilterLimits::default(),
            on_error: OnError::default(),
            grants: Grants::default(),
            reuse_instances: true,
            source: None,
        }
    }
}
