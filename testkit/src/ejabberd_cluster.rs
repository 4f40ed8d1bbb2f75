//! An ejabberd cluster on loopback: several nodes in one Mnesia cluster, each with its own
//! config, spool, client port and component port, for the tests of one stanzahook per node
//! (README: "Running more than one").
//!
//! Distributed Erlang needs node names, a shared cookie and an `epmd` to find each other by. The
//! machine's `epmd` (port 4369) is shared by every Erlang node on it, keyed by name alone, and
//! outlives whoever started it; so each cluster runs an `epmd` of its own on a free port
//! (`ERL_EPMD_PORT`, `-start_epmd false`), killed with the cluster. Two clusters in parallel, or
//! a leftover `epmd`, then cannot see each other, and every cluster can name its nodes
//! `node1@127.0.0.1`, `node2@127.0.0.1`, ... One epmd holds one name once, so the nodes differ
//! by name rather than by address. Each cluster has a random cookie as well.
//!
//! The first node starts as a single `Ejabberd` does; every other node starts, then calls
//! `ejabberd_admin:join_cluster/1` (what `ejabberdctl join_cluster` calls) through `-eval`:
//! that stops ejabberd, copies the first node's tables and starts ejabberd again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::ejabberd::Distribution;
use crate::{Ejabberd, KilledOnDrop, ServerSetup};

/// epmd starts in milliseconds; a loaded machine gets more.
const EPMD_WAIT: Duration = Duration::from_secs(10);

/// A running cluster, torn down (nodes, then its epmd) when dropped.
#[derive(Debug)]
pub struct EjabberdCluster {
    /// The nodes, the first one first; each a full `TestServer` of its own.
    pub nodes: Vec<Ejabberd>,
    /// How long each node took from its start until it served (joined, for all but the first).
    pub started_in: Vec<Duration>,
    /// Dropped after the nodes (fields drop in order).
    _epmd: KilledOnDrop,
}

impl EjabberdCluster {
    /// Starts `nodes` ejabberd nodes serving `setup`, each on its own ports, the 2nd and later
    /// joined to the first; returns once every node serves again after its join.
    pub fn start(setup: &ServerSetup, nodes: usize) -> anyhow::Result<EjabberdCluster> {
        EjabberdCluster::start_with_yaml(setup, "", nodes)
    }

    /// As `start`, with `yaml` added to every node's config as top-level options.
    pub fn start_with_yaml(setup: &ServerSetup, yaml: &str, nodes: usize) -> anyhow::Result<EjabberdCluster> {
        anyhow::ensure!(nodes >= 1, "a cluster needs a node");
        let epmd_port = crate::free_port()?;
        let epmd = start_epmd(epmd_port)?;
        let cookie = random_cookie();
        let first = node_name(1);
        let mut cluster = EjabberdCluster { nodes: Vec::new(), started_in: Vec::new(), _epmd: epmd };
        for i in 1..=nodes {
            let join = (i > 1).then(|| first.clone());
            let node = Distribution { name: node_name(i), cookie: cookie.clone(), epmd_port, join };
            let start = Instant::now();
            let ejabberd = Ejabberd::start_with(setup, yaml, Some(node)).with_context(|| format!("node {i}"))?;
            cluster.started_in.push(start.elapsed());
            cluster.nodes.push(ejabberd);
        }
        Ok(cluster)
    }

    /// Whether a cluster can be started here: ejabberd, and `epmd` (Erlang's `erlang-base`).
    pub fn installed() -> bool {
        Ejabberd::installed() && crate::on_path("epmd")
    }
}

/// The name of the `i`-th node (from 1).
fn node_name(i: usize) -> String {
    format!("node{i}@127.0.0.1")
}

/// An epmd of the cluster's own on `port`, in the foreground (a child, not a daemon), listening
/// on loopback only.
fn start_epmd(port: u16) -> anyhow::Result<KilledOnDrop> {
    let child = Command::new("epmd")
        .args(["-port", &port.to_string(), "-address", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start epmd (apt-get install erlang-base)")?;
    let mut epmd = KilledOnDrop(child);
    let deadline = Instant::now() + EPMD_WAIT;
    while !crate::server::listening(port) {
        if let Some(status) = epmd.0.try_wait()? {
            anyhow::bail!("epmd on port {port} exited with {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "epmd did not listen on port {port} within {} s",
            EPMD_WAIT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(epmd)
}

/// A cookie no other cluster on the machine has: the std hasher's random keys, the time and the
/// process id.
fn random_cookie() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    let a = hasher.finish();
    hasher.write_u64(a);
    format!("stanzahook{a:016x}{:016x}", hasher.finish())
}
