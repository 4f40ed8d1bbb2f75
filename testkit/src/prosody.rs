//! Prosody on loopback: a throwaway config and data dir, free ports, accounts written directly
//! into its `internal_plain` store, killed when dropped.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::{CLIENT_DOMAIN, ServerSetup, TestServer};

/// A running Prosody. The client domain is always `localhost`.
#[derive(Debug)]
pub struct Prosody {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub c2s_port: u16,
    pub component_port: u16,
}

impl Prosody {
    /// Starts Prosody and waits until both its ports accept connections.
    pub fn start(setup: &ServerSetup) -> anyhow::Result<Prosody> {
        let dir = tempfile::Builder::new().prefix("stanzahook-prosody-").tempdir()?;
        let c2s_port = crate::free_port()?;
        let component_port = crate::free_port()?;
        std::fs::create_dir_all(dir.path().join("certs"))?;
        let accounts = dir.path().join("data").join(CLIENT_DOMAIN).join("accounts");
        std::fs::create_dir_all(&accounts)?;
        for (user, password) in &setup.users {
            std::fs::write(
                accounts.join(format!("{user}.dat")),
                format!("return {{ [\"password\"] = {}; }};\n", lua_string(password)),
            )?;
        }
        std::fs::write(dir.path().join("prosody.cfg.lua"), config(dir.path(), c2s_port, component_port, setup))?;
        let mut prosody = Prosody { dir, child: None, c2s_port, component_port };
        prosody.spawn()?;
        Ok(prosody)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("console.log"))?;
        let mut child = Command::new("prosody")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start prosody (apt-get install prosody)")?;
        let ready = crate::wait_for_ports(&mut child, &[self.c2s_port, self.component_port], Duration::from_secs(15));
        // Kept even when not ready, so that drop kills it.
        self.child = Some(child);
        ready.map_err(|e| anyhow::anyhow!("prosody {e}; its log:\n{}", self.log()))
    }

    /// CPU time the server has used so far (user + system), from `/proc`: what it costs to route.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let child = self.child.as_ref().context("Prosody is not running")?;
        crate::cpu_time_of(child.id())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl TestServer for Prosody {
    fn name(&self) -> &'static str {
        "prosody"
    }

    fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("console.log"), read("prosody.log"))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.kill();
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
modules_enabled = {{ "roster", "saslauth", "disco", "ping", "presence", "message", "iq", "posix" }}
modules_disabled = {{ "s2s", "tls", "offline" }}
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
    );
    for (domain, secret) in &setup.components {
        let _ = write!(cfg, "\nComponent {}\n    component_secret = {}\n", lua_string(domain), lua_string(secret));
    }
    cfg
}
