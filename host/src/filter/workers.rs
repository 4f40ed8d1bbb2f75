//! The threads that run guests. Guests are CPU work that may spin up to their CPU limit, so they
//! stay off the async runtime's threads; a fixed pool, one thread per core, takes chain runs from
//! one queue. Under load a worker goes from one run to the next without sleeping: measured against
//! tokio's blocking pool behind a semaphore (a thread wake-up and a switch back per run), this
//! takes a third of the host CPU per filtered stanza away, most of it context switches.

use std::panic::AssertUnwindSafe;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct FilterWorkers {
    // The queue is unbounded, but each stanza in flight has at most one run queued, so the
    // pipeline's in-flight bound bounds it too.
    jobs: crossbeam_channel::Sender<Job>,
}

impl FilterWorkers {
    /// Starts `count` threads; they end when the pool is dropped and the queue is empty.
    pub fn start(count: usize) -> std::io::Result<FilterWorkers> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for index in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("filter-{index}")).spawn(move || {
                for job in queue {
                    // A panic in host code must not shrink the pool: the run's caller sees its
                    // result channel closed and reports it.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        }
        Ok(FilterWorkers { jobs })
    }

    /// Runs `work` on a worker, within the caller's tracing span. `None` if it panicked, which
    /// is logged.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (done, result) = oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move || {
            let _enter = span.enter();
            let _ = done.send(work());
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("the filter threads are gone");
            return None;
        }
        result.await.map_err(|_| tracing::error!("a filter chain run panicked; see the log above")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_and_survives_a_panic() {
        let workers = FilterWorkers::start(1).expect("threads");
        assert_eq!(workers.run(|| 2 + 2).await, Some(4));
        assert_eq!(workers.run(|| -> u32 { panic!("host bug") }).await, None);
        assert_eq!(workers.run(|| "still here").await, Some("still here"));
    }
}
