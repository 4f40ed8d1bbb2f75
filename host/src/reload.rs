//! Reloading (README: "Reloading while serving"): reads the config file and the filter files again, and when something
//! changed, builds a new `Live` snapshot and swaps it in whole. What cannot be applied is
//! reported and leaves the current snapshot serving: a config file with a mistake, a filter that
//! no longer compiles, settings that need a new XMPP connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::config::{Config, ConfigSource};
use crate::filter::{FilterLoader, content_hash};
use crate::live::{Live, LiveCell};

#[derive(Debug)]
pub struct Reloader {
    source: ConfigSource,
    loader: FilterLoader,
    live: LiveCell,
    /// The content hash of the config file as last applied (or as last refused for a mistake in
    /// it), so a reload looks at a changed file once. A config that parsed but whose filters
    /// failed is not recorded: it is tried again at the next reload, when its filters may work.
    config_hash: Option<String>,
    /// The filter files of the newest config read, loaded or not: a filter that a config adds and
    /// that does not compile yet must be watched, so that its fix is seen.
    wanted: Vec<PathBuf>,
}

/// What a reload did, for the caller's log line and for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing changed on disk.
    Unchanged,
    /// A new snapshot serves.
    Swapped,
    /// Something was wrong; the current snapshot keeps serving (logged).
    Kept,
}

impl Reloader {
    /// Loads the config and compiles its filters: the start-up path, so any failure is the
    /// caller's to report (and exit on). Blocking: compiling takes a while.
    pub fn start(source: ConfigSource) -> anyhow::Result<Reloader> {
        let config = source.load()?;
        let config_hash = source.file.as_deref().and_then(|f| std::fs::read(f).ok()).map(|b| content_hash(&b));
        let mut loader = FilterLoader::new(config.compile_cache.clone());
        let loaded = loader.load(&config.filters)?;
        for change in &loaded.changes {
            tracing::info!("{change}");
        }
        let wanted = config.filters.iter().map(|f| f.path.clone()).collect();
        let live = Live::new(config, loaded.chain).context("cannot set up the HTTP client")?;
        Ok(Reloader { source, loader, live: live.into_cell(), config_hash, wanted })
    }

    pub fn live(&self) -> LiveCell {
        self.live.clone()
    }

    /// The files whose change should trigger a reload: the config file, every filter's being
    /// served, and those of a newer config still waiting for its filters.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.loader.files().map(PathBuf::from).collect();
        files.extend(self.wanted.iter().cloned());
        files.extend(self.source.file.clone());
        files.sort();
        files.dedup();
        files
    }

    /// Looks at the config file and the filter files again, and swaps in a new snapshot if any
    /// changed and all of it loads. Blocking.
    pub fn reload(&mut self) -> Reloaded {
        let started = Instant::now();
        let current = self.live.load_full();
        // A config file with a mistake fails the reload like a filter that does not compile;
        // changed filter files still load below, with the settings that keep serving.
        let reread = self.reread_config(&current.config);
        let config_refused = matches!(reread, Reread::Refused);
        if config_refused {
            crate::metrics::metrics().reload("failed");
        }
        // One reload counts as failed once, whatever failed in it.
        let failed = || {
            if !config_refused {
                crate::metrics::metrics().reload("failed");
            }
            Reloaded::Kept
        };
        let (config, new_config_hash) = match reread {
            Reread::Changed(config, hash) => (*config, Some(hash)),
            Reread::Unchanged | Reread::Refused => ((*current.config).clone(), None),
        };
        let config_changed = new_config_hash.is_some();
        self.loader.set_cache_dir(config.compile_cache.clone());
        let loaded = match self.loader.load(&config.filters) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!("reload not applied: {e:#}; the current filters keep serving");
                return failed();
            }
        };
        if !config_changed && loaded.changes.is_empty() {
            if loaded.kept > 0 || config_refused {
                return failed();
            }
            // Said, not silent: a file saved back as it was (a broken build undone, a touch)
            // otherwise looks like a reload that never happened.
            let versions = self.loader.versions();
            let filters = if versions.is_empty() { "no filters".to_owned() } else { versions.join(", ") };
            tracing::info!("reload: nothing changed; serving the config and filters as before: {filters}");
            return Reloaded::Unchanged;
        }
        let webhook = if config_changed {
            match crate::webhook::Webhook::new(config.post_url.clone(), &config.webhook) {
                Ok(webhook) => webhook,
                Err(e) => {
                    tracing::warn!("reload not applied: cannot set up the HTTP client: {e:#}");
                    return failed();
                }
            }
        } else {
            current.webhook.clone()
        };
        let names = loaded.chain.names().join(" → ");
        if new_config_hash.is_some() {
            self.config_hash = new_config_hash;
        }
        self.live.store(Arc::new(Live { config: Arc::new(config), webhook, filters: Arc::new(loaded.chain) }));
        let mut what = loaded.changes;
        if config_changed {
            what.insert(0, "config".into());
        }
        crate::metrics::metrics().reload("swapped");
        tracing::info!(
            "reloaded in {} ms: {}; filters: {}",
            started.elapsed().as_millis(),
            what.join("; "),
            if names.is_empty() { "none" } else { &names }
        );
        Reloaded::Swapped
    }

    /// The config file again, with its content hash, if its content changed and it can be used.
    /// A file with a mistake is logged (and counted) once: the same content is not looked at
    /// again.
    fn reread_config(&mut self, current: &Config) -> Reread {
        let Some(file) = self.source.file.as_ref() else { return Reread::Unchanged };
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Mid-rename by an editor, most likely: the next event brings it back.
                tracing::debug!("cannot read {}: {e}", file.display());
                return Reread::Unchanged;
            }
        };
        let hash = content_hash(&bytes);
        if self.config_hash.as_deref() == Some(hash.as_str()) {
            return Reread::Unchanged;
        }
        let config = match self.source.load() {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!("reload not applied: {e}; the current settings keep serving");
                self.config_hash = Some(hash);
                return Reread::Refused;
            }
        };
        self.wanted = config.filters.iter().map(|f| f.path.clone()).collect();
        let frozen = current.restart_required(&config);
        if !frozen.is_empty() {
            tracing::warn!(
                "config change to {} needs a restart; until then they keep their current values",
                frozen.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            );
        }
        Reread::Changed(Box::new(current.with_connection_of(config)), hash)
    }
}

/// What reading the config file again found.
enum Reread {
    /// The same content as last time, or no file to read.
    Unchanged,
    /// New content that can be applied, and its hash.
    Changed(Box<Config>, String),
    /// New content with a mistake (logged).
    Refused,
}
