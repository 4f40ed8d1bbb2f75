//! Prosody on loopback: a throwaway config and data dir, free ports, accounts written directly
//! into its `internal_plain` store, killed when dropped.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::{CLIENT_DOMAIN, ServerProcess, ServerSetup, TestServer};

/// A running Prosody. The client domain is always `localhost`.
#[derive(Debug)]
pub struct Prosody {
    process: ServerProcess,
}

impl Prosody {
    /// Starts Prosody and waits until both its ports accept connections.
    pub fn start(setup: &ServerSetup) -> anyhow::Result<Prosody> {
        let process = ServerProcess::prepare("prosody", &["prosody.log"], setup)?;
        let dir = process.dir();
        std::fs::create_dir_all(dir.join("certs"))?;
        let accounts = dir.join("data").join(CLIENT_DOMAIN).join("accounts");
        std::fs::create_dir_all(&accounts)?;
        for (user, password) in &setup.users {
            std::fs::write(
                accounts.join(format!("{user}.dat")),
                format!("return {{ [\"password\"] = {}; }};\n", lua_string(password)),
            )?;
        }
        if setup.from_example {
            let ports =
                [("c2s_ports = { 5222 }", process.c2s_port), ("component_ports = { 5347 }", process.component_port)];
            std::fs::write(dir.join("prosody.cfg.lua"), crate::server::example_config("prosody.cfg.lua", ports)?)?;
            // As the example tells a newcomer: accounts made with prosodyctl, hashed.
            std::fs::remove_dir_all(dir.join("data"))?;
            for (user, password) in &setup.users {
                let status = Command::new("prosodyctl")
                    .arg("--config")
                    .arg(dir.join("prosody.cfg.lua"))
                    .args(["register", user, CLIENT_DOMAIN, password])
                    .current_dir(dir)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .context("running prosodyctl")?;
                anyhow::ensure!(status.success(), "prosodyctl register {user} failed: {status}");
            }
        } else {
            let cfg = config(dir, process.c2s_port, process.component_port, setup);
            std::fs::write(dir.join("prosody.cfg.lua"), cfg)?;
        }
        let mut prosody = Prosody { process };
        prosody.spawn()?;
        Ok(prosody)
    }

    /// CPU time the server has used so far (user + system), from `/proc`: what it costs to route.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self.process.pid().context("Prosody is not running")?;
        crate::cpu_time_of(pid)
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}

impl TestServer for Prosody {
    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("prosody");
        // The example config's paths are relative to where Prosody starts, as for a newcomer.
        command
            .arg("--config")
            .arg(self.process.dir().join("prosody.cfg.lua"))
            .arg("-F")
            .current_dir(self.process.dir());
        self.process.spawn(command, Duration::from_secs(15))
    }
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

fn config(dir: &Path, c2s_port: u16, component_port: u16, setup: &ServerSetup) -> String {
    let path = |p: &str| lua_string(&dir.join(p).display().to_string());
    let mut cfg = format!(
        r#"-- Throwaway Prosody for stanzahook's tests: loopback only, no TLS, no s2s, no HTTP.
run_as_root = true
pidfile = {pid}
data_path = {data}
certificates = {certs}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {log} }} }}
modules_enabled = {{ "roster", "saslauth", "disco", "ping", "presence", "message", "iq", "posix"{offline_on} }}
modules_disabled = {{ "s2s", "tls"{offline_off} }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{ }}
https_ports = {{ }}
limits = {{ c2s = {{ rate = "10mb/s" }} }}

VirtualHost "{CLIENT_DOMAIN}"
"#,
        pid = path("prosody.pid"),
        data = path("data"),
        certs = path("certs"),
        log = path("prosody.log"),
        offline_on = if setup.offline { r#", "offline""# } else { "" },
        offline_off = if setup.offline { "" } else { r#", "offline""# },
    );
    for (domain, secret) in &setup.components {
        let _ = write!(cfg, "\nComponent {}\n    component_secret = {}\n", lua_string(domain), lua_string(secret));
    }
    if let Some(muc) = &setup.muc {
        // Prosody's defaults: anyone may create rooms (no `restrict_room_creation`), and a room
        // created by a join is locked (`muc_room_locking`) until its owner submits a
        // configuration, an empty one for an instant room.
        let _ = write!(cfg, "\nComponent {} \"muc\"\n", lua_string(muc));
    }
    cfg
}
