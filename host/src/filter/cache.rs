//! Compiled filters on disk (README: "Reloading while serving"), so a restart does not recompile: one file per
//! component, named by the SHA-256 of the `.wasm` and by the engine's compatibility hash (wasmtime version, compiler
//! and settings). Loading machine code from a file is only sound for files this program wrote, so the cache trusts a
//! file only when it and its directory belong to this user and no one else may write them; wasmtime checks the
//! artefact's header against the engine as well.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// An entry not loaded for this long is removed when a cache is opened.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 86_400);
/// A `.partial` file this old was left by a writer that did not finish.
const PARTIAL_FOR: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// The engine's compatibility hash, hex: artefacts of another engine are never looked at.
    engine_key: String,
}

/// The SHA-256 of some bytes, hex: keys the cache, tells a reload whether a file changed, and
/// names a delivery (`webhook-id`).
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl CompileCache {
    /// Opens (creating it, mode 0700) the cache directory; refuses one that others could write.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<CompileCache> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        trusted(dir)?;
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let cache = CompileCache { dir: dir.to_owned(), engine_key: hex(&hasher.0.finalize()[..8]) };
        cache.prune();
        Ok(cache)
    }

    /// Every rebuild of a filter adds an entry: entries unused for `UNUSED_FOR` go (a hit
    /// refreshes an entry's time), and so do files a crashed writer left half-written.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let limit = if name.ends_with(".cwasm") {
                UNUSED_FOR
            } else if name.ends_with(".partial") {
                PARTIAL_FOR
            } else {
                continue;
            };
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_some_and(|age| age > limit) && fs::remove_file(entry.path()).is_ok() {
                tracing::debug!("compile cache: removed {name}, unused for {} days", limit.as_secs() / 86_400);
            }
        }
    }

    /// Where the cache lives unless the config says otherwise: systemd's `CacheDirectory=`, then
    /// the XDG cache directory.
    pub fn default_dir() -> Option<PathBuf> {
        crate::config::standard_dir("CACHE_DIRECTORY", "XDG_CACHE_HOME", ".cache")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, wasm_hash: &str) -> PathBuf {
        self.dir.join(format!("{wasm_hash}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for the `.wasm` with this hash, if this program cached it.
    pub fn get(&self, engine: &Engine, wasm_hash: &str) -> Option<Component> {
        let path = self.path_for(wasm_hash);
        if !path.exists() {
            return None;
        }
        if let Err(e) = trusted(&path).and_then(|()| trusted(&self.dir)) {
            tracing::warn!("compile cache: ignoring {}: {e:#}", path.display());
            return None;
        }
        match load(engine, &path) {
            Ok(component) => {
                // Marks the entry used, for `prune`.
                let _ = fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                // Written by another build of the same version, or damaged: compile anew and
                // overwrite it.
                tracing::debug!("compile cache: cannot load {}: {e:#}", path.display());
                None
            }
        }
    }

    /// Stores a compiled component: written aside, then renamed into place, so a reader never
    /// sees half a file.
    pub fn put(&self, wasm_hash: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let path = self.path_for(wasm_hash);
        let partial = self.dir.join(format!(".{wasm_hash}.{}.partial", std::process::id()));
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&partial, &path)?;
        Ok(())
    }
}

#[allow(unsafe_code)]
fn load(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: `deserialize_file` runs the file as machine code, so it must be an artefact that
    // `Component::serialize` produced. The file is one this program wrote with `put`: it is in a
    // directory and owned by this user, neither writable by anyone else (checked by `trusted`
    // just before), and named by the engine's compatibility hash; wasmtime also checks the
    // artefact's header against this engine and refuses a mismatch.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

/// Accepts a path owned by the current user and not writable by group or others.
pub(super) fn trusted(path: &Path) -> anyhow::Result<()> {
    let me = fs::metadata("/proc/self").context("cannot tell who this process runs as")?.uid();
    let meta = fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!("{} is a symbolic link", path.display());
    }
    if meta.uid() != me {
        bail!("{} belongs to another user", path.display());
    }
    if meta.permissions().mode() & 0o022 != 0 {
        bail!("{} is writable by group or others", path.display());
    }
    Ok(())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` output into SHA-256, so the key does not depend on std's unstable hasher.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).expect("engine")
    }

    #[test]
    fn a_stored_component_comes_back_and_a_tampered_one_does_not() {
        let engine = engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::open(&dir.path().join("cache"), &engine).expect("opens");
        let hash = content_hash(EMPTY_COMPONENT);
        assert!(cache.get(&engine, &hash).is_none());
        let component = Component::new(&engine, EMPTY_COMPONENT).expect("compiles");
        cache.put(&hash, &component).expect("stores");
        assert!(cache.get(&engine, &hash).is_some(), "stored, then loaded");

        let file = cache.path_for(&hash);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(cache.get(&engine, &hash).is_none(), "a file others may write is not trusted");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&file, b"garbage").expect("overwrite");
        assert!(cache.get(&engine, &hash).is_none(), "a damaged file is compiled anew");
    }

    #[test]
    fn entries_unused_for_a_month_are_removed_on_open() {
        let engine = engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::open(dir.path(), &engine).expect("opens");
        let component = Component::new(&engine, EMPTY_COMPONENT).expect("compiles");
        for hash in ["old", "recent"] {
            cache.put(hash, &component).expect("stores");
        }
        let month_ago = SystemTime::now() - UNUSED_FOR - Duration::from_secs(60);
        let old = fs::File::options().write(true).open(cache.path_for("old")).expect("open");
        old.set_modified(month_ago).expect("age the entry");
        CompileCache::open(dir.path(), &engine).expect("opens again");
        assert!(!cache.path_for("old").exists(), "an entry unused for a month is removed");
        assert!(cache.get(&engine, "recent").is_some(), "a recent entry stays");
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = CompileCache::open(dir.path(), &engine()).expect_err("refused");
        assert!(e.to_string().contains("writable by group or others"), "{e}");
    }
}
