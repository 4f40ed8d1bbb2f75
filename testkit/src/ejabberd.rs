//! ejabberd on loopback, the second server the README promises: a throwaway config, Mnesia spool
//! and log dir, free ports, killed when dropped. Started as the Erlang VM directly, not through
//! `ejabberdctl`, which would switch to the `ejabberd` user and want a distributed node; without
//! a node name no `epmd` is started either, so parallel tests do not share anything. A node of a
//! cluster (`EjabberdCluster`) is named and uses its cluster's own `epmd`.
//!
//! Accounts are checked by a small external-auth script (ejabberd's `extauth` protocol) written
//! into the temp dir: ejabberd keeps its own accounts in Mnesia, which only a running node could
//! fill.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::{CLIENT_DOMAIN, ServerProcess, ServerSetup, TestServer};

/// The Erlang VM starts in ~1 s here; a loaded CI machine gets more.
const START_WAIT: Duration = Duration::from_secs(30);

/// A running ejabberd. The client domain is always `localhost`.
#[derive(Debug)]
pub struct Ejabberd {
    process: ServerProcess,
    /// Accounts made in ejabberd's own database at start, for the example config (whose
    /// `auth_method` is `internal`); empty when the generated config's auth script knows them.
    register: Vec<(String, String)>,
    /// Distributed Erlang, for a node of a cluster.
    node: Option<Distribution>,
    /// How long `join_cluster` took, once the node has joined a cluster.
    joined_in: Option<Duration>,
}

/// How a node of a cluster speaks distributed Erlang.
#[derive(Debug, Clone)]
pub(crate) struct Distribution {
    /// `-name`, e.g. `node1@127.0.0.1`.
    pub name: String,
    /// `-setcookie`, one per cluster.
    pub cookie: String,
    /// The cluster's own epmd (`ERL_EPMD_PORT`), not the machine's on 4369.
    pub epmd_port: u16,
    /// The node to join (`ejabberd_admin:join_cluster/1`) at the first start; `None` for the
    /// first node, and once joined (Mnesia's schema in the spool then knows the cluster).
    pub join: Option<String>,
}

/// The file a joining node writes the result of `join_cluster` and its duration into.
const JOINED: &str = "joined";

impl Ejabberd {
    /// Starts ejabberd and waits until both its ports accept connections.
    pub fn start(setup: &ServerSetup) -> anyhow::Result<Ejabberd> {
        Ejabberd::start_with(setup, "", None)
    }

    /// Starts ejabberd with `yaml` added to its config as top-level options, e.g.
    /// `domain_balancing`.
    pub fn start_with_yaml(setup: &ServerSetup, yaml: &str) -> anyhow::Result<Ejabberd> {
        Ejabberd::start_with(setup, yaml, None)
    }

    pub(crate) fn start_with(setup: &ServerSetup, yaml: &str, node: Option<Distribution>) -> anyhow::Result<Ejabberd> {
        let process = ServerProcess::prepare("ejabberd", &["ejabberd.log"], setup)?;
        let dir = process.dir();
        std::fs::create_dir_all(dir.join("spool"))?;
        let mut register = Vec::new();
        if setup.from_example {
            let ports = [("- port: 5222", process.c2s_port), ("- port: 5347", process.component_port)];
            let example = crate::server::example_config("ejabberd.yml", ports)?;
            std::fs::write(dir.join("ejabberd.yml"), format!("{example}\n{yaml}"))?;
            register.clone_from(&setup.users);
        } else {
            let auth = dir.join("auth.py");
            std::fs::write(&auth, auth_script(setup))?;
            make_executable(&auth)?;
            let config = config(&auth, process.c2s_port, process.component_port, setup);
            std::fs::write(dir.join("ejabberd.yml"), format!("{config}{yaml}"))?;
        }
        let mut ejabberd = Ejabberd { process, register, node, joined_in: None };
        ejabberd.spawn()?;
        Ok(ejabberd)
    }

    /// Whether ejabberd's Erlang applications and the Erlang VM are installed.
    pub fn installed() -> bool {
        crate::on_path("erl") && libs().is_some()
    }
}

impl TestServer for Ejabberd {
    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.process.dir();
        let libs = libs().context("ejabberd's Erlang applications are not installed (apt-get install ejabberd)")?;
        let mut command = Command::new("erl");
        command
            .args(["-noinput", "-noshell", "-mnesia", "dir"])
            .arg(format!("{:?}", dir.join("spool").display().to_string()))
            .args(["-s", "ejabberd"])
            // As `ejabberdctl register` would, once ejabberd has started (`-s` runs first).
            .args(self.register.iter().flat_map(|(user, password)| {
                [
                    "-eval".to_owned(),
                    format!("ejabberd_auth:try_register(<<{user:?}>>, <<\"localhost\">>, <<{password:?}>>)."),
                ]
            }))
            .env("ERL_LIBS", libs)
            .env_remove("ERL_EPMD_PORT")
            .env("EJABBERD_CONFIG_PATH", dir.join("ejabberd.yml"))
            .env("EJABBERD_LOG_PATH", dir.join("ejabberd.log"))
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
            .env("ERL_CRASH_DUMP_BYTES", "0")
            .current_dir(dir);
        let join = self.node.as_ref().and_then(|node| node.join.clone());
        if let Some(node) = &self.node {
            command
                .args(["-name", &node.name, "-setcookie", &node.cookie, "-start_epmd", "false"])
                .env("ERL_EPMD_PORT", node.epmd_port.to_string());
        }
        if let Some(first) = &join {
            // After `-s ejabberd`: join_cluster stops ejabberd, copies the first node's tables
            // and starts ejabberd again, so the ports close and open once more.
            let _ = std::fs::remove_file(dir.join(JOINED));
            command.args([
                "-eval".to_owned(),
                format!(
                    "T = erlang:monotonic_time(millisecond), R = ejabberd_admin:join_cluster(<<{first:?}>>), \
                     file:write_file({JOINED:?}, io_lib:format(\"~p ~p~n\", [R, erlang:monotonic_time(millisecond) - T]))."
                ),
            ]);
        }
        self.process.spawn(command, START_WAIT)?;
        if join.is_some() {
            self.wait_for_join()?;
            if let Some(node) = self.node.as_mut() {
                node.join = None;
            }
        }
        Ok(())
    }
}

impl Ejabberd {
    /// Waits until `join_cluster` has returned `ok` and ejabberd listens again.
    fn wait_for_join(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + START_WAIT;
        let marker = self.process.dir().join(JOINED);
        let result = loop {
            match std::fs::read_to_string(&marker) {
                Ok(text) if text.ends_with('\n') => break text,
                _ => {}
            }
            if let Some(status) = self.process.exited() {
                anyhow::bail!("ejabberd exited ({status}) while joining the cluster; its log:\n{}", self.log());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "ejabberd did not join the cluster within {} s; its log:\n{}",
                START_WAIT.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut words = result.split_whitespace();
        anyhow::ensure!(words.next() == Some("ok"), "join_cluster answered {result:?}; its log:\n{}", self.log());
        self.joined_in = words.next().and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
        self.process.wait_ready(START_WAIT)
    }

    /// How long `join_cluster` took on this node, as the node measured it; `None` for a node
    /// that did not join a cluster.
    pub fn joined_in(&self) -> Option<Duration> {
        self.joined_in
    }
}

/// The directory holding ejabberd's Erlang applications (`ejabberd-23.01/`, ...): Debian puts
/// them in its multiarch directory (`/usr/lib/x86_64-linux-gnu`); `STANZAHOOK_EJABBERD_LIBS`
/// names another (another distribution, a source build).
fn libs() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("STANZAHOOK_EJABBERD_LIBS") {
        return Some(dir.into());
    }
    let holds_ejabberd = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with("ejabberd-"))
        })
    };
    let candidates = std::fs::read_dir("/usr/lib").ok()?.flatten().map(|entry| entry.path());
    candidates.chain([Path::new("/usr/lib/erlang/lib").to_owned()]).find(|dir| holds_ejabberd(dir))
}

fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// ejabberd's `extauth` protocol: requests of a 2-byte length and `op:user:server:...`, answers
/// of a 2-byte length (2) and 1 or 0.
fn auth_script(setup: &ServerSetup) -> String {
    let mut users = String::new();
    for (user, password) in &setup.users {
        let _ = write!(users, "{user:?}: {password:?}, ");
    }
    format!(
        r#"#!/usr/bin/env python3
import struct, sys
USERS = {{{users}}}
while True:
    head = sys.stdin.buffer.read(2)
    if len(head) < 2:
        sys.exit(0)
    (size,) = struct.unpack(">H", head)
    parts = sys.stdin.buffer.read(size).decode().split(":", 3)
    if parts[0] == "auth":
        ok = len(parts) == 4 and USERS.get(parts[1]) == parts[3]
    elif parts[0] == "isuser":
        ok = parts[1] in USERS
    else:
        ok = False
    sys.stdout.buffer.write(struct.pack(">HH", 2, 1 if ok else 0))
    sys.stdout.buffer.flush()
"#
    )
}

fn config(auth: &Path, c2s_port: u16, component_port: u16, setup: &ServerSetup) -> String {
    let mut components = String::new();
    for (domain, secret) in &setup.components {
        let _ = write!(components, "\n      {domain:?}:\n        password: {secret:?}");
    }
    let (mut muc_access, mut muc_module) = (String::new(), String::new());
    if let Some(muc) = &setup.muc {
        // Rooms for local users and for the components' domains (a component's occupant JID is
        // the bare domain or an address on it); nobody else (there is no s2s anyway).
        let mut servers = format!("\n      - {CLIENT_DOMAIN:?}");
        for (domain, _) in &setup.components {
            let _ = write!(servers, "\n      - {domain:?}");
        }
        muc_access =
            format!("acl:\n  muc_users:\n    server:{servers}\naccess_rules:\n  muc_users:\n    allow: muc_users\n");
        muc_module = format!(
            "  mod_muc:\n    hosts: [{muc:?}]\n    access: muc_users\n    access_create: muc_users\n    access_persistent: muc_users\n"
        );
    }
    format!(
        r#"# Throwaway ejabberd for stanzahook's tests: loopback only, no TLS, no s2s, no HTTP.
hosts: [{CLIENT_DOMAIN:?}]
loglevel: info
log_rotate_count: 0
certfiles: []
auth_method: external
extauth_program: {auth:?}
auth_use_cache: false
shaper_rules:
  c2s_shaper: none
{muc_access}listen:
  - port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    shaper: c2s_shaper
  - port: {component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:{components}
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
{offline}{muc_module}"#,
        offline = if setup.offline { "  mod_offline: {}\n" } else { "" },
        auth = auth.display().to_string(),
    )
}
