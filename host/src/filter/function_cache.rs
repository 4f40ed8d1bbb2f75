//! Cranelift's compiled functions on disk, one file per function, named by the hash cranelift
//! computes of the function's code and the target. A component built by componentize-py or
//! componentize-js is mostly an interpreter that does not change when its author edits a line:
//! with this cache, a rebuilt filter compiles only the functions that changed and takes the rest
//! from here (README: "Reloading while serving"). The whole-component cache (`cache.rs`) still
//! serves an unchanged file without compiling at all.
//!
//! An entry is machine code that ends up in the compiled component, so it is trusted like the
//! compiled components are: the directory belongs to this user and no one else may write it
//! (checked when it is opened), and each file is checked on its open descriptor before it is read.
//! Cranelift checks an entry's version marker and compiles anew when an entry does not fit.

use std::borrow::Cow;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use wasmtime::CacheStore;

/// An entry not used for this long is removed (as a compiled component's is).
const UNUSED_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Walking every entry costs a few tens of milliseconds for an interpreter's ~20,000: once a day.
const PRUNE_EVERY: Duration = Duration::from_secs(86_400);
/// No function compiles to more than this; a larger file is not one this program wrote.
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// Hits and misses, counted for the line that says how a filter was compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionCounts {
    pub reused: u64,
    pub compiled: u64,
}

impl FunctionCounts {
    /// `", 31200 of 31450 functions from the function cache"`, or nothing when none were looked up.
    pub fn describe(self) -> String {
        let total = self.reused + self.compiled;
        if total == 0 {
            return String::new();
        }
        format!(", {} of {total} functions from the function cache", self.reused)
    }

    pub fn since(self, earlier: FunctionCounts) -> FunctionCounts {
        FunctionCounts {
            reused: self.reused.saturating_sub(earlier.reused),
            compiled: self.compiled.saturating_sub(earlier.compiled),
        }
    }
}

/// The store wasmtime's engine compiles through. Made with the engine, so its directory may move
/// later (a reloaded config may point the compile cache elsewhere) or go (`None`: nothing stored).
#[derive(Debug, Default)]
pub struct FunctionCache {
    dir: RwLock<Option<PathBuf>>,
    reused: AtomicU64,
    compiled: AtomicU64,
}

impl FunctionCache {
    /// Keeps functions under `compile_cache/functions-<version>` (the version of stanzahook pins
    /// wasmtime and cranelift, whose entries another version cannot use), or nowhere.
    pub fn set_dir(&self, compile_cache: Option<&Path>) {
        let dir = compile_cache.and_then(|dir| match open(dir) {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::warn!("function cache off: {e:#}");
                None
            }
        });
        if let Ok(mut current) = self.dir.write() {
            *current = dir;
        }
    }

    pub fn counts(&self) -> FunctionCounts {
        FunctionCounts { reused: self.reused.load(Ordering::Relaxed), compiled: self.compiled.load(Ordering::Relaxed) }
    }

    fn path(&self, key: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.read().ok()?.clone()?;
        let name = super::cache::hex(key);
        let (shard, rest) = name.split_at(name.len().min(2));
        Some(dir.join(shard).join(rest))
    }
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let path = self.path(key)?;
        let bytes = read_trusted(&path)?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let Some(path) = self.path(key) else { return false };
        match write_atomically(&path, &value) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("function cache: cannot write {}: {e:#}", path.display());
                false
            }
        }
    }
}

/// Creates (mode 0700) and checks the directory of this version's entries; prunes it once a day.
fn open(compile_cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = compile_cache.join(format!("functions-{}", env!("CARGO_PKG_VERSION")));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    super::cache::trusted(compile_cache)?;
    super::cache::trusted(&dir)?;
    let stamp = dir.join(".pruned");
    let pruned = fs::metadata(&stamp).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    if pruned.is_none_or(|age| age > PRUNE_EVERY) {
        prune(&dir);
        let _ = fs::write(&stamp, b"");
    }
    Ok(dir)
}

/// Removes entries unused for `UNUSED_FOR` (a hit refreshes an entry's time) and files a writer
/// that did not finish left behind.
fn prune(dir: &Path) {
    let Ok(shards) = fs::read_dir(dir) else { return };
    let mut removed = 0usize;
    for shard in shards.flatten().filter(|s| s.file_type().is_ok_and(|t| t.is_dir())) {
        let Ok(entries) = fs::read_dir(shard.path()) else { continue };
        for entry in entries.flatten() {
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            let partial = entry.file_name().to_string_lossy().ends_with(".partial");
            let limit = if partial { Duration::from_secs(3600) } else { UNUSED_FOR };
            if age.is_some_and(|age| age > limit) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::debug!("function cache: removed {removed} entries unused for {} days", UNUSED_FOR.as_secs() / 86_400);
    }
}

/// The entry's bytes if the file is this user's, not writable by anyone else, and of a sane size.
fn read_trusted(path: &Path) -> Option<Vec<u8>> {
    let mut file = fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let me = fs::metadata("/proc/self").ok()?.uid();
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 || meta.len() > MAX_ENTRY_BYTES {
        tracing::warn!("function cache: ignoring {}: not a file this program wrote", path.display());
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).ok()?;
    // Marks the entry used, for `prune`; the owner may set the time on a read-only descriptor.
    let _ = file.set_modified(SystemTime::now());
    Some(bytes)
}

/// Written aside, then renamed into place: a reader never sees half an entry.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let shard = path.parent().context("an entry has a directory")?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(shard)?;
    let name = path.file_name().context("an entry has a name")?.to_string_lossy();
    let partial = shard.join(format!(".{name}.{}.{:?}.partial", std::process::id(), std::thread::current().id()));
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(bytes)?;
    fs::rename(&partial, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_stored_function_comes_back_and_an_untrusted_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FunctionCache::default();
        assert!(cache.get(b"key").is_none(), "no directory: nothing stored");
        assert!(!cache.insert(b"key", b"code".to_vec()));
        cache.set_dir(Some(dir.path()));
        assert!(cache.get(&[7; 32]).is_none());
        assert!(cache.insert(&[7; 32], b"code".to_vec()));
        assert_eq!(cache.get(&[7; 32]).as_deref(), Some(&b"code"[..]));
        assert_eq!(cache.counts(), FunctionCounts { reused: 1, compiled: 2 });

        let path = cache.path(&[7; 32]).expect("a path");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(cache.get(&[7; 32]).is_none(), "a file others may write is not trusted");
    }

    #[test]
    fn a_compile_cache_others_may_write_keeps_no_functions() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let cache = FunctionCache::default();
        cache.set_dir(Some(dir.path()));
        assert!(!cache.insert(&[1; 32], b"code".to_vec()), "refused, so nothing is written");
    }

    #[test]
    fn entries_unused_for_a_month_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FunctionCache::default();
        cache.set_dir(Some(dir.path()));
        cache.insert(&[1; 32], b"old".to_vec());
        cache.insert(&[2; 32], b"recent".to_vec());
        let old = fs::File::open(cache.path(&[1; 32]).expect("path")).expect("open");
        old.set_modified(SystemTime::now() - UNUSED_FOR - Duration::from_secs(60)).expect("age it");
        let versioned = cache.path(&[1; 32]).and_then(|p| p.parent()?.parent().map(Path::to_owned)).expect("dir");
        fs::remove_file(versioned.join(".pruned")).expect("the stamp was written");
        cache.set_dir(Some(dir.path()));
        assert!(cache.get(&[1; 32]).is_none(), "pruned");
        assert!(cache.get(&[2; 32]).is_some(), "kept");
    }
}
