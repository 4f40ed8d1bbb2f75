//! Configuration: the TOML file, the environment and the command-line flags, merged and checked
//! into one `Config`. Raw (as written) and validated types are kept apart so that nothing
//! downstream ever sees an unchecked value.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio_xmpp::jid::Jid;

use crate::filter::{FilterLimits, FilterSettings, Grants, OnError};
use crate::rooms::{Forward, RoomSettings};
use crate::stanza::Kind;

/// The validated configuration.
/// A URL as logs show it: a password replaced by `…`.
pub fn without_password(url: &url::Url) -> url::Url {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("…"));
    }
    url
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The component's domain, e.g. `bot.example.org`.
    pub domain: String,
    /// `host:port` of the server's component listener.
    pub server: String,
    pub secret: Secret,
    pub post_url: url::Url,
    /// Stanza kinds forwarded to the webhook.
    pub stanzas: BTreeSet<KindName>,
    pub webhook: WebhookSettings,
    pub connection: ConnectionLimits,
    pub identity: Identity,
    /// How long in-flight webhook calls may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Filters, in chain order (README: "Filters").
    pub filters: Vec<FilterSettings>,
    /// Reload filters and this file when they change on disk (README: "Reloading while serving").
    pub watch: bool,
    /// Where compiled filters are kept across restarts (README: "Reloading while serving"); `None` when turned off.
    pub compile_cache: Option<PathBuf>,
    /// The operator's HTTP listener (README: "The operator API"); off unless `api.listen` is set.
    pub api: ApiSettings,
    /// Group chats joined on every (re)connect (README: "Group chat"), each room once.
    pub rooms: Vec<RoomSettings>,
    /// Sent in plain text in place of a stanza error, which a room answers with a kick (README:
    /// "Group chat"); `None`: nothing is sent.
    pub room_error_text: Option<String>,
    /// Replies per room per minute, beyond which they are dropped (README: "Group chat").
    pub room_reply_limit: usize,
    /// A room quiet this long gets a self-ping (XEP-0410) to check the bot is still in it.
    pub room_ping_interval: Duration,
    /// Join a room the bot is invited to (README: "Group chat").
    pub accept_invites: bool,
    /// Where what must survive a restart is kept (the rooms joined at run time); `None` when off.
    pub state_dir: Option<PathBuf>,
    /// Receipts and typing notifications sent on the bot's behalf (README: "The JSON contract").
    pub courtesy: Courtesy,
    /// The log of recent deliveries and the failed ones kept (README: "Deliveries").
    pub deliveries: DeliverySettings,
}

/// The `[deliveries]` section (README: "Deliveries").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Deliveries kept in memory, newest last; 0 turns the log off.
    pub log: usize,
    /// What the log may hold in memory, in bytes, whatever `log` says.
    pub log_memory: usize,
    /// Keep what was posted and answered (message text included), not only how it went.
    pub keep_bodies: bool,
    /// How long a failed delivery stays in the state directory's database; `None`: not kept there.
    pub keep_failed_for: Option<Duration>,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            log: 1000,
            log_memory: 8 * 1024 * 1024,
            keep_bodies: false,
            keep_failed_for: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// What stanzahook does for the sender while the webhook works (the `[courtesy]` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Courtesy {
    /// Send a requested receipt (XEP-0184) once the webhook answered 2xx.
    pub receipts: bool,
    /// Show `composing` (XEP-0085) to the sender of a chat message whose webhook call takes
    /// longer than `typing_after`; the reply (or `active`) ends it.
    pub typing: bool,
    pub typing_after: Duration,
}

impl Default for Courtesy {
    fn default() -> Self {
        Courtesy { receipts: true, typing: true, typing_after: Duration::from_secs(1) }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ApiSettings {
    /// `host:port` for `/healthz`, `/metrics` and `/send`.
    pub listen: Option<std::net::SocketAddr>,
    /// The bearer token `POST /send` requires; without one, `/send` is refused.
    pub token: Option<Secret>,
}

/// A stanza kind as it sorts in the config (for stable output).
pub type KindName = &'static str;

impl Config {
    pub fn forwards(&self, kind: Kind) -> bool {
        self.stanzas.contains(kind.as_str())
    }

    /// The keys whose value differs in `new` but which only a restart can change: they belong to
    /// the XMPP connection (or size the pipeline) made at start.
    pub fn restart_required(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (self, new);
        [
            ("domain", a.domain != b.domain),
            ("server", a.server != b.server),
            ("secret", a.secret.expose() != b.secret.expose()),
            ("connection.keepalive", a.connection.keepalive != b.connection.keepalive),
            ("connection.dead_after", a.connection.dead_after != b.connection.dead_after),
            ("connection.max_queued", a.connection.max_queued != b.connection.max_queued),
            ("webhook.max_in_flight", a.webhook.max_in_flight != b.webhook.max_in_flight),
            ("api.listen", a.api.listen != b.api.listen),
            ("state_dir", a.state_dir != b.state_dir),
            ("deliveries.log", a.deliveries.log != b.deliveries.log),
            ("deliveries.log_memory", a.deliveries.log_memory != b.deliveries.log_memory),
            ("deliveries.keep_failed_for", a.deliveries.keep_failed_for != b.deliveries.keep_failed_for),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
    }

    /// `new`, but with this config's values for everything `restart_required` names: a reload
    /// applies the rest and leaves those as the connection was made.
    pub fn with_connection_of(&self, mut new: Config) -> Config {
        new.domain.clone_from(&self.domain);
        new.server.clone_from(&self.server);
        new.secret = self.secret.clone();
        new.connection.keepalive = self.connection.keepalive;
        new.connection.dead_after = self.connection.dead_after;
        new.connection.max_queued = self.connection.max_queued;
        new.webhook.max_in_flight = self.webhook.max_in_flight;
        new.api.listen = self.api.listen;
        new.state_dir.clone_from(&self.state_dir);
        new.deliveries.log = self.deliveries.log;
        new.deliveries.log_memory = self.deliveries.log_memory;
        new.deliveries.keep_failed_for = self.deliveries.keep_failed_for;
        new
    }

    /// One line for logs and `check`: what is served, and where it goes (no credentials).
    pub fn summary(&self) -> String {
        let url = without_password(&self.post_url);
        let kinds = self.stanzas.iter().copied().collect::<Vec<_>>().join(", ");
        format!(
            "serving {} via {}, forwarding {} to {}",
            self.domain,
            self.server,
            if kinds.is_empty() { "nothing" } else { &kinds },
            url
        )
    }
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub timeout: Duration,
    pub max_response_bytes: usize,
    pub max_in_flight: usize,
    /// HTTP connections to the webhook open at once; stanzas in flight beyond them wait for one.
    pub max_connections: usize,
    /// Signs requests when it holds keys (README: "The request").
    pub signer: crate::signing::Signer,
    /// Failed calls tried again (README: "Retries"); off by default.
    pub retries: crate::retries::RetryPolicy,
}

#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub keepalive: Duration,
    pub dead_after: Duration,
    pub max_queued: usize,
    pub max_stanza_bytes: usize,
}

/// The disco#info identity (XEP-0030) the domain shows.
#[derive(Clone, Debug)]
pub struct Identity {
    pub category: String,
    pub kind: String,
    pub name: String,
}

/// The component secret; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Values from the command line (and `STANZAHOOK_SECRET`) that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub domain: Option<String>,
    pub server: Option<String>,
    pub secret: Option<String>,
    pub post_url: Option<String>,
    pub stanzas: Option<Vec<String>>,
    /// `--filter PATH`: filters with default settings, after those of the file.
    pub filters: Vec<PathBuf>,
    /// `--dev` turns watching on whatever the file says.
    pub watch: Option<bool>,
    /// `STANZAHOOK_API_TOKEN`: the `/send` token, kept out of the file.
    pub api_token: Option<String>,
    /// `--dev` keeps the bodies of deliveries unless the file says otherwise.
    pub keep_bodies: Option<bool>,
}

/// Where the configuration comes from: read again on reload, with the same overrides.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(self.file.as_deref(), &self.overrides)
    }
}

/// A configuration mistake, as one line that names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "config error in {}", file.display())?,
            None => f.write_str("config error")?,
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The file as written. Option names of Prosody's mod_component_http are accepted as aliases so
/// that an operator's settings carry over.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    domain: Option<String>,
    server: Option<String>,
    #[serde(alias = "component_secret")]
    secret: Option<String>,
    #[serde(alias = "component_post_url")]
    post_url: Option<String>,
    #[serde(alias = "component_post_stanzas", alias = "post_stanza_types")]
    stanzas: Option<Vec<String>>,
    shutdown_grace: Option<String>,
    watch: Option<bool>,
    compile_cache: Option<String>,
    #[serde(default)]
    webhook: RawWebhook,
    #[serde(default)]
    connection: RawConnection,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    courtesy: RawCourtesy,
    #[serde(default)]
    deliveries: RawDeliveries,
    #[serde(default, rename = "filter")]
    filters: Vec<RawFilter>,
    #[serde(default, rename = "room")]
    rooms: Vec<RawRoom>,
    room_error_text: Option<String>,
    room_reply_limit: Option<usize>,
    room_ping_interval: Option<String>,
    accept_invites: Option<bool>,
    state_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    jid: String,
    nick: String,
    password: Option<String>,
    address: Option<String>,
    forward: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    path: String,
    name: Option<String>,
    on_error: Option<String>,
    cpu_limit: Option<String>,
    memory_limit: Option<usize>,
    max_output: Option<usize>,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    read_dirs: Vec<String>,
    reuse_instances: Option<bool>,
    source: Option<String>,
    build: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    timeout: Option<String>,
    max_response_size: Option<usize>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    #[serde(default)]
    signing_secrets: Vec<String>,
    retries: Option<u32>,
    retry_delay: Option<String>,
    retry_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeliveries {
    log: Option<usize>,
    log_memory: Option<usize>,
    keep_bodies: Option<bool>,
    keep_failed_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCourtesy {
    receipts: Option<bool>,
    typing: Option<bool>,
    typing_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    keepalive: Option<String>,
    dead_after: Option<String>,
    max_queued: Option<usize>,
    max_stanza_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    category: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
}

/// A directory of this program's, as systemd gives it (`systemd_var`: the first of a colon list),
/// else under the XDG base directory `xdg_var`, else under `~/{home_dir}`: `…/stanzahook`.
pub fn standard_dir(systemd_var: &str, xdg_var: &str, home_dir: &str) -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(systemd_var) {
        return dir.to_string_lossy().split(':').next().map(PathBuf::from);
    }
    var(xdg_var).or_else(|| var("HOME").map(|h| h.join(home_dir))).map(|d| d.join("stanzahook"))
}

/// Prosody closes the whole component stream for a stanza over 512 KiB; stay well below.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 256 * 1024;

/// Reads `file` (if any), applies `overrides`, and validates.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let raw = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.to_owned()),
                key: None,
                message: format!("cannot read the file: {e}"),
            })?;
            parse_toml(&text).map_err(|mut e| {
                e.file = Some(path.to_owned());
                e
            })?
        }
        None => RawConfig::default(),
    };
    let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
    validate(raw, overrides, base).map_err(|mut e| {
        e.file = file.map(Path::to_owned);
        e
    })
}

/// Parses TOML text; exposed for tests of config files.
pub fn from_toml_str(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    validate(parse_toml(text)?, overrides, Path::new("."))
}

fn parse_toml(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_owned();
        let (key, message) = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line_no = before.matches('\n').count() + 1;
                let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                let name = line.split('=').next().map(|k| k.trim().trim_matches('"').to_owned());
                let name = name.filter(|k| !k.is_empty() && !k.starts_with('['));
                let key = name.map(|name| match section_of(before) {
                    Some(section) => format!("{section}.{name}"),
                    None => name,
                });
                (key, format!("{} (line {line_no}: {line})", explain(&message)))
            }
            None => (None, message),
        };
        ConfigError { file: None, key, message }
    })
}

/// The table the text before an error is in, as the config's keys name it: `webhook`, or
/// `filter[1]` for the second `[[filter]]`; `None` at the top level.
fn section_of(before: &str) -> Option<String> {
    let header = before.lines().rfind(|l| l.trim_start().starts_with('['))?.trim();
    if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
        let name = name.trim();
        let index = before
            .lines()
            .filter(|l| l.trim().strip_prefix("[[").is_some_and(|h| h.trim_start().starts_with(name)))
            .count();
        return Some(format!("{name}[{}]", index.saturating_sub(1)));
    }
    let name = header.strip_prefix('[')?.split(']').next()?.trim();
    Some(name.to_owned())
}

/// serde's message, said for a person: an unknown key gets the closest known one, a duration
/// written as a number gets how to write it.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((unknown, expected)) = rest.split_once("`, expected one of ")
    {
        let known: Vec<&str> = expected.split(", ").map(|k| k.trim_matches('`')).collect();
        let closest = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
            .min()
            .filter(|(distance, k)| *distance <= 2.max(k.len() / 4));
        return match closest {
            Some((_, k)) => format!("unknown key `{unknown}`; did you mean `{k}`?"),
            None => format!("unknown key `{unknown}`; the keys here are {expected}"),
        };
    }
    if message.starts_with("invalid type: integer") && message.ends_with("expected a string") {
        return format!("{message}: a duration is written as a string, like \"5s\" or \"500ms\"");
    }
    message.to_owned()
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { file: None, key: Some(key.to_owned()), message: message.into() }
}

fn validate(raw: RawConfig, ov: &Overrides, base: &Path) -> Result<Config, ConfigError> {
    let domain = required(ov.domain.clone().or(raw.domain), "domain", "--domain")?;
    match Jid::new(&domain) {
        Ok(jid) if jid.node().is_none() && jid.resource().is_none() && jid.domain().as_str() == domain => {}
        _ => {
            return Err(err("domain", format!("{domain:?} is not a plain domain like bot.example.org")));
        }
    }

    let server = required(ov.server.clone().or(raw.server), "server", "--server")?;
    check_host_port(&server).map_err(|why| err("server", format!("{server:?} is not HOST:PORT: {why}")))?;

    let secret = required(ov.secret.clone().or(raw.secret), "secret", "--secret or STANZAHOOK_SECRET")?;

    let post_url = required(ov.post_url.clone().or(raw.post_url), "post_url", "--post-url")?;
    let post_url =
        url::Url::parse(&post_url).map_err(|e| err("post_url", format!("{post_url:?} is not a URL: {e}")))?;
    if !matches!(post_url.scheme(), "http" | "https") {
        return Err(err("post_url", format!("{post_url} must be an http:// or https:// URL")));
    }

    let names = ov.stanzas.clone().or(raw.stanzas).unwrap_or_else(|| vec!["message".into()]);
    let mut stanzas = BTreeSet::new();
    for name in &names {
        match Kind::from_name(name.trim()) {
            Some(kind) => {
                stanzas.insert(kind.as_str());
            }
            None => {
                return Err(err("stanzas", format!("unknown stanza kind {name:?}; use message, presence or iq")));
            }
        }
    }

    let webhook = WebhookSettings {
        timeout: duration(raw.webhook.timeout, "webhook.timeout", Duration::from_secs(10))?,
        max_response_bytes: positive(raw.webhook.max_response_size, "webhook.max_response_size", 1024 * 1024)?,
        max_in_flight: positive(raw.webhook.max_in_flight, "webhook.max_in_flight", 256)?,
        max_connections: positive(raw.webhook.max_connections, "webhook.max_connections", 1024)?,
        signer: crate::signing::Signer::from_secrets(&raw.webhook.signing_secrets)
            .map_err(|why| err("webhook.signing_secrets", why))?,
        retries: {
            let defaults = crate::retries::RetryPolicy::default();
            crate::retries::RetryPolicy {
                retries: raw.webhook.retries.unwrap_or(0),
                first_delay: duration(raw.webhook.retry_delay, "webhook.retry_delay", defaults.first_delay)?,
                give_up_after: duration(raw.webhook.retry_for, "webhook.retry_for", defaults.give_up_after)?,
            }
        },
    };
    let connection = ConnectionLimits {
        keepalive: duration(raw.connection.keepalive, "connection.keepalive", Duration::from_secs(30))?,
        dead_after: duration(raw.connection.dead_after, "connection.dead_after", Duration::from_secs(30))?,
        max_queued: positive(raw.connection.max_queued, "connection.max_queued", 10_000)?,
        max_stanza_bytes: positive(
            raw.connection.max_stanza_size,
            "connection.max_stanza_size",
            DEFAULT_MAX_STANZA_BYTES,
        )?,
    };
    let identity = Identity {
        category: raw.identity.category.unwrap_or_else(|| "client".into()),
        kind: raw.identity.kind.unwrap_or_else(|| "bot".into()),
        name: raw.identity.name.unwrap_or_else(|| domain.clone()),
    };
    let shutdown_grace = duration(raw.shutdown_grace, "shutdown_grace", Duration::from_secs(10))?;
    let mut filters = Vec::new();
    for (i, raw) in raw.filters.into_iter().enumerate() {
        filters.push(filter(raw, i, base)?);
    }
    filters.extend(ov.filters.iter().cloned().map(FilterSettings::from_path));
    let mut names = BTreeSet::new();
    for f in &filters {
        if !names.insert(f.name.as_str()) {
            return Err(err("filter.name", format!("two filters are named `{}`; give each its own `name`", f.name)));
        }
    }

    let compile_cache = match raw.compile_cache.as_deref().map(str::trim) {
        None => crate::filter::CompileCache::default_dir(),
        Some("off") => None,
        Some("") => return Err(err("compile_cache", "must be a directory, or \"off\"")),
        Some(dir) => Some(base.join(dir)),
    };

    let listen = match raw.api.listen.as_deref().map(str::trim) {
        None => None,
        Some(text) => Some(
            text.parse::<std::net::SocketAddr>()
                .map_err(|e| err("api.listen", format!("{text:?} is not an address like 127.0.0.1:8081: {e}")))?,
        ),
    };
    let token = match ov.api_token.clone().or(raw.api.token) {
        None => None,
        Some(t) if t.trim().len() < 16 => {
            return Err(err("api.token", "must be at least 16 characters (it guards POST /send)"));
        }
        Some(t) => Some(Secret(t.trim().to_owned())),
    };
    let api = ApiSettings { listen, token };

    let mut rooms: Vec<RoomSettings> = Vec::new();
    for (i, raw) in raw.rooms.into_iter().enumerate() {
        let settings = room(raw, i, &domain)?;
        if rooms.iter().any(|r| r.jid == settings.jid) {
            return Err(err(&format!("room[{i}].jid"), format!("{} is listed twice", settings.jid)));
        }
        rooms.push(settings);
    }
    let room_error_text = raw.room_error_text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let room_reply_limit = positive(raw.room_reply_limit, "room_reply_limit", 60)?;
    let room_ping_interval = duration(raw.room_ping_interval, "room_ping_interval", Duration::from_secs(300))?;
    let state_dir = match raw.state_dir.as_deref().map(str::trim) {
        None => standard_dir("STATE_DIRECTORY", "XDG_STATE_HOME", ".local/state"),
        Some("off") => None,
        Some("") => return Err(err("state_dir", "must be a directory, or \"off\"")),
        Some(dir) => Some(base.join(dir)),
    };

    let defaults = Courtesy::default();
    let courtesy = Courtesy {
        receipts: raw.courtesy.receipts.unwrap_or(defaults.receipts),
        typing: raw.courtesy.typing.unwrap_or(defaults.typing),
        typing_after: duration(raw.courtesy.typing_after, "courtesy.typing_after", defaults.typing_after)?,
    };
    let deliveries = delivery_settings(raw.deliveries, ov)?;

    Ok(Config {
        domain,
        server,
        secret: Secret(secret),
        post_url,
        stanzas,
        webhook,
        connection,
        identity,
        shutdown_grace,
        filters,
        watch: ov.watch.or(raw.watch).unwrap_or(false),
        compile_cache,
        api,
        rooms,
        room_error_text,
        room_reply_limit,
        room_ping_interval,
        accept_invites: raw.accept_invites.unwrap_or(false),
        state_dir,
        courtesy,
        deliveries,
    })
}

/// The `[deliveries]` section: `--dev` keeps bodies unless the file turns them off.
fn delivery_settings(raw: RawDeliveries, ov: &Overrides) -> Result<DeliverySettings, ConfigError> {
    let defaults = DeliverySettings::default();
    let keep_failed_for = match raw.keep_failed_for {
        Some(text) if text.trim() == "off" => None,
        Some(text) => Some(duration(Some(text), "deliveries.keep_failed_for", Duration::ZERO)?),
        None => defaults.keep_failed_for,
    };
    Ok(DeliverySettings {
        log: raw.log.unwrap_or(defaults.log),
        log_memory: positive(raw.log_memory, "deliveries.log_memory", defaults.log_memory)?,
        keep_bodies: raw.keep_bodies.or(ov.keep_bodies).unwrap_or(defaults.keep_bodies),
        keep_failed_for,
    })
}

/// A room asked for at run time (`POST /rooms`), with the keys and checks of a `[[room]]` entry;
/// the error names the key.
pub fn room_from_json(value: serde_json::Value, domain: &str) -> Result<RoomSettings, String> {
    let raw: RawRoom = serde_json::from_value(value).map_err(|e| e.to_string())?;
    room(raw, 0, domain).map_err(|e| {
        let key = e.key.as_deref().map(|k| k.trim_start_matches("room[0].")).unwrap_or("room");
        format!("`{key}`: {}", e.message)
    })
}

/// One `[[room]]` entry: the room's bare address, the nick, and the occupant address, which must
/// be the component's domain or a bare address at it (a room accepts messages only from the exact
/// address that joined, and the server only from the component's own domain).
fn room(raw: RawRoom, index: usize, domain: &str) -> Result<RoomSettings, ConfigError> {
    let key = |name: &str| format!("room[{index}].{name}");
    let jid = match Jid::new(raw.jid.trim()) {
        Ok(jid) if jid.node().is_some() && jid.resource().is_none() => jid.to_bare(),
        _ => {
            return Err(err(
                &key("jid"),
                format!("{:?} is not a room address like room@conference.example.org", raw.jid),
            ));
        }
    };
    if crate::stanza::is_at_domain(jid.as_str(), domain) {
        return Err(err(&key("jid"), format!("{jid} is at the component's own domain; a room lives on a MUC service")));
    }
    let nick = raw.nick.trim().to_owned();
    if nick.is_empty() || Jid::new(&format!("{jid}/{nick}")).is_err() {
        return Err(err(&key("nick"), format!("{:?} cannot be a nick", raw.nick)));
    }
    let address = match raw.address.as_deref().map(str::trim) {
        None => domain.to_owned(),
        Some(text) => match Jid::new(text) {
            Ok(jid) if jid.resource().is_none() && jid.domain().as_str() == domain => jid.to_string(),
            _ => {
                return Err(err(
                    &key("address"),
                    format!("{text:?} must be {domain} or a bare address at it, like bot@{domain}"),
                ));
            }
        },
    };
    let forward = match raw.forward.as_deref().map(str::trim) {
        None | Some("all") => Forward::All,
        Some("mentions") => Forward::Mentions,
        Some(other) => return Err(err(&key("forward"), format!("{other:?} is not \"all\" or \"mentions\""))),
    };
    let password = raw.password.filter(|p| !p.is_empty()).map(Secret);
    Ok(RoomSettings { jid, nick, password, address, forward })
}

fn filter(raw: RawFilter, index: usize, base: &Path) -> Result<FilterSettings, ConfigError> {
    let key = |name: &str| format!("filter[{index}].{name}");
    let path = base.join(&raw.path);
    let mut settings = FilterSettings::from_path(path);
    if let Some(name) = raw.name {
        settings.name = name;
    }
    settings.on_error = match raw.on_error.as_deref() {
        None | Some("skip") => OnError::Skip,
        Some("reject") => OnError::Reject,
        Some(other) => return Err(err(&key("on_error"), format!("{other:?} is not \"skip\" or \"reject\""))),
    };
    let defaults = FilterLimits::default();
    settings.limits = FilterLimits {
        cpu: duration(raw.cpu_limit, &key("cpu_limit"), defaults.cpu)?,
        memory_bytes: positive(raw.memory_limit, &key("memory_limit"), defaults.memory_bytes)?,
        max_output_bytes: positive(raw.max_output, &key("max_output"), defaults.max_output_bytes)?,
    };
    if settings.limits.memory_bytes > crate::filter::MAX_MEMORY_BYTES {
        return Err(err(&key("memory_limit"), format!("at most {} bytes", crate::filter::MAX_MEMORY_BYTES)));
    }
    settings.config = raw.config;
    settings.grants = Grants { env: raw.env, read_dirs: raw.read_dirs.iter().map(|d| base.join(d)).collect() };
    settings.reuse_instances = raw.reuse_instances.unwrap_or(true);
    settings.source = match (raw.source, raw.build) {
        (Some(dir), build) if !dir.trim().is_empty() => {
            let build = build.filter(|b| !b.trim().is_empty());
            Some(crate::filter::FilterSource { dir: base.join(dir.trim()), build })
        }
        (Some(_), _) => return Err(err(&key("source"), "must not be empty")),
        (None, Some(_)) => {
            return Err(err(&key("build"), "needs `source`, the directory the command builds the filter from"));
        }
        (None, None) => None,
    };
    Ok(settings)
}

fn required(value: Option<String>, key: &str, flag: &str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(err(key, "must not be empty")),
        None => Err(err(key, format!("missing; set it in the config file or pass {flag}"))),
    }
}

fn duration(value: Option<String>, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| err(key, format!("{text:?} is not a duration like \"10s\" or \"500ms\": {e}")))?;
    if d.is_zero() {
        return Err(err(key, "must be greater than zero"));
    }
    Ok(d)
}

fn positive(value: Option<usize>, key: &str, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(err(key, "must be greater than zero")),
        Some(n) => Ok(n),
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s.rsplit_once(':').ok_or("no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("no host".into());
    }
    port.parse::<u16>().map_err(|e| format!("bad port {port:?}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
domain = "bot.example.org"
server = "127.0.0.1:5347"
secret = "s3cret"
post_url = "http://127.0.0.1:8080/hook"
"#;

    /// One bad config in, the expected one-line error out (rust-analyzer's `check` style).
    fn check_err(extra: &str, expected: &str) {
        let text = format!("{BASE}{extra}");
        match from_toml_str(&text, &Overrides::default()) {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(e) => assert_eq!(e.to_string(), expected, "for:\n{extra}"),
        }
    }

    #[test]
    fn defaults() {
        let c = from_toml_str(BASE, &Overrides::default()).expect("valid");
        assert!(c.forwards(Kind::Message) && !c.forwards(Kind::Iq) && !c.forwards(Kind::Presence));
        assert_eq!(c.webhook.timeout, Duration::from_secs(10));
        assert_eq!(c.webhook.max_response_bytes, 1024 * 1024);
        assert_eq!((c.webhook.max_in_flight, c.webhook.max_connections), (256, 1024));
        assert_eq!(c.connection.max_stanza_bytes, 256 * 1024);
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!((c.identity.category.as_str(), c.identity.kind.as_str()), ("client", "bot"));
        assert!(!format!("{c:?}").contains("s3cret"), "the secret leaks through Debug");
    }

    #[test]
    fn rooms_are_read_and_their_mistakes_named() {
        let text = format!(
            "{BASE}room_error_text = \"Sorry, that failed.\"\n[[room]]\njid = \"Dev@Conference.example.org\"\nnick = \"Bot\"\npassword = \"pw\"\n\
             [[room]]\njid = \"ops@conference.example.org\"\nnick = \"Bot\"\naddress = \"alerts@bot.example.org\"\nforward = \"mentions\"\n"
        );
        let c = from_toml_str(&text, &Overrides::default()).expect("valid");
        assert_eq!(c.rooms.len(), 2);
        assert_eq!(c.rooms[0].jid.as_str(), "dev@conference.example.org");
        assert_eq!(c.rooms[0].address, "bot.example.org", "the domain is the default occupant");
        assert_eq!(c.rooms[1].address, "alerts@bot.example.org");
        assert_eq!(c.rooms[1].forward, Forward::Mentions);
        assert_eq!(c.room_reply_limit, 60);
        assert_eq!(c.room_ping_interval, Duration::from_secs(300));
        assert!(!c.accept_invites, "invitations are not accepted unless asked for");
        let off = from_toml_str(&format!("state_dir = \"off\"\n{BASE}"), &Overrides::default()).expect("valid");
        assert_eq!(off.state_dir, None);
        let e =
            from_toml_str(&format!("state_dir = \"\"\n{BASE}"), &Overrides::default()).expect_err("empty").to_string();
        assert!(e.contains("`state_dir`: must be a directory"), "{e}");
        assert_eq!(c.room_error_text.as_deref(), Some("Sorry, that failed."));
        assert!(!format!("{c:?}").contains("\"pw\""), "a room password leaks through Debug");
        let room = |entry: &str| format!("{BASE}[[room]]\n{entry}\n");
        for (entry, expected) in [
            (
                "jid = \"conference.example.org\"\nnick = \"b\"",
                "`room[0].jid`: \"conference.example.org\" is not a room address",
            ),
            (
                "jid = \"r@bot.example.org\"\nnick = \"b\"",
                "`room[0].jid`: r@bot.example.org is at the component's own domain",
            ),
            ("jid = \"r@c.example.org\"\nnick = \"\"", "`room[0].nick`: \"\" cannot be a nick"),
            (
                "jid = \"r@c.example.org\"\nnick = \"b\"\naddress = \"x@elsewhere.example\"",
                "`room[0].address`: \"x@elsewhere.example\" must be bot.example.org or a bare address at it",
            ),
            (
                "jid = \"r@c.example.org\"\nnick = \"b\"\nforward = \"some\"",
                "`room[0].forward`: \"some\" is not \"all\" or \"mentions\"",
            ),
            ("jid = \"r@c.example.org\"", "missing field `nick`"),
        ] {
            let e = from_toml_str(&room(entry), &Overrides::default()).expect_err(entry).to_string();
            assert!(e.contains(expected), "{entry}: {e}");
        }
        let twice = format!(
            "{BASE}[[room]]\njid = \"r@c.example.org\"\nnick = \"a\"\n[[room]]\njid = \"R@c.example.org\"\nnick = \"b\"\n"
        );
        let e = from_toml_str(&twice, &Overrides::default()).expect_err("twice").to_string();
        assert!(e.contains("`room[1].jid`: r@c.example.org is listed twice"), "{e}");
    }

    #[test]
    fn reference_option_names_are_aliases() {
        let text = r#"
domain = "bot.example.org"
server = "127.0.0.1:5347"
component_secret = "x"
component_post_url = "http://h/"
component_post_stanzas = ["message", "iq"]
"#;
        let c = from_toml_str(text, &Overrides::default()).expect("valid");
        assert_eq!(c.post_url.as_str(), "http://h/");
        assert!(c.forwards(Kind::Iq));
        let text = text.replace("component_post_stanzas", "post_stanza_types");
        assert!(from_toml_str(&text, &Overrides::default()).expect("valid").forwards(Kind::Iq));
    }

    #[test]
    fn errors_name_the_key() {
        check_err(
            "bogus = 1\n",
            "config error: `bogus`: unknown key `bogus`; the keys here are `domain`, `server`, `component_secret`, `secret`, `component_post_url`, `post_url`, `component_post_stanzas`, `post_stanza_types`, `stanzas`, `shutdown_grace`, `watch`, `compile_cache`, `webhook`, `connection`, `identity`, `api`, `courtesy`, `deliveries`, `filter`, `room`, `room_error_text`, `room_reply_limit`, `room_ping_interval`, `accept_invites`, `state_dir` (line 6: bogus = 1)",
        );
        check_err(
            "post_ulr = \"x\"\n",
            "config error: `post_ulr`: unknown key `post_ulr`; did you mean `post_url`? (line 6: post_ulr = \"x\")",
        );
        check_err(
            "[webhook]\ntimout = \"5s\"\n",
            "config error: `webhook.timout`: unknown key `timout`; did you mean `timeout`? (line 7: timout = \"5s\")",
        );
        check_err(
            "[[filter]]\npath = \"a.wasm\"\n[[filter]]\npath = \"b.wasm\"\non_eror = \"skip\"\n",
            "config error: `filter[1].on_eror`: unknown key `on_eror`; did you mean `on_error`? (line 10: on_eror = \"skip\")",
        );
        check_err(
            "stanzas = [\"mesage\"]\n",
            "config error: `stanzas`: unknown stanza kind \"mesage\"; use message, presence or iq",
        );
        check_err(
            "[webhook]\ntimeout = \"soon\"\n",
            "config error: `webhook.timeout`: \"soon\" is not a duration like \"10s\" or \"500ms\": expected number at 0",
        );
        check_err("[webhook]\nmax_in_flight = 0\n", "config error: `webhook.max_in_flight`: must be greater than zero");
        check_err(
            "[webhook]\nsigning_secrets = [\"hunter2\"]\n",
            "config error: `webhook.signing_secrets`: secret 1 does not start with `whsec_`",
        );
        check_err(
            "[webhook]\ntimeout = 10\n",
            "config error: `webhook.timeout`: invalid type: integer `10`, expected a string: a duration is written as a string, like \"5s\" or \"500ms\" (line 7: timeout = 10)",
        );
        check_err(
            "[connection]\nmax_queued = -1\n",
            "config error: `connection.max_queued`: invalid value: integer `-1`, expected usize (line 7: max_queued = -1)",
        );
    }

    #[test]
    fn bad_values_of_the_basics() {
        let bad = |key: &str, value: &str| {
            let text = BASE
                .lines()
                .map(|l| if l.starts_with(key) { format!("{key} = {value}") } else { l.to_owned() })
                .collect::<Vec<_>>()
                .join("\n");
            from_toml_str(&text, &Overrides::default()).expect_err("accepted").to_string()
        };
        assert_eq!(bad("server", "\"localhost\""), "config error: `server`: \"localhost\" is not HOST:PORT: no port");
        assert_eq!(
            bad("server", "\"h:99999\""),
            "config error: `server`: \"h:99999\" is not HOST:PORT: bad port \"99999\": number too large to fit in target type"
        );
        assert_eq!(
            bad("domain", "\"a@b\""),
            "config error: `domain`: \"a@b\" is not a plain domain like bot.example.org"
        );
        assert_eq!(
            bad("post_url", "\"ftp://x/\""),
            "config error: `post_url`: ftp://x/ must be an http:// or https:// URL"
        );
        assert_eq!(
            bad("post_url", "\"not a url\""),
            "config error: `post_url`: \"not a url\" is not a URL: relative URL without a base"
        );
        assert_eq!(bad("secret", "\"\""), "config error: `secret`: must not be empty");
    }

    #[test]
    fn flags_override_and_complete_the_file() {
        let ov = Overrides {
            domain: Some("other.example".into()),
            stanzas: Some(vec!["iq".into(), "presence".into()]),
            ..Overrides::default()
        };
        let c = from_toml_str(BASE, &ov).expect("valid");
        assert_eq!(c.domain, "other.example");
        assert!(c.forwards(Kind::Iq) && c.forwards(Kind::Presence) && !c.forwards(Kind::Message));

        let missing =
            from_toml_str("domain = \"d.example\"\nserver = \"h:1\"\nsecret = \"s\"\n", &Overrides::default())
                .expect_err("accepted");
        assert_eq!(
            missing.to_string(),
            "config error: `post_url`: missing; set it in the config file or pass --post-url"
        );
        let ov = Overrides { post_url: Some("http://h/".into()), ..Overrides::default() };
        assert!(from_toml_str("domain = \"d.example\"\nserver = \"h:1\"\nsecret = \"s\"\n", &ov).is_ok());
    }

    #[test]
    fn filters_are_read_in_order_with_their_settings() {
        let text = format!(
            "{BASE}
[[filter]]
path = \"f/a.wasm\"
on_error = \"reject\"
cpu_limit = \"20ms\"
memory_limit = 1048576
reuse_instances = false
[filter.config]
prefix = \"!\"

[[filter]]
path = \"/abs/b.wasm\"
name = \"second\"
"
        );
        let ov = Overrides { filters: vec![PathBuf::from("c.wasm")], ..Overrides::default() };
        let c = from_toml_str(&text, &ov).expect("valid");
        let names: Vec<_> = c.filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "second", "c"]);
        assert_eq!(c.filters[0].path, Path::new("./f/a.wasm"));
        assert_eq!(c.filters[1].path, Path::new("/abs/b.wasm"));
        assert_eq!(c.filters[0].on_error, OnError::Reject);
        assert_eq!(c.filters[1].on_error, OnError::Skip);
        assert_eq!(c.filters[0].limits.cpu, Duration::from_millis(20));
        assert_eq!(c.filters[0].limits.memory_bytes, 1 << 20);
        assert_eq!(c.filters[0].config.get("prefix").map(String::as_str), Some("!"));
        assert!(!c.filters[0].reuse_instances);
        assert!(c.filters[1].reuse_instances, "the filter's own answer decides by default");
        assert_eq!(c.filters[0].source, None);
        let text = format!("{BASE}\n[[filter]]\npath = \"a.wasm\"\nsource = \"src/a\"\nbuild = \"make\"\n");
        let c = from_toml_str(&text, &Overrides::default()).expect("valid");
        let source = c.filters[0].source.as_ref().expect("a source");
        assert_eq!((source.dir.as_path(), source.build.as_deref()), (Path::new("./src/a"), Some("make")));
    }

    #[test]
    fn retries_are_off_unless_asked_for_and_their_mistakes_name_the_key() {
        let c = from_toml_str(BASE, &Overrides::default()).expect("valid");
        assert!(!c.webhook.retries.is_on());
        let text = format!("{BASE}\n[webhook]\nretries = 2\nretry_delay = \"250ms\"\nretry_for = \"5s\"\n");
        let retries = from_toml_str(&text, &Overrides::default()).expect("valid").webhook.retries;
        assert_eq!(
            (retries.retries, retries.first_delay, retries.give_up_after),
            (2, Duration::from_millis(250), Duration::from_secs(5))
        );
        check_err(
            "[webhook]\nretry_delay = \"soon\"\n",
            "config error: `webhook.retry_delay`: \"soon\" is not a duration like \"10s\" or \"500ms\": expected number at 0",
        );
        let e = from_toml_str(&format!("{BASE}[webhook]\nretries = -1\n"), &Overrides::default()).expect_err("refused");
        assert!(e.to_string().contains("webhook.retries"), "{e}");
    }

    #[test]
    fn filter_mistakes_name_the_entry() {
        check_err(
            "[[filter]]\npath = \"a.wasm\"\non_error = \"ignore\"\n",
            "config error: `filter[0].on_error`: \"ignore\" is not \"skip\" or \"reject\"",
        );
        check_err(
            "[[filter]]\npath = \"a.wasm\"\nmemory_limit = 4294967296\n",
            "config error: `filter[0].memory_limit`: at most 1073741824 bytes",
        );
        check_err(
            "[[filter]]\npath = \"a.wasm\"\nbuild = \"make\"\n",
            "config error: `filter[0].build`: needs `source`, the directory the command builds the filter from",
        );
        check_err(
            "[[filter]]\npath = \"x/a.wasm\"\n[[filter]]\npath = \"y/a.wasm\"\n",
            "config error: `filter.name`: two filters are named `a`; give each its own `name`",
        );
    }

    #[test]
    fn the_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "domian = \"x\"\n").expect("write");
        let e = load(Some(&path), &Overrides::default()).expect_err("accepted");
        assert!(
            e.to_string().starts_with(&format!(
                "config error in {}: `domian`: unknown key `domian`; did you mean `domain`?",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn deliveries_have_defaults_dev_keeps_bodies_and_the_file_decides_last() {
        let c = from_toml_str(BASE, &Overrides::default()).expect("valid");
        assert_eq!(c.deliveries, DeliverySettings::default());
        assert!(!c.deliveries.keep_bodies);
        let dev = Overrides { keep_bodies: Some(true), ..Overrides::default() };
        assert!(from_toml_str(BASE, &dev).expect("valid").deliveries.keep_bodies, "--dev keeps bodies");
        let text = format!(
            "{BASE}\n[deliveries]\nlog = 0\nlog_memory = 4096\nkeep_bodies = false\nkeep_failed_for = \"off\"\n"
        );
        let c = from_toml_str(&text, &dev).expect("valid");
        assert_eq!(
            c.deliveries,
            DeliverySettings { log: 0, log_memory: 4096, keep_bodies: false, keep_failed_for: None }
        );
        let text = format!("{BASE}\n[deliveries]\nkeep_failed_for = \"2d\"\n");
        let c = from_toml_str(&text, &Overrides::default()).expect("valid");
        assert_eq!(c.deliveries.keep_failed_for, Some(Duration::from_secs(2 * 24 * 3600)));
        let e = from_toml_str(&format!("{BASE}\n[deliveries]\nkeep_failed_for = \"soon\"\n"), &Overrides::default())
            .expect_err("bad")
            .to_string();
        assert!(e.contains("`deliveries.keep_failed_for`"), "{e}");
        let e = from_toml_str(&format!("{BASE}\n[deliveries]\nlog_memory = 0\n"), &Overrides::default())
            .expect_err("bad")
            .to_string();
        assert!(e.contains("`deliveries.log_memory`"), "{e}");
    }

    #[test]
    fn watch_and_compile_cache() {
        let c = from_toml_str(BASE, &Overrides::default()).expect("valid");
        assert!(!c.watch);
        let dev = Overrides { watch: Some(true), ..Overrides::default() };
        assert!(from_toml_str(&format!("{BASE}watch = false\n"), &dev).expect("valid").watch, "--dev wins");
        let c = from_toml_str(&format!("{BASE}compile_cache = \"off\"\n"), &Overrides::default()).expect("valid");
        assert_eq!(c.compile_cache, None);
        let c = from_toml_str(&format!("{BASE}compile_cache = \"cache\"\n"), &Overrides::default()).expect("valid");
        assert_eq!(c.compile_cache, Some(PathBuf::from("./cache")));
        check_err("compile_cache = \" \"\n", "config error: `compile_cache`: must be a directory, or \"off\"");
        check_err(
            "watch = \"yes\"\n",
            "config error: `watch`: invalid type: string \"yes\", expected a boolean (line 6: watch = \"yes\")",
        );
    }

    #[test]
    fn a_reload_keeps_the_connection_settings_and_applies_the_rest() {
        let old = from_toml_str(BASE, &Overrides::default()).expect("valid");
        let text = BASE.replace("bot.example.org", "other.example.org").replace("8080", "9090")
            + "stanzas = [\"iq\"]\n[connection]\nkeepalive = \"5s\"\n[webhook]\nmax_in_flight = 3\ntimeout = \"2s\"\n";
        let new = from_toml_str(&text, &Overrides::default()).expect("valid");
        assert_eq!(old.restart_required(&new), ["domain", "connection.keepalive", "webhook.max_in_flight"]);
        let applied = old.with_connection_of(new);
        assert_eq!(applied.domain, "bot.example.org");
        assert_eq!(applied.connection.keepalive, Duration::from_secs(30));
        assert_eq!(applied.webhook.max_in_flight, 256);
        assert_eq!(applied.post_url.as_str(), "http://127.0.0.1:9090/hook");
        assert_eq!(applied.webhook.timeout, Duration::from_secs(2));
        assert!(applied.forwards(Kind::Iq) && !applied.forwards(Kind::Message));
        assert!(old.restart_required(&applied).is_empty());
    }

    #[test]
    fn the_api_listener_and_its_token() {
        let c = from_toml_str(BASE, &Overrides::default()).expect("valid");
        assert!(c.api.listen.is_none() && c.api.token.is_none(), "off by default");
        let text = format!("{BASE}[api]\nlisten = \"127.0.0.1:8081\"\ntoken = \"0123456789abcdef\"\n");
        let c = from_toml_str(&text, &Overrides::default()).expect("valid");
        assert_eq!(c.api.listen, Some("127.0.0.1:8081".parse().expect("addr")));
        assert_eq!(c.api.token.as_ref().map(Secret::expose), Some("0123456789abcdef"));
        let env = Overrides { api_token: Some("from-the-environment".into()), ..Overrides::default() };
        let c = from_toml_str(&text, &env).expect("valid");
        assert_eq!(c.api.token.as_ref().map(Secret::expose), Some("from-the-environment"), "the environment wins");
        check_err(
            "[api]\nlisten = \"localhost\"\n",
            "config error: `api.listen`: \"localhost\" is not an address like 127.0.0.1:8081: invalid socket address syntax",
        );
        check_err(
            "[api]\ntoken = \"short\"\n",
            "config error: `api.token`: must be at least 16 characters (it guards POST /send)",
        );
    }
}
