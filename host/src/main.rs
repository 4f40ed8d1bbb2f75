//! The `stanzahook` command line: parses flags, sets up logging, hands off to the library, and
//! turns the result into an exit code (0 ok, 1 runtime failure, 2 bad configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stanzahook::config::{ConfigSource, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "stanzahook",
    version,
    about = "XMPP component ↔ HTTP webhook bridge",
    after_help = "Environment:\n  STANZAHOOK_SECRET     the component secret (instead of --secret)\n  \
                  STANZAHOOK_API_TOKEN  the operator API's bearer token (instead of api.token)\n  \
                  RUST_LOG              what is logged, e.g. info or info,stanzahook=debug (default info)\n  \
                  NO_COLOR              no colour in the log, even on a terminal\n\n\
                  Exit codes: 0 done, 1 a failure while running, 2 a mistake in the configuration or the command line.\n\
                  The README's sections explain the configuration, the JSON contract and filters."
)]
struct Cli {
    /// Log format: human-readable lines, or one JSON object per line for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the XMPP server and serve the domain.
    Run(Settings),
    /// Validate the configuration (and compile its filters) without connecting.
    Check(Settings),
    /// The edit loop of a filter author: `run --dev`, plus building each filter that names a
    /// `source` and rebuilding it on save, and test messages typed at the prompt (README: "The
    /// development loop").
    Dev(DevArgs),
    /// Work with filters without a server.
    #[command(subcommand)]
    Filter(FilterCommand),
}

#[derive(Debug, Subcommand)]
enum FilterCommand {
    /// Run one filter on one event and print what it decided.
    Run(FilterRunArgs),
    /// Run one filter against a file of cases (events and the verdicts expected); exits 1 when a
    /// case fails. The README's "Testing a filter" describes the file.
    Test(FilterTestArgs),
}

#[derive(Debug, Args)]
struct FilterTestArgs {
    /// The filter: a WebAssembly component built for wasm32-wasip2.
    wasm: PathBuf,
    /// The cases: a TOML file of `[[case]]` tables.
    cases: PathBuf,
    /// A setting of the filter's config over the file's, KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

#[derive(Debug, Args)]
struct FilterRunArgs {
    /// The filter: a WebAssembly component built for wasm32-wasip2.
    wasm: PathBuf,
    /// The event JSON the filter's `before` hook receives (the README's "The request"); `-` reads
    /// it from standard input.
    #[arg(long)]
    event: PathBuf,
    /// Also run the `after` hook, with this HTTP status.
    #[arg(long)]
    status: Option<u16>,
    /// Also run the `after` hook, with this reply JSON (status 200 unless --status says otherwise).
    #[arg(long)]
    reply: Option<PathBuf>,
    /// A setting of the filter's config (what `[filter.config]` holds in a config file),
    /// KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The first name of --set, which meant a config file everywhere else; still accepted.
    #[arg(long = "config", value_name = "KEY=VALUE", hide = true)]
    old_settings: Vec<String>,
}

#[derive(Debug, Args)]
struct DevArgs {
    #[command(flatten)]
    settings: Settings,
    /// The sender of the test messages typed at the prompt or POSTed to /inject.
    #[arg(long, default_value = "dev@localhost", value_name = "ADDRESS")]
    from: String,
    /// Their recipient [default: bot@ the component's domain].
    #[arg(long, value_name = "ADDRESS")]
    to: Option<String>,
}

#[derive(Debug, Args)]
struct Settings {
    /// TOML config file; flags below override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The component's domain, e.g. bot.example.org.
    #[arg(long)]
    domain: Option<String>,
    /// The server's component port, HOST:PORT.
    #[arg(long)]
    server: Option<String>,
    /// The component secret (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "STANZAHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The webhook URL stanzas are POSTed to.
    #[arg(long)]
    post_url: Option<String>,
    /// Stanza kinds to forward, comma-separated: message, presence, iq [default: message].
    #[arg(long, value_delimiter = ',')]
    stanzas: Option<Vec<String>>,
    /// A filter (WebAssembly component) with default settings, after those of the file; repeatable.
    #[arg(long = "filter", value_name = "PATH")]
    filters: Vec<PathBuf>,
    /// For filter authors: reload filters and the config file as soon as they change, and log
    /// each stanza's way in one line (filters' verdicts, the POST, what was sent back), whatever
    /// RUST_LOG says.
    #[arg(long)]
    dev: bool,
}

impl Settings {
    fn source(&self) -> ConfigSource {
        let overrides = Overrides {
            domain: self.domain.clone(),
            server: self.server.clone(),
            secret: self.secret.clone(),
            post_url: self.post_url.clone(),
            stanzas: self.stanzas.clone(),
            filters: self.filters.clone(),
            watch: self.dev.then_some(true),
            api_token: std::env::var("STANZAHOOK_API_TOKEN").ok().filter(|t| !t.is_empty()),
            keep_bodies: self.dev.then_some(true),
        };
        ConfigSource { file: self.config.clone(), overrides }
    }
}

// Stanzas are built on the runtime's threads and freed on the filter threads and back: glibc's
// malloc spent a tenth of the CPU under load on that; mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dev = matches!(&cli.command, Command::Run(s) if s.dev) || matches!(&cli.command, Command::Dev(_));
    init_logging(cli.log_format, dev);
    let mut dev_loop = None;
    let (settings, check_only) = match &cli.command {
        Command::Run(s) => (s, false),
        Command::Dev(args) => {
            // Its filters are built before anything is loaded: on a fresh checkout there is no
            // component yet.
            let mut source = args.settings.source();
            source.overrides.watch = Some(true);
            match build_for_dev(&source) {
                Ok(built) => dev_loop = Some((built, args)),
                Err((code, e)) => {
                    eprintln!("stanzahook: {e:#}");
                    return code;
                }
            }
            (&args.settings, false)
        }
        Command::Check(s) if s.dev => {
            eprintln!("stanzahook: --dev is for `stanzahook run` (check loads the config once and exits)");
            return ExitCode::from(2);
        }
        Command::Check(s) => (s, true),
        Command::Filter(FilterCommand::Run(args)) => return filter_run(args),
        Command::Filter(FilterCommand::Test(args)) => return filter_test(args),
    };
    // One thread for all the async work. A stanza goes through a chain of short steps handed from
    // task to task (connection, sender's lane, HTTP connection, and back); on one thread each
    // hand-off is a queue push, across threads a futex wake and a context switch. Measured under
    // the filters bench's end-to-end load: 40 → 26 µs of CPU per stanza, 20–26k → 31k replies/s.
    // One core of async work carries more than one component stream does; the CPU-heavy work
    // (filter calls, compiling filters) has threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stanzahook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before the filters compile (seconds in a debug build): a SIGHUP meanwhile must not kill.
    let hangups = if check_only { None } else { runtime.block_on(async { stanzahook::watch::hangups() }) };
    let mut source = settings.source();
    if dev_loop.is_some() {
        source.overrides.watch = Some(true);
        source.overrides.keep_bodies = Some(true);
    }
    let reloader = match stanzahook::reload::Reloader::start(source) {
        Ok(reloader) => reloader,
        Err(e) => {
            eprintln!("stanzahook: {e:#}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        let live = reloader.live().load_full();
        println!("config ok: {}", live.config.summary());
        if !live.filters.is_empty() {
            println!("filters compiled: {}", live.filters.names().join(", "));
        }
        return ExitCode::SUCCESS;
    }
    // The test messages' addresses are checked before anything connects: a mistake is a usage error.
    let dev_loop = match dev_loop {
        Some((dev_loop, args)) => {
            let domain = reloader.live().load().config.domain.clone();
            let to = args.to.clone().unwrap_or_else(|| format!("bot@{domain}"));
            match stanzahook::dev::Injector::new(args.from.clone(), to, &domain) {
                Ok((injector, injected)) => Some((dev_loop, std::sync::Arc::new(injector), injected)),
                Err(e) => {
                    eprintln!("stanzahook: {e:#}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let result = runtime.block_on(async {
        let shutdown = stanzahook::shutdown::on_signals();
        let injection = match dev_loop {
            Some((dev_loop, injector, injected)) => {
                dev_loop.spawn_rebuilds(shutdown.clone())?;
                stanzahook::dev::spawn_prompt(injector.clone());
                Some((injector, injected))
            }
            None => None,
        };
        stanzahook::serve(reloader, hangups, injection, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The filters of `stanzahook dev` built from their sources; the exit code for a failure (2 for
/// the config, 1 for a build).
fn build_for_dev(
    source: &stanzahook::config::ConfigSource,
) -> Result<stanzahook::dev::DevLoop, (ExitCode, anyhow::Error)> {
    let config = source.load().map_err(|e| (ExitCode::from(2), e.into()))?;
    let dev_loop = stanzahook::dev::DevLoop::new(&config).map_err(|e| (ExitCode::from(2), e))?;
    dev_loop.build_all().map_err(|e| (ExitCode::FAILURE, e))?;
    Ok(dev_loop)
}

/// `--set KEY=VALUE` flags as a filter's settings; `None` (said) for one without `=`.
fn filter_settings<'a>(
    entries: impl Iterator<Item = &'a String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut config = std::collections::BTreeMap::new();
    for entry in entries {
        let Some((key, value)) = entry.split_once('=') else {
            eprintln!(
                "stanzahook: --set {entry:?}: expected KEY=VALUE, a setting of the filter's config (a config file is \
                 for `stanzahook run` and `check`)"
            );
            return None;
        };
        config.insert(key.to_owned(), value.to_owned());
    }
    Some(config)
}

fn filter_test(args: &FilterTestArgs) -> ExitCode {
    let Some(config) = filter_settings(args.settings.iter()) else { return ExitCode::from(2) };
    let run = stanzahook::filter::cases::CasesRun { wasm: args.wasm.clone(), cases: args.cases.clone(), config };
    match stanzahook::filter::cases::run(&run) {
        Ok(report) => {
            print!("{}", report.text);
            if report.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("stanzahook: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn filter_run(args: &FilterRunArgs) -> ExitCode {
    if !args.old_settings.is_empty() {
        eprintln!("stanzahook: `filter run --config KEY=VALUE` is now `--set KEY=VALUE`");
    }
    let Some(config) = filter_settings(args.settings.iter().chain(&args.old_settings)) else {
        return ExitCode::from(2);
    };
    let run = stanzahook::filter::local::LocalRun {
        wasm: args.wasm.clone(),
        event: args.event.clone(),
        status: args.status,
        reply: args.reply.clone(),
        config,
    };
    match stanzahook::filter::local::run(&run) {
        Ok(report) => {
            print!("{}", report.text);
            if report.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("stanzahook: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, dev: bool) {
    use tracing_subscriber::EnvFilter;
    // tokio-xmpp logs through `log`, which is quiet unless a bridge is installed; its errors reach
    // us as values. Our own default is info (debug for stanzahook itself with --dev).
    let default_filter = if dev { "info,stanzahook=debug" } else { "info" };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    if dev {
        // The one line per stanza is what --dev is for: a RUST_LOG left in the shell keeps it.
        filter = filter.add_directive(stanzahook::way::DIRECTIVE.parse().unwrap_or_default());
    }
    // Colour only for a person at a terminal: a log file, a pipe or the journal gets plain text
    // (and NO_COLOR, https://no-color.org, turns it off there too).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}
