//! Filters built from source for wasm32-wasip2, once per test process, into `target/guests`
//! (one target dir for every guest workspace, so their dependencies compile once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-wasip2";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether guests can be built here. Without the target the test is skipped loudly, except under
/// CI, where it fails: CI must install it.
pub fn require_wasm_target() -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET))
        .unwrap_or(false);
    if installed {
        return true;
    }
    let message = format!("the {TARGET} Rust target is not installed (rustup target add {TARGET})");
    assert!(!crate::under_ci(), "{message}: under CI=true this is a failure");
    eprintln!("\n!!!!! SKIPPED: {message}; this test did not run !!!!!\n");
    false
}

/// Builds the guest workspace at `workspace` (relative to the repository root) in release mode
/// and returns the directory holding its `.wasm` files.
pub fn build(workspace: &str) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().map_err(|_| anyhow::anyhow!("an earlier guest build panicked"))?;
    if let Some(dir) = built.get(workspace) {
        return Ok(dir.clone());
    }
    let root = repo_root();
    let target_dir = root.join("target/guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(root.join(workspace).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .with_context(|| format!("cannot run cargo to build {workspace}"))?;
    if !output.status.success() {
        bail!("building the guests of {workspace} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let dir = target_dir.join(TARGET).join("release");
    built.insert(workspace.to_owned(), dir.clone());
    Ok(dir)
}

/// The `.wasm` of one guest of `workspace`.
pub fn wasm(workspace: &str, name: &str) -> anyhow::Result<PathBuf> {
    let path = build(workspace)?.join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}
