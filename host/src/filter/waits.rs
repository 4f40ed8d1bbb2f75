//! A guest's waits end at its call's deadline. Waiting (`std::thread::sleep`, a poll with a
//! timeout) runs in the host, where epoch interruption does not reach, so a guest asleep for an
//! hour held a filter thread for an hour, whatever its CPU limit (measured: a 3 s sleep under a
//! 100 ms limit took 3,002 ms). Clocks are the only thing a guest can wait on (no network; files
//! and its output never block), so the host's clock subscriptions are replaced by ones that wake
//! at the deadline at the latest; a wait cut that way makes the call a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::HostMonotonicClock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::call::CallState;

/// The clock interface the replaced functions belong to, as wasmtime-wasi defines it; guests
/// importing an older 0.2 version are linked to it too. A wasmtime-wasi with another version here
/// would leave its own functions in place: the test
/// `filters::a_filter_waiting_past_its_time_limit_is_stopped_there` then fails.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces `subscribe-duration` and `subscribe-instant` of the linker's WASI with deadline-bound
/// ones. Call after adding WASI.
pub fn bound_clock_waits(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK).map_err(anyhow::Error::from)?;
    clock
        .func_wrap("subscribe-duration", |mut store: StoreContextMut<'_, CallState>, (nanos,): (u64,)| {
            let wait = Duration::from_nanos(nanos);
            Ok((store.data_mut().wait(wait)?,))
        })
        .map_err(anyhow::Error::from)
        .context("subscribe-duration")?;
    clock
        .func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, CallState>, (when,): (u64,)| {
            let state = store.data_mut();
            let wait = Duration::from_nanos(when.saturating_sub(state.waits.clock.now()));
            Ok((state.wait(wait)?,))
        })
        .map_err(anyhow::Error::from)
        .context("subscribe-instant")?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One call's deadline for waits, and whether a wait was cut by it.
pub struct CallWaits {
    deadline: Instant,
    cut: Arc<AtomicBool>,
    /// The guest's monotonic clock: nanoseconds since the call's store was made.
    pub clock: CallClock,
}

impl CallWaits {
    pub fn new(limit: Duration) -> CallWaits {
        let now = Instant::now();
        CallWaits {
            deadline: now.checked_add(limit).unwrap_or(now + Duration::from_secs(86_400)),
            cut: Arc::default(),
            clock: CallClock { started: now },
        }
    }

    /// A new call in the same instance: a new deadline, nothing cut yet; the guest's clock goes on.
    pub fn restart(&mut self, limit: Duration) {
        let fresh = CallWaits::new(limit);
        self.deadline = fresh.deadline;
        self.cut = fresh.cut;
    }

    /// Whether the guest waited until the deadline: its call ran out of time, even if the guest
    /// got to return before the next epoch check.
    pub fn cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl CallState {
    fn wait(&mut self, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let wanted = Instant::now().checked_add(wait);
        let deadline = self.waits.deadline;
        let wake = match wanted {
            Some(at) if at <= deadline => Wake { at: at.into(), cut: None },
            _ => Wake { at: deadline.into(), cut: Some(self.waits.cut.clone()) },
        };
        let wake = self.table.push(wake)?;
        subscribe(&mut self.table, wake)
    }
}

/// The pollable a guest's clock subscription becomes.
struct Wake {
    at: tokio::time::Instant,
    /// Set once the wait reached the call's deadline instead of the guest's own time.
    cut: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Wake {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.at).await;
        if let Some(cut) = &self.cut {
            cut.store(true, Ordering::Relaxed);
        }
    }
}

/// The guest's monotonic clock, counting from its call's start, so that `subscribe-instant`
/// reads the same clock the guest does.
#[derive(Clone, Copy)]
pub struct CallClock {
    started: Instant,
}

impl HostMonotonicClock for CallClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
