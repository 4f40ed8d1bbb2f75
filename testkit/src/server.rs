//! What Prosody and ejabberd share as test servers: what to serve (`ServerSetup`), the process
//! with its temp dir and ports (`ServerProcess`), and what a test does with either
//! (`TestServer`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The domain the test servers serve clients on.
pub const CLIENT_DOMAIN: &str = "localhost";

/// What a test server should serve. The client domain is always `localhost`.
#[derive(Debug, Clone, Default)]
pub struct ServerSetup {
    /// External components: (domain, secret).
    pub components: Vec<(String, String)>,
    /// Accounts on `localhost`: (user, password).
    pub users: Vec<(String, String)>,
    /// A group chat (XEP-0045) service on this domain, where anyone on the server (local users
    /// and the components) may create and join rooms.
    pub muc: Option<String>,
    /// Run the server from its example config in `examples/servers/` (on free ports) instead
    /// of a generated one: what a newcomer starts is what the quick start and its test run.
    /// Its component and rooms are the example's (`EXAMPLE_DOMAIN`, `EXAMPLE_SECRET`,
    /// `EXAMPLE_MUC`); `components` and `muc` are not used.
    pub from_example: bool,
    /// Keep messages for users who are offline and deliver them when they are back (Prosody's
    /// `offline`, ejabberd's `mod_offline`); off, such a message is bounced with an error.
    pub offline: bool,
}

/// The component domain the example server configs hand to stanzahook.
pub const EXAMPLE_DOMAIN: &str = "bot.localhost";
/// Its secret in the example configs.
pub const EXAMPLE_SECRET: &str = "change me: a long random secret";
/// The group chat service of the example configs.
pub const EXAMPLE_MUC: &str = "rooms.localhost";

impl ServerSetup {
    pub fn component(mut self, domain: &str, secret: &str) -> Self {
        self.components.push((domain.into(), secret.into()));
        self
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Serves group chat on `domain` (e.g. `rooms.localhost`): Prosody's `muc` component with
    /// its defaults, ejabberd's `mod_muc`. Prosody locks a room a join created (others get
    /// `item-not-found`) until its owner configures it or accepts the defaults (XEP-0045
    /// §10.1.2, `muc::instant_room`); ejabberd 23.01 lets others in at once.
    /// Messages to an offline user are kept for them (see `offline`).
    pub fn offline_messages(mut self) -> Self {
        self.offline = true;
        self
    }

    pub fn muc(mut self, domain: &str) -> Self {
        self.muc = Some(domain.into());
        self
    }

    /// The example config of `examples/servers/`, with its component and rooms.
    pub fn example() -> Self {
        ServerSetup { muc: Some(EXAMPLE_MUC.into()), from_example: true, ..ServerSetup::default() }
    }
}

/// `examples/servers/{file}` with its client port (5222) and component port (5347) moved to
/// the given ones, each found exactly once as `{prefix}5222{suffix}`: an edit that moves them
/// elsewhere fails here, loudly, instead of testing a config nobody reads.
pub(crate) fn example_config(file: &str, ports: [(&str, u16); 2]) -> anyhow::Result<String> {
    let path = crate::guests::repo_root().join("examples/servers").join(file);
    let mut text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (pattern, port) in ports {
        let standard = if pattern.contains("5222") { "5222" } else { "5347" };
        anyhow::ensure!(
            text.matches(pattern).count() == 1,
            "{}: expected `{pattern}` exactly once (the example's port setting)",
            path.display()
        );
        text = text.replace(pattern, &pattern.replace(standard, &port.to_string()));
    }
    Ok(text)
}

/// A server process a test owns: a throwaway dir, two free loopback ports (clients, the
/// component), and the running process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The files in `dir` that make up the server's log, besides its console output.
    log_files: &'static [&'static str],
    pub c2s_port: u16,
    pub component_port: u16,
    /// The group chat service's domain, where the setup asked for one.
    pub(crate) muc_domain: Option<String>,
}

/// The file in the dir that takes the server's stdout and stderr.
const CONSOLE_LOG: &str = "console.log";

impl ServerProcess {
    /// A temp dir and two free ports for the server called `name`; nothing runs yet.
    pub(crate) fn prepare(
        name: &'static str,
        log_files: &'static [&'static str],
        setup: &ServerSetup,
    ) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::Builder::new().prefix(&format!("stanzahook-{name}-")).tempdir()?;
        let (c2s_port, component_port) = (crate::free_port()?, crate::free_port()?);
        let muc_domain = setup.muc.clone();
        Ok(ServerProcess { name, dir, child: None, log_files, c2s_port, component_port, muc_domain })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `command` (its output going to the log) and waits until both ports accept
    /// connections.
    pub(crate) fn spawn(&mut self, mut command: Command, within: Duration) -> anyhow::Result<()> {
        let console = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join(CONSOLE_LOG))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .with_context(|| format!("cannot start {} (apt-get install {})", self.name, self.name))?;
        let ready = wait_for_ports(&mut child, &[self.c2s_port, self.component_port], within);
        // Kept even when not ready, so that drop kills it.
        self.child = Some(child);
        ready.map_err(|e| anyhow::anyhow!("{} {e}; its log:\n{}", self.name, self.log()))
    }

    /// Waits again until both ports accept connections, while the process runs: after a
    /// restart inside the process (an ejabberd node joining a cluster restarts ejabberd).
    pub(crate) fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else { anyhow::bail!("{} is not running", self.name) };
        let ready = wait_for_ports(child, &[self.c2s_port, self.component_port], within);
        ready.map_err(|e| anyhow::anyhow!("{} {e}; its log:\n{}", self.name, self.log()))
    }

    /// Whether the process has exited (reaping it), for waits of the server's own.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Kills the server (as a crash would), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as an operator would (SIGTERM: an orderly shutdown, Prosody saving its
    /// rooms) and waits until it has exited, keeping its data. Killed if not gone `within`.
    pub fn stop(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { anyhow::bail!("{} is not running", self.name) };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("{} did not exit within {} s of SIGTERM", self.name, within.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's console output and log files, for failure messages.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        std::iter::once(CONSOLE_LOG).chain(self.log_files.iter().copied()).map(read).collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `child` accepts connections on every one of `ports` on loopback. The error says
/// why (the server exited, or a port stayed closed); the caller adds the server's log.
fn wait_for_ports(child: &mut Child, ports: &[u16], within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    for &port in ports {
        while !listening(port) {
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("exited with {status}")),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot be watched: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("did not open port {port} within {} s", within.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Whether something listens on 127.0.0.1:`port`. Read from the kernel's socket table rather
/// than by connecting: every probe connection takes an ephemeral port, and one of them could be
/// a port another test has picked as free and is about to bind (ejabberd takes a second to
/// start, so it was probed ~50 times). Where `/proc` cannot be read, a connection tells.
pub(crate) fn listening(port: u16) -> bool {
    match std::fs::read_to_string("/proc/net/tcp") {
        // Columns: slot, local address (hex IPv4 in host order, then port), remote, state (0A = LISTEN).
        Ok(table) => {
            let local = format!("0100007F:{port:04X}");
            table.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace().skip(1);
                fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
            })
        }
        Err(_) => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    }
}

/// A test XMPP server (Prosody or ejabberd) as the tests use it: where clients connect, where
/// the component connects, its log for failure messages, and crashing and restarting it.
pub trait TestServer: std::fmt::Debug + Send {
    fn process(&self) -> &ServerProcess;
    fn process_mut(&mut self) -> &mut ServerProcess;
    /// Starts the server's process, on the ports and with the data it had.
    fn spawn(&mut self) -> anyhow::Result<()>;

    /// Which server this is, for messages.
    fn name(&self) -> &'static str {
        self.process().name
    }

    fn c2s_port(&self) -> u16 {
        self.process().c2s_port
    }

    fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.process().component_port)
    }

    /// The group chat service's domain, where `ServerSetup::muc` asked for one.
    fn muc_domain(&self) -> Option<&str> {
        self.process().muc_domain.as_deref()
    }

    fn log(&self) -> String {
        self.process().log()
    }

    /// Kills the server (as a crash would), keeping its data.
    fn kill(&mut self) {
        self.process_mut().kill();
    }

    /// Stops the server gracefully (SIGTERM), keeping its data; `restart` starts it again.
    fn stop(&mut self) -> anyhow::Result<()> {
        let name = self.name();
        let status = self.process_mut().stop(Duration::from_secs(30))?;
        anyhow::ensure!(status.success(), "{name} exited with {status} on SIGTERM");
        Ok(())
    }

    /// Starts the server again on the same ports after `kill` or `stop`.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}
