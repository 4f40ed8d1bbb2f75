//! `stanzahook dev`: the edit loop of a filter author (README: "The development loop"). It serves
//! like `stanzahook run --dev` and adds two things. Every filter that names a `source` is built
//! before serving and rebuilt whenever a file under its source is saved (`build.rs`); the new
//! file is then swapped in by the reload that `--dev`'s watching starts for any changed filter
//! file. And test messages can be sent without an XMPP client (`inject.rs`): a line typed at the
//! prompt, or `POST /inject`.

mod build;
mod inject;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use build::Build;
pub use inject::{Injector, merge};

use crate::Config;

/// After a save, how long the source must stay quiet before the build starts: an editor's save
/// is often several writes (a temporary file, a rename, a backup).
const SETTLE: Duration = Duration::from_millis(100);

/// The source checkout this binary was built from: its `guest-sdk/` (with the JavaScript build's
/// installed dependencies) and `wit/` are used where they still are.
const CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The WIT and the SDKs this binary was built with, written out for the build commands when the
/// checkout is gone, so a filter is always built against the interface the host serves.
const SDK_FILES: [(&str, &str); 5] = [
    ("wit/filter.wit", include_str!("../../../wit/filter.wit")),
    ("guest-sdk/python/stanzahook_filter.py", include_str!("../../../guest-sdk/python/stanzahook_filter.py")),
    ("guest-sdk/js/stanzahook-filter.js", include_str!("../../../guest-sdk/js/stanzahook-filter.js")),
    ("guest-sdk/js/stanzahook-filter.d.ts", include_str!("../../../guest-sdk/js/stanzahook-filter.d.ts")),
    ("guest-sdk/js/build.mjs", include_str!("../../../guest-sdk/js/build.mjs")),
];

/// The builds of a config's filters, and the SDK directory they build against.
#[derive(Debug)]
pub struct DevLoop {
    builds: Vec<Build>,
    sdk: PathBuf,
}

impl DevLoop {
    /// The builds of every filter that names a `source` (none is fine: files are still reloaded
    /// as they change), with the SDK written out beside the compile cache.
    pub fn new(config: &Config) -> anyhow::Result<DevLoop> {
        let mut builds = Vec::new();
        for filter in &config.filters {
            if let Some(source) = &filter.source {
                builds.push(Build::of(filter, source)?);
            }
        }
        let sdk = write_sdk(config.compile_cache.as_deref())?;
        Ok(DevLoop { builds, sdk })
    }

    /// Builds every filter before serving. A failed build whose filter file is there from an
    /// earlier one is said and serves that file; without a file it is the error.
    pub fn build_all(&self) -> anyhow::Result<()> {
        if self.builds.is_empty() {
            tracing::info!(
                "dev: no filter names a `source`, so nothing is built; filter files reload when they change"
            );
        }
        for build in &self.builds {
            tracing::info!("dev: building filter `{}`: {} (in {})", build.filter, build.command, build.dir.display());
            match build.run(&self.sdk) {
                Ok(took) => tracing::info!("dev: built filter `{}` in {:.1} s", build.filter, took.as_secs_f64()),
                Err(e) if build.path.is_file() => {
                    tracing::warn!("{e:#}\ndev: serving the filter's earlier build, {}", build.path.display());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Rebuilds a filter whenever a file of its source is saved, until `shutdown`.
    pub fn spawn_rebuilds(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if self.builds.is_empty() {
            return Ok(());
        }
        let (events, mut incoming) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !matches!(event.kind, notify::EventKind::Access(_))
            {
                for path in event.paths {
                    let _ = events.send(path);
                }
            }
        })
        .context("cannot watch the filters' sources")?;
        for build in &self.builds {
            watcher
                .watch(&build.dir, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", build.dir.display()))?;
        }
        let DevLoop { builds, sdk } = self;
        let builds = Arc::new(builds);
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(path) = incoming.recv() => path,
                };
                let mut saved = BTreeSet::from([first]);
                while let Ok(Some(path)) = tokio::time::timeout(SETTLE, incoming.recv()).await {
                    saved.insert(path);
                }
                let due: Vec<usize> =
                    (0..builds.len()).filter(|&i| saved.iter().any(|p| builds[i].concerns(p))).collect();
                for i in due {
                    let (builds, sdk) = (builds.clone(), sdk.clone());
                    let names =
                        saved.iter().filter(|p| builds[i].concerns(p)).map(|p| file_name(p)).collect::<Vec<_>>();
                    tracing::info!("dev: {} saved; rebuilding filter `{}`", names.join(", "), builds[i].filter);
                    let built =
                        tokio::task::spawn_blocking(move || builds[i].run(&sdk).map(|t| (builds[i].filter.clone(), t)));
                    match built.await {
                        Ok(Ok((filter, took))) => {
                            tracing::info!(
                                "dev: rebuilt filter `{filter}` in {:.1} s; swapping it in",
                                took.as_secs_f64()
                            )
                        }
                        Ok(Err(e)) => tracing::warn!("{e:#}\ndev: the filter's earlier version keeps serving"),
                        Err(e) => tracing::error!("dev: the build task failed: {e}"),
                    }
                }
                // What the builds wrote themselves (and saves during a build) is looked at again.
            }
        });
        Ok(())
    }
}

/// Reads lines at the prompt and sends each as a test message, until standard input ends.
pub fn spawn_prompt(injector: Arc<Injector>) {
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        "dev: type a line and press Enter to send it as a message from {} to {}; its way is logged below",
        injector.from,
        injector.to
    );
    let spawned = std::thread::Builder::new().name("dev-prompt".into()).spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            let body = line.trim();
            if body.is_empty() {
                continue;
            }
            if let Err(e) = runtime.block_on(injector.message(body, None, None)) {
                tracing::warn!("dev: {e:#}");
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("dev: cannot read the prompt: {e}");
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// The directory holding `wit/` and `guest-sdk/` for the builds: the checkout this binary was
/// built from if it is still there, else `SDK_FILES` written under the compile cache's directory
/// (or the temporary directory), anew at every start: a few kilobytes, never stale after an
/// upgrade. (The JavaScript build then finds componentize-js in the filter's own node_modules.)
fn write_sdk(compile_cache: Option<&Path>) -> anyhow::Result<PathBuf> {
    let checkout = Path::new(CHECKOUT);
    if SDK_FILES.iter().all(|(name, _)| checkout.join(name).is_file()) {
        return Ok(checkout.canonicalize().unwrap_or_else(|_| checkout.to_owned()));
    }
    let base = match compile_cache {
        Some(dir) => dir.to_owned(),
        None => std::env::temp_dir().join(format!("stanzahook-{}", std::process::id())),
    };
    let dir = base.join(format!("sdk-{}", env!("CARGO_PKG_VERSION")));
    for (name, text) in SDK_FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}
