//! The threads filters are compiled on: wasmtime compiles a component's functions in parallel on
//! rayon, which by default takes every core at the priority of the stanzas being served, so a
//! reload under load held stanzas up (measured: up to ~90 ms on two cores, 19 ms idle). Here the
//! compiling happens in a rayon pool of its own whose threads run at a lower CPU priority: when
//! stanzas need the cores they get them, and compiling takes what is left.

use anyhow::Context;

/// The compile threads' nice value (0 is the default, 19 the lowest priority). Under contention
/// a thread at 10 gets about a tenth of the CPU a thread at 0 gets: the stanzas keep their
/// cores, and a reload on a busy machine still finishes, only slower.
pub const COMPILE_NICE: i32 = 10;

/// A rayon pool for compiling, its threads named `filter-compile-N` and niced.
#[derive(Debug)]
pub struct CompileThreads {
    pool: rayon::ThreadPool,
}

impl CompileThreads {
    pub fn start(threads: usize) -> anyhow::Result<CompileThreads> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("filter-compile-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .context("cannot start the filter compile threads")?;
        Ok(CompileThreads { pool })
    }

    /// Runs `work` on the pool: wasmtime's parallel compilation inside it uses the pool's threads
    /// (rayon runs nested parallel work in the pool it is called from).
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }
}

/// Lowers the calling thread's CPU priority (Linux keeps a nice value per thread). Failing is
/// harmless: the thread compiles at the normal priority, as it would without this pool.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), COMPILE_NICE) {
            tracing::debug!("cannot lower the priority of a filter compile thread: {e}");
        }
    }
}
