//! The stanzahook binary as a child process, the way an operator runs it; its log goes to a
//! file that tests can wait on and read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The arguments of `stanzahook run` for a domain served through `server`, posting to
/// `post_url`, with an optional config file for everything else.
pub fn run_args(domain: &str, server: &str, secret: &str, post_url: &str, config: Option<&Path>) -> Vec<String> {
    let mut args = vec!["run".to_owned()];
    if let Some(config) = config {
        args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    for (flag, value) in [("--domain", domain), ("--server", server), ("--secret", secret), ("--post-url", post_url)] {
        args.extend([flag.to_owned(), value.to_owned()]);
    }
    args
}

/// `PATH` with the repository's `.tools/python/bin` first.
pub fn with_tools_on_path() -> String {
    let tools = crate::guests::repo_root().join(".tools/python/bin");
    format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default())
}

/// `info`, unless `STANZAHOOK_TEST_LOG` says otherwise.
fn test_log_filter() -> String {
    std::env::var("STANZAHOOK_TEST_LOG").unwrap_or_else(|_| "info".into())
}

#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    /// Its standard input, for `stanzahook dev`'s prompt; `None` (null) otherwise.
    stdin: Option<std::process::ChildStdin>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `bin` with `args` (e.g. `["run", "--domain", …]`), logging at `info` unless
    /// `STANZAHOOK_TEST_LOG` says otherwise.
    pub fn start(bin: &Path, args: &[String]) -> anyhow::Result<HostProcess> {
        HostProcess::start_logging(bin, args, &test_log_filter())
    }

    /// Starts `bin` with `args` and `RUST_LOG=log_filter`.
    pub fn start_logging(bin: &Path, args: &[String], log_filter: &str) -> anyhow::Result<HostProcess> {
        HostProcess::spawn(bin, args, log_filter, Stdio::null(), &[])
    }

    /// Starts `bin` with `args` and these environment variables besides the usual ones.
    pub fn start_with_env(bin: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<HostProcess> {
        HostProcess::spawn(bin, args, &test_log_filter(), Stdio::null(), env)
    }

    /// Starts `bin` with `args` and standard input open for `type_line` (`stanzahook dev`'s
    /// prompt).
    pub fn start_at_a_prompt(bin: &Path, args: &[String]) -> anyhow::Result<HostProcess> {
        HostProcess::spawn(bin, args, &test_log_filter(), Stdio::piped(), &[])
    }

    /// Types `line` and Enter at its standard input.
    pub fn type_line(&mut self, line: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().context("started without a prompt (use start_at_a_prompt)")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    fn spawn(
        bin: &Path,
        args: &[String],
        log_filter: &str,
        stdin: Stdio,
        env: &[(&str, &str)],
    ) -> anyhow::Result<HostProcess> {
        let dir = tempfile::Builder::new().prefix("stanzahook-host-").tempdir()?;
        let log_path = dir.path().join("stanzahook.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", log_filter)
            // `stanzahook dev` builds Python filters with the componentize-py that
            // `scripts/install-deps --guests` put there, as an author's activated virtualenv would.
            .env("PATH", with_tools_on_path())
            .env("NO_COLOR", "1")
            // Compiled filters are cached under target/, not in the user's home; tests that look
            // at the cache itself name their own directory in the config.
            .env("XDG_CACHE_HOME", crate::guests::repo_root().join("target/test-cache"))
            .env_remove("CACHE_DIRECTORY")
            // What stanzahook keeps (rooms joined at run time) stays with this process; a test
            // that restarts it names its own state_dir.
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env_remove("STATE_DIRECTORY")
            .env_remove("STANZAHOOK_SECRET")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut child = child;
        let stdin = child.stdin.take();
        Ok(HostProcess { child, stdin, log_path, _dir: dir })
    }

    /// Everything it logged so far.
    /// The file stanzahook's log (its stderr) goes to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, within: Duration) -> anyhow::Result<()> {
        self.wait_for_log_count(needle, 1, within).await
    }

    /// Waits until the log contains `needle` at least `n` times.
    pub async fn wait_for_log_count(&mut self, needle: &str, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.log().matches(needle).count() >= n {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("stanzahook exited ({status}) before logging {needle:?} {n} times; its log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "stanzahook did not log {needle:?} {n} times within {} ms; its log:\n{}",
                    within.as_millis(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM, as systemd does on stop.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would: no stream close, nothing
    /// finished; returns once it is gone.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Sends SIGHUP, as `systemctl reload` does.
    pub fn hangup(&self) -> anyhow::Result<()> {
        self.signal("HUP")
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// The process id, for what `/proc` tells about it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far (user + system, all threads), from `/proc`.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        crate::cpu_time_of(self.child.id())
    }

    /// The peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmHWM:")
    }

    /// The resident memory of the process now (`VmRSS`), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line =
            status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("short /proc status line")?.parse()?;
        Ok(kib * 1024)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("stanzahook still running after {} ms; its log:\n{}", within.as_millis(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
