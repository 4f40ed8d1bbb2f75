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

/// The languages whose filters are built by their own component tooling, not cargo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
}

impl Language {
    /// The directory of its example filters, each a directory of its own.
    fn examples(self) -> &'static str {
        match self {
            Language::Python => "examples/filters/python",
            Language::JavaScript => "examples/filters/js",
        }
    }

    /// What a build reads besides the filter's own directory: the SDK and the WIT.
    fn sdk_files(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["guest-sdk/python/stanzahook_filter.py", "guest-sdk/python/requirements.txt"],
            Language::JavaScript => {
                &["guest-sdk/js/stanzahook-filter.js", "guest-sdk/js/build.mjs", "guest-sdk/js/package-lock.json"]
            }
        }
    }

    fn tool(self) -> (PathBuf, &'static str) {
        let root = repo_root();
        match self {
            Language::Python => (root.join(".tools/python/bin/componentize-py"), "componentize-py"),
            Language::JavaScript => (
                root.join("guest-sdk/js/node_modules/@bytecodealliance/componentize-js/package.json"),
                "componentize-js",
            ),
        }
    }
}

/// Whether filters of `language` can be built here (`scripts/install-deps --guests` installs the
/// tools). Without them the test is skipped loudly, except under CI, where it fails.
pub fn require_tools(language: Language) -> bool {
    let (path, name) = language.tool();
    crate::require(path.exists(), name, "scripts/install-deps --guests")
}

/// The component of the example filter `name` of `language`, built from source by its tooling
/// into `target/guests/<language>/`. A build is kept with the hash of everything it read, so each
/// interpreter component is built once, by the first test that needs it, until its source changes.
pub fn interpreted(language: Language, name: &str) -> anyhow::Result<PathBuf> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().map_err(|_| anyhow::anyhow!("an earlier guest build panicked"))?;
    let root = repo_root();
    let source = root.join(language.examples()).join(name);
    let out_dir = root.join("target/guests").join(format!("{language:?}").to_lowercase());
    std::fs::create_dir_all(&out_dir)?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    let stamp = out_dir.join(format!("{name}.inputs"));
    let inputs = inputs_hash(&source, language)?;
    if wasm.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs) {
        return Ok(wasm);
    }
    let started = std::time::Instant::now();
    let output = build_command(language, &source, &wasm)
        .output()
        .with_context(|| format!("cannot build {}", source.display()))?;
    if !output.status.success() {
        bail!(
            "building {} failed:\n{}{}",
            source.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!("built {} in {:.1} s", wasm.display(), started.elapsed().as_secs_f64());
    std::fs::write(&stamp, inputs)?;
    Ok(wasm)
}

/// The command that builds the filter in `source` into `out`, as the SDKs' READMEs give it.
pub fn build_command(language: Language, source: &Path, out: &Path) -> Command {
    let root = repo_root();
    match language {
        Language::Python => {
            let mut command = Command::new(language.tool().0);
            command
                .arg("-d")
                .arg(root.join("wit"))
                .args(["-w", "reusable-filter", "componentize", "-p"])
                .arg(root.join("guest-sdk/python"))
                .arg("-p")
                .arg(source)
                .args(["app", "-o"])
                .arg(out);
            command
        }
        Language::JavaScript => {
            let mut command = Command::new("node");
            command.arg(root.join("guest-sdk/js/build.mjs")).arg(source).arg(out);
            command
        }
    }
}

/// A hash of the filter's files, the SDK's and the WIT's.
fn inputs_hash(source: &Path, language: Language) -> anyhow::Result<String> {
    use sha1::{Digest, Sha1};
    let root = repo_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.extend(language.sdk_files().iter().map(|f| root.join(f)));
    files.push(root.join("wit/filter.wit"));
    let mut hasher = Sha1::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
