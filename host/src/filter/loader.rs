//! Turns the configured filters into a chain, at start and on every reload (README: "Reloading while serving"). It
//! remembers the version of each file it serves, so a reload compiles only files whose content
//! changed, and a file that no longer compiles or instantiates leaves its previous version
//! serving. Compiled components go through the disk cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use wasmtime::component::Component;

use super::cache::{CompileCache, content_hash};
use super::function_cache::FunctionCache;
use super::{FilterChain, FilterEngine, FilterSettings, LoadedFilter};

/// The version of a file a chain serves.
#[derive(Clone)]
struct Version {
    hash: String,
    component: Component,
}

pub struct FilterLoader {
    /// Made with the first filter: a config without filters never starts wasmtime.
    engine: Option<FilterEngine>,
    cache_dir: Option<PathBuf>,
    cache: Option<CompileCache>,
    /// The engine's compiled functions, kept beside the compiled components.
    functions: Arc<FunctionCache>,
    serving: HashMap<PathBuf, Version>,
}

impl std::fmt::Debug for FilterLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterLoader").field("serving", &self.serving.keys().collect::<Vec<_>>()).finish()
    }
}

/// A loaded chain, and what changed to make it.
#[derive(Debug)]
pub struct Loaded {
    pub chain: FilterChain,
    /// One line per filter file that got a new version, for the log.
    pub changes: Vec<String>,
    /// Files that failed and kept their previous version (already logged).
    pub kept: usize,
}

impl FilterLoader {
    /// `cache_dir`: where compiled filters are kept, if anywhere.
    pub fn new(cache_dir: Option<PathBuf>) -> FilterLoader {
        FilterLoader { engine: None, cache_dir, cache: None, functions: Arc::default(), serving: HashMap::new() }
    }

    /// Points the disk cache elsewhere (a reloaded config may move it).
    pub fn set_cache_dir(&mut self, dir: Option<PathBuf>) {
        if dir != self.cache_dir {
            self.cache_dir = dir;
            self.cache = None;
            if self.engine.is_some() {
                self.functions.set_dir(self.cache_dir.as_deref());
            }
        }
    }

    /// One filter on its own (`stanzahook filter run`), through the same compile cache as a
    /// served chain, so trying a filter after a restart or a `check` does not compile it again.
    /// Returns it with the line that says where its version came from.
    pub fn load_alone(&mut self, settings: FilterSettings) -> anyhow::Result<(LoadedFilter, String)> {
        let engine = self.engine()?;
        let (filter, _, change) = self.fresh(&engine, &settings, None)?;
        let change = change.unwrap_or_else(|| format!("filter `{}` ({})", settings.name, settings.path.display()));
        Ok((filter, change))
    }

    /// Loads the chain for `settings`, in order. A file that cannot be read, compiled or
    /// instantiated keeps its previous version if this loader served one (logged, once per
    /// content: a reload only looks again when the file changes); otherwise the load fails and
    /// nothing changes.
    pub fn load(&mut self, settings: &[FilterSettings]) -> anyhow::Result<Loaded> {
        if settings.is_empty() {
            self.serving.clear();
            return Ok(Loaded { chain: FilterChain::empty(), changes: Vec::new(), kept: 0 });
        }
        let engine = self.engine()?;
        let mut serving: HashMap<PathBuf, Version> = HashMap::new();
        let mut filters = Vec::with_capacity(settings.len());
        let mut changes = Vec::new();
        let mut kept = 0;
        for s in settings {
            // The same file twice in one chain (with other settings) is read and compiled once.
            if let Some(version) = serving.get(&s.path).cloned() {
                filters.push(engine.prepare(s.clone(), &version.component)?);
                continue;
            }
            let previous = self.serving.get(&s.path);
            let (filter, version) = match self.fresh(&engine, s, previous) {
                Ok((filter, version, change)) => {
                    changes.extend(change);
                    (filter, version)
                }
                Err(e) => {
                    let Some(previous) = previous else { return Err(e) };
                    tracing::warn!("{e:#}; its previous version keeps serving");
                    kept += 1;
                    let filter = engine.prepare(s.clone(), &previous.component)?;
                    (filter, previous.clone())
                }
            };
            serving.insert(s.path.clone(), version);
            filters.push(filter);
        }
        self.serving = serving;
        Ok(Loaded { chain: engine.chain(filters), changes, kept })
    }

    /// The filter as its file now is, and a line for the log when that is a new version.
    fn fresh(
        &self,
        engine: &FilterEngine,
        settings: &FilterSettings,
        previous: Option<&Version>,
    ) -> anyhow::Result<(LoadedFilter, Version, Option<String>)> {
        let what = format!("filter `{}` ({})", settings.name, settings.path.display());
        let started = Instant::now();
        let bytes = std::fs::read(&settings.path).with_context(|| format!("{what}: cannot read the file"))?;
        let hash = content_hash(&bytes);
        if let Some(previous) = previous.filter(|p| p.hash == hash) {
            let filter = engine.prepare(settings.clone(), &previous.component)?;
            return Ok((filter, previous.clone(), None));
        }
        let (component, (how, functions)) = match self.cache.as_ref().and_then(|c| c.get(engine.wasmtime(), &hash)) {
            Some(component) => (component, ("from the compile cache", String::new())),
            None => {
                let before = self.functions.counts();
                let component = engine.compile(&bytes).with_context(|| what.clone())?;
                let functions = self.functions.counts().since(before);
                if let Some(cache) = &self.cache
                    && let Err(e) = cache.put(&hash, &component)
                {
                    tracing::warn!("compile cache: cannot write to {}: {e:#}", cache.dir().display());
                }
                (component, ("compiled", functions.describe()))
            }
        };
        let filter = engine.prepare(settings.clone(), &component)?;
        filter.try_instantiate().with_context(|| format!("{what}: cannot start an instance"))?;
        // `compiled in 2400 ms, 31200 of 31450 functions from the function cache`
        let took = started.elapsed().as_millis();
        let change = format!("{what}: version {} {how} in {took} ms{functions}", &hash[..12]);
        Ok((filter, Version { hash, component }, Some(change)))
    }

    /// The engine, made on first use, with the disk cache opened for it.
    fn engine(&mut self) -> anyhow::Result<FilterEngine> {
        let engine = match &self.engine {
            Some(engine) => engine.clone(),
            None => {
                self.functions.set_dir(self.cache_dir.as_deref());
                let engine = FilterEngine::new(self.functions.clone())?;
                self.engine = Some(engine.clone());
                engine
            }
        };
        self.open_cache(&engine);
        Ok(engine)
    }

    fn open_cache(&mut self, engine: &FilterEngine) {
        if self.cache.is_some() {
            return;
        }
        let Some(dir) = &self.cache_dir else { return };
        match CompileCache::open(dir, engine.wasmtime()) {
            Ok(cache) => self.cache = Some(cache),
            Err(e) => {
                tracing::warn!("compile cache off: {e:#}");
                self.cache_dir = None;
            }
        }
    }

    /// The filter files being served with their versions, for the log: `path (version 0e6af67626a9)`.
    pub fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .serving
            .iter()
            .map(|(path, version)| format!("{} (version {})", path.display(), &version.hash[..12]))
            .collect();
        versions.sort();
        versions
    }

    /// The files of the chain being served.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.serving.keys().map(PathBuf::as_path)
    }
}
