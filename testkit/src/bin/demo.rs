//! The quick start's round trip, printed (see `testkit::demo`). Run through `scripts/quickstart`,
//! which installs Prosody and builds stanzahook first. `--keep` leaves Prosody, the webhook and
//! stanzahook running afterwards, for an XMPP client of the reader's own.

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
    let keep = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--keep") => true,
        Some(other) => bail!("unknown argument {other:?}; the one option is --keep"),
    };
    let out = testkit::demo::Transcript::printing();
    let running = testkit::demo::run(&stanzahook, &out).await?;
    if keep {
        running.keep(&out).await?;
    } else {
        println!("\n(scripts/quickstart --keep leaves it all running, to log in with an XMPP client of your own)");
    }
    Ok(())
}
