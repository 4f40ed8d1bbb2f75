//! What starts a reload: SIGHUP, always; and with `watch` on, a change to the config file or a filter file (README:
//! "Reloading while serving"). File events are not trusted one by one: a `cargo build` or an editor writes, renames and
//! writes again, so events are gathered until the files have been quiet for a moment, and the reload itself compares
//! contents, not events.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::reload::Reloader;

/// Files quiet this long after an event are taken as written.
pub const QUIET: Duration = Duration::from_millis(40);
/// A file that keeps changing is looked at after this long anyway.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Runs reloads until `shutdown`; `hangups` from `hangups()`.
pub fn spawn(reloader: Reloader, hangups: Hangups, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(reloader, hangups, shutdown))
}

async fn run(mut reloader: Reloader, mut hangups: Hangups, shutdown: CancellationToken) {
    let (events, mut incoming) = mpsc::unbounded_channel();
    let mut watch = Watch { watcher: None, dirs: BTreeSet::new(), files: BTreeSet::new(), events };
    watch.update(&reloader);
    loop {
        let cause = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = next_hangup(&mut hangups) => "SIGHUP",
            Some(event) = incoming.recv() => {
                if !watch.concerns(&event) {
                    continue;
                }
                settle(&mut incoming, |event| watch.concerns(event)).await;
                "a file changed"
            }
        };
        tracing::debug!("reloading: {cause}");
        reloader = match tokio::task::spawn_blocking(move || {
            reloader.reload();
            reloader
        })
        .await
        {
            Ok(reloader) => reloader,
            Err(e) => {
                tracing::error!("the reload task failed ({e}); reloading is off until a restart");
                return;
            }
        };
        watch.update(&reloader);
    }
}

/// Waits until no event that `concerns` a watched file has come for `QUIET` (at most
/// `MAX_WAIT`). Other files of the watched directories do not count: a log file written beside
/// the filters would otherwise hold every reload to `MAX_WAIT`.
async fn settle(incoming: &mut mpsc::UnboundedReceiver<notify::Event>, concerns: impl Fn(&notify::Event) -> bool) {
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    let mut quiet_until = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline.min(quiet_until), incoming.recv()).await {
        if concerns(&event) {
            quiet_until = tokio::time::Instant::now() + QUIET;
        }
    }
}

struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: BTreeSet<PathBuf>,
    files: BTreeSet<PathBuf>,
    events: mpsc::UnboundedSender<notify::Event>,
}

impl Watch {
    /// Watches the directories of the files the reloader reads (watching a directory, not a file,
    /// sees an editor's or `cargo`'s rename over the file), or nothing when `watch` is off.
    fn update(&mut self, reloader: &Reloader) {
        if !reloader.live().load().config.watch {
            if self.watcher.take().is_some() {
                tracing::info!("watching off");
            }
            self.dirs.clear();
            return;
        }
        self.files = reloader.watched_files().iter().filter_map(|f| std::path::absolute(f).ok()).collect();
        let dirs: BTreeSet<PathBuf> = self.files.iter().filter_map(|f| f.parent().map(Path::to_owned)).collect();
        if self.watcher.is_none() {
            let events = self.events.clone();
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let _ = events.send(event);
                }
                Err(e) => tracing::warn!("file watcher: {e}"),
            });
            match watcher {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(e) => {
                    tracing::warn!("cannot watch files ({e}); reload with SIGHUP");
                    return;
                }
            }
            self.dirs.clear();
        }
        let Some(watcher) = self.watcher.as_mut() else { return };
        for gone in self.dirs.difference(&dirs) {
            let _ = watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(e) = watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}", new.display());
            }
        }
        if dirs != self.dirs {
            let shown: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
            tracing::info!("watching {}", shown.join(", "));
        }
        self.dirs = dirs;
    }

    /// Whether the event may have changed a watched file. Reads are not changes (the reload
    /// reads the files itself).
    fn concerns(&self, event: &notify::Event) -> bool {
        let read_only = matches!(
            event.kind,
            EventKind::Access(AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read))
        );
        !read_only && event.paths.iter().any(|p| self.files.contains(p))
    }
}

/// SIGHUP, as `systemctl reload` sends it.
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangups = Option<()>;

/// Starts listening for SIGHUP, whose default action ends the process: call it first thing (in
/// the runtime), so that a reload sent while filters compile at start does not kill stanzahook.
pub fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).map_err(|e| tracing::warn!("cannot listen for SIGHUP: {e}")).ok()
    }
    #[cfg(not(unix))]
    None
}

async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        #[cfg(unix)]
        Some(signal) => signal.recv().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modified(path: &str) -> notify::Event {
        notify::Event::new(EventKind::Modify(notify::event::ModifyKind::Any)).add_path(PathBuf::from(path))
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_file_beside_the_watched_ones_does_not_delay_a_reload() {
        let (events, mut incoming) = mpsc::unbounded_channel();
        // A log file in the filters' directory, written every 10 ms for longer than MAX_WAIT.
        tokio::spawn(async move {
            for _ in 0..200 {
                if events.send(modified("/filters/app.log")).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let started = tokio::time::Instant::now();
        settle(&mut incoming, |event| event.paths.iter().any(|p| p == Path::new("/filters/live.wasm"))).await;
        let waited = started.elapsed();
        assert!(waited < QUIET * 2, "the reload waited {waited:?} for a file it does not read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_file_that_keeps_changing_is_read_after_max_wait() {
        let (events, mut incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for _ in 0..200 {
                if events.send(modified("/filters/live.wasm")).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let started = tokio::time::Instant::now();
        settle(&mut incoming, |event| event.paths.iter().any(|p| p == Path::new("/filters/live.wasm"))).await;
        let waited = started.elapsed();
        assert!(waited >= MAX_WAIT && waited < MAX_WAIT + QUIET, "waited {waited:?}");
    }
}
