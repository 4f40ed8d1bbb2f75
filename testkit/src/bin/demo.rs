//! The quick start's round trip, printed (see `testkit::demo`). Run through `scripts/quickstart`,
//! which installs Prosody and builds stanzahook first.

use std::path::PathBuf;

use anyhow::bail;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = testkit::guests::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let stanzahook = target.join("debug/stanzahook");
    if !stanzahook.is_file() {
        bail!("{} not found: build it first (cargo build -p stanzahook)", stanzahook.display());
    }
    testkit::demo::run(&stanzahook, &testkit::demo::Transcript::printing()).await
}
