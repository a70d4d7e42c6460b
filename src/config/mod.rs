//! Configuration: the main file, connector files and mapping files, loaded and
//! validated with no side effects into the runtime [`Config`].
//!
//! As in Vector, serde structs with `deny_unknown_fields` describe what users
//! write (`*Spec`); [`load`] turns them into typed runtime parts, resolving
//! paths, reading secrets from the environment and compiling mappings. Every
//! problem is a [`diag::Diagnostic`] with `file:line:col`, and all of them are
//! reported at once.

pub mod connector;
pub mod diag;
pub mod duration;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::map::{Mapping, Pseudonymizer, TimePolicy};
use crate::parse::csv::CsvFormat;
pub use connector::AfterCommit;
use connector::{ConnectorSpec, FormatKind, OnRowError, SourceKind, SourceSpec};
use diag::{parse_toml, Diagnostic, Diagnostics, SourceFile};
use duration::Dur;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_connectors_dir")]
    pub connectors_dir: PathBuf,
    #[serde(default = "default_mappings_dir")]
    pub mappings_dir: PathBuf,
    #[serde(default)]
    pub store: StoreSpec,
    pub pseudonymization: PseudonymizationSpec,
    #[serde(default)]
    pub delivery: DeliverySpec,
    #[serde(default)]
    pub log: LogSpec,
    /// The admin HTTP API; absent means not started.
    pub admin: Option<AdminSpec>,
    #[serde(default)]
    pub subscribers: Vec<SubscriberSpec>,
    #[serde(default)]
    pub journeys: JourneysSpec,
}

/// `[journeys]`: where journey rule files are and how late stalls are treated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneysSpec {
    /// The folder of rule files (one per program), relative to the config.
    #[serde(default = "default_journeys_dir")]
    pub dir: PathBuf,
    /// A stall found more than this long after its deadline (a backfill, a
    /// daemon that was down) is recorded but not sent.
    #[serde(default = "default_horizon")]
    pub horizon: Dur,
}

impl Default for JourneysSpec {
    fn default() -> Self {
        JourneysSpec {
            dir: default_journeys_dir(),
            horizon: default_horizon(),
        }
    }
}

fn default_journeys_dir() -> PathBuf {
    "journeys".into()
}
fn default_horizon() -> Dur {
    Dur::secs(7 * 86400)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// `host:port` to listen on, e.g. `127.0.0.1:8080`.
    pub listen: Spanned<String>,
    /// Environment variable holding the bearer token every request must carry.
    pub token_env: Spanned<String>,
    /// Base URL receivers use to reach the API (links in thin payloads).
    /// Default: `http://<listen>`.
    pub public_url: Option<Spanned<String>>,
    /// Serve the operator console (`/console`) beside the API.
    #[serde(default = "default_true")]
    pub console: bool,
}

fn default_true() -> bool {
    true
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_connectors_dir() -> PathBuf {
    "connectors".into()
}
fn default_mappings_dir() -> PathBuf {
    "mappings".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `sqlite://path` (relative to the config file) or `postgres://…`.
    pub url: Option<String>,
    /// Records per committed chunk.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// State entries kept in memory to skip unchanged records without a query.
    #[serde(default = "default_state_cache")]
    pub state_cache_entries: usize,
    /// PostgreSQL: how long an instance's claim on a file or delivery lasts
    /// unrenewed, i.e. how soon others take over the work of one that died.
    #[serde(default = "default_lease")]
    pub lease: Dur,
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            url: None,
            chunk_rows: default_chunk_rows(),
            state_cache_entries: default_state_cache(),
            lease: default_lease(),
        }
    }
}

fn default_chunk_rows() -> usize {
    20_000
}
fn default_state_cache() -> usize {
    2_000_000
}
fn default_lease() -> Dur {
    Dur::secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymizationSpec {
    /// Environment variable holding the HMAC key for patient references.
    pub key_env: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    #[serde(default = "default_grace")]
    pub shutdown_grace: Dur,
    /// How long a delivered message's body is kept before the cleaner nulls it.
    #[serde(default = "default_retention")]
    pub payload_retention: Dur,
    /// How often the retention cleaner runs.
    #[serde(default = "default_cleaner_interval")]
    pub cleaner_interval: Dur,
    /// Host names subscriber URLs may use (exact, or `*.example.org`);
    /// empty: any host.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Allow subscriber addresses in the link-local and metadata ranges
    /// (169.254.0.0/16, fe80::/10, fd00::/8), refused by default.
    #[serde(default)]
    pub allow_link_local: bool,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        DeliverySpec {
            poll_interval: default_poll(),
            shutdown_grace: default_grace(),
            payload_retention: default_retention(),
            cleaner_interval: default_cleaner_interval(),
            allowed_hosts: Vec::new(),
            allow_link_local: false,
        }
    }
}

fn default_retention() -> Dur {
    Dur::secs(7 * 86400)
}
fn default_cleaner_interval() -> Dur {
    Dur::secs(3600)
}

fn default_poll() -> Dur {
    Dur::secs(1)
}
fn default_grace() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    #[serde(default)]
    pub format: LogFormat,
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSpec {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    /// Environment variable with the `whsec_…` signing secret. Several
    /// secrets may be given, space-separated, to rotate keys: each signs.
    pub secret_env: Spanned<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Delays between attempts; the first attempt is immediate.
    pub retry_schedule: Option<Vec<Spanned<String>>>,
    /// The longest wait a `Retry-After` header can impose.
    #[serde(default = "default_retry_after_max")]
    pub retry_after_max: Dur,
    /// Milestone code patterns (`pa.*`, `*`); empty means all.
    #[serde(default)]
    pub milestones: Vec<String>,
    #[serde(default)]
    pub programs: Vec<String>,
    #[serde(default)]
    pub connectors: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// mTLS: PEM client certificate (chain) and passphrase-free PEM key.
    pub client_cert: Option<Spanned<PathBuf>>,
    pub client_key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub payload: PayloadMode,
    #[serde(default)]
    pub envelope: Envelope,
    /// Collapse superseded updates of one milestone while the subscriber is down.
    #[serde(default)]
    pub coalesce: bool,
    /// Consecutive failed attempts that open the circuit breaker; 0 = never.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// While open, how often one request probes the subscriber.
    #[serde(default = "default_breaker_probe")]
    pub breaker_probe_interval: Dur,
    /// Also receive `feed.missing` events (a connector's file did not arrive
    /// by its `[expect]` deadline). Filtered by `programs` and `connectors`.
    #[serde(default)]
    pub feed_missing: bool,
}

/// What a webhook body carries.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// The whole milestone.
    #[default]
    Full,
    /// Ids and a link to fetch the milestone from the admin API.
    Thin,
}

/// How the event is framed on the wire. Standard Webhooks signature headers
/// are sent in both.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// `{"type", "timestamp", "data"}` as the body.
    #[default]
    Standard,
    /// CloudEvents binary mode: `ce-*` headers, the body is `data`.
    Cloudevents,
}

fn default_breaker_failures() -> u32 {
    10
}
fn default_breaker_probe() -> Dur {
    // The Standard Webhooks schedule's first retry: parking never delays a
    // recovered subscriber by more than a first retry would have.
    Dur::secs(5)
}

fn default_timeout() -> Dur {
    Dur::secs(15)
}
fn default_in_flight() -> usize {
    32
}
fn default_retry_after_max() -> Dur {
    Dur::secs(3600)
}

/// The Standard Webhooks example schedule after the immediate first attempt.
pub const DEFAULT_RETRY_SCHEDULE: &[u64] = &[
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];

// ------------------------------------------------------------- runtime parts

/// The validated configuration the runtime runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub mappings_dir: PathBuf,
    pub store_url: String,
    pub chunk_rows: usize,
    pub state_cache_entries: usize,
    pub lease: Duration,
    pub connectors: Vec<Arc<Connector>>,
    pub subscribers: Vec<Arc<Subscriber>>,
    pub pseudonymizer: Arc<Pseudonymizer>,
    /// Seeds content hashes; derived from the pseudonymization key.
    pub content_seed: u64,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: Option<String>,
    pub payload_retention: Duration,
    pub cleaner_interval: Duration,
    pub admin: Option<Admin>,
    /// Journey rules per program (`[journeys]`, `journeys/*.toml`).
    pub journeys: Arc<crate::journey::Journeys>,
}

/// The admin API, ready to start.
#[derive(Clone)]
pub struct Admin {
    pub listen: std::net::SocketAddr,
    pub token: String,
    pub public_url: String,
    /// Serve the operator console (`[admin] console`, default on).
    pub console: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("public_url", &self.public_url)
            .field("console", &self.console)
            .finish()
    }
}

/// A client certificate and key for mTLS; never printed.
#[derive(Clone)]
pub struct ClientIdentity(pub reqwest::Identity);

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}

/// One connector, ready to run.
#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub program: String,
    pub mapping: Arc<Mapping>,
    pub time: TimePolicy,
    pub source: Source,
    pub format: Format,
    pub on_row_error: OnRowError,
    pub max_rejects: Option<u64>,
    /// When the feed's file is due, if the connector says.
    pub expect: Option<Expectation>,
    pub extra_columns: connector::ExtraColumns,
}

#[derive(Debug, Clone)]
pub enum Source {
    Local(LocalSource),
    Sftp(SftpSource),
}

/// A daily deadline for a feed's file, in the connector's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub daily_by: chrono::NaiveTime,
    /// Weekdays (of the deadline) the file is expected; empty means every day.
    pub days: Vec<chrono::Weekday>,
}

/// A secret read from the environment; never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An SFTP drop, validated (see `source::sftp`).
#[derive(Debug, Clone)]
pub struct SftpSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SftpAuth,
    pub host_key: HostKeyCheck,
    /// The remote directory.
    pub path: String,
    pub pattern: globset::GlobMatcher,
    pub recursive: bool,
    pub poll_interval: Duration,
    pub settle: Duration,
    pub done_marker: Option<String>,
    pub after_commit: AfterCommit,
    pub remote_archive: String,
    pub timeout: Duration,
    /// Local folder downloads are streamed into: `<data_dir>/staging/<connector>`.
    pub staging: PathBuf,
    /// Local folder for rejects sidecars: `<data_dir>/archive/<connector>`.
    pub archive: PathBuf,
    /// Local folder failed files (and their `.error.json`) go to.
    pub error: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SftpAuth {
    /// An ed25519 key, decoded at load (so `hubsync check` catches a bad key
    /// or passphrase).
    Key(ClientKey),
    Password(Secret),
}

/// A decoded client key; its Debug shows only the public fingerprint.
#[derive(Clone)]
pub struct ClientKey(pub std::sync::Arc<russh::keys::PrivateKey>);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientKey({})",
            crate::source::sftp::fingerprint(self.0.public_key())
        )
    }
}

/// How the server's host key is verified. There is no "accept any".
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// `SHA256:<base64>`, as `ssh-keygen -lf` prints it.
    Fingerprint(String),
    KnownHosts(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LocalSource {
    pub path: PathBuf,
    pub pattern: globset::GlobMatcher,
    pub settle: Duration,
    pub done_marker: Option<String>,
    pub rescan: Duration,
    pub archive: PathBuf,
    pub error: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Format {
    Csv(CsvFormat),
    /// Sheet rules, each with the mapping its sheets use.
    Excel(Vec<(crate::parse::excel::SheetRule, Arc<Mapping>)>),
    X12(crate::parse::x12::X12Format),
    Xml(crate::parse::xml::XmlFormat),
}

/// A webhook subscriber.
#[derive(Debug)]
pub struct Subscriber {
    pub name: String,
    pub url: reqwest::Url,
    /// Decoded signing keys; every one signs each request.
    pub keys: Vec<Vec<u8>>,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub retry_schedule: Vec<Duration>,
    pub retry_after_max: Duration,
    pub milestones: Vec<globset::GlobMatcher>,
    pub programs: Vec<String>,
    pub connectors: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub identity: Option<ClientIdentity>,
    pub payload: PayloadMode,
    /// Base of thin payloads' links (`<admin public url>/v1/messages/`).
    pub link_base: Option<String>,
    pub envelope: Envelope,
    pub coalesce: bool,
    pub breaker_failures: u32,
    pub breaker_probe_interval: Duration,
    pub feed_missing: bool,
    /// Whether link-local and metadata addresses may be connected to
    /// (`[delivery] allow_link_local`); checked after each DNS resolution.
    pub allow_link_local: bool,
}

impl Subscriber {
    /// Whether this subscriber asked for `feed.missing` events about `connector`.
    pub fn wants_feed_missing(&self, connector: &str, program: &str) -> bool {
        self.feed_missing
            && (self.programs.is_empty() || self.programs.iter().any(|p| p == program))
            && (self.connectors.is_empty() || self.connectors.iter().any(|c| c == connector))
    }

    /// Whether a message from `connector` about `program`/`code` goes to this subscriber.
    pub fn wants(&self, connector: &str, program: &str, code: &str) -> bool {
        (self.milestones.is_empty() || self.milestones.iter().any(|g| g.is_match(code)))
            && (self.programs.is_empty() || self.programs.iter().any(|p| p == program))
            && (self.connectors.is_empty() || self.connectors.iter().any(|c| c == connector))
    }
}

/// Decodes a `whsec_…` secret into its key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("secret must start with `whsec_`")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("secret is not valid base64: {e}"))?;
    if key.len() < 16 {
        return Err("secret key is shorter than 16 bytes".into());
    }
    Ok(key)
}

/// Loads and validates everything reachable from the config file at `path`.
/// Reads files and the environment; writes nothing.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with an injectable environment (for tests).
pub fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Diagnostics> {
    let src = SourceFile::read(path)?;
    let spec: ConfigSpec = parse_toml(&src)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut diags = Diagnostics::default();

    let data_dir = resolve(&spec.data_dir);
    let store_url = match &spec.store.url {
        None => format!("sqlite://{}", data_dir.join("hubsync.db").display()),
        Some(u) if u.starts_with("sqlite://") => {
            let p = Path::new(&u["sqlite://".len()..]);
            format!("sqlite://{}", resolve(p).display())
        }
        Some(u) => u.clone(),
    };
    if spec.store.chunk_rows == 0 {
        diags.push(Diagnostic::file_level(
            path,
            "store.chunk_rows must be at least 1",
        ));
    }
    if spec.store.lease.0 < Duration::from_secs(1) {
        // Renewals run every third of a lease; shorter ones would be lost to
        // ordinary database latency and hand live work to other instances.
        diags.push(Diagnostic::file_level(path, "store.lease must be at least 1s"));
    }

    let key_env = spec.pseudonymization.key_env.get_ref();
    let key = match env(key_env) {
        Some(k) if k.len() >= 16 => k.into_bytes(),
        Some(_) => {
            diags.push(src.diag(
                spec.pseudonymization.key_env.span(),
                format!("the pseudonymization key in ${key_env} is shorter than 16 bytes"),
            ));
            Vec::new()
        }
        None => {
            diags.push(
                src.diag(
                    spec.pseudonymization.key_env.span(),
                    format!("environment variable `{key_env}` is not set"),
                )
                .with_hint("it holds the HMAC key for patient references; secrets never go in config files"),
            );
            Vec::new()
        }
    };
    let pseudonymizer = Arc::new(Pseudonymizer::new(&key));
    let seed_bytes = pseudonymizer.raw("hubsync:content-hash:v1", "");
    let content_seed = u64::from_le_bytes(seed_bytes[..8].try_into().expect("16 bytes hold 8"));

    // The admin API, before subscribers: thin payloads link to it.
    let admin = spec.admin.as_ref().and_then(|a| {
        let listen = match a.listen.get_ref().parse::<std::net::SocketAddr>() {
            Ok(l) => Some(l),
            Err(e) => {
                diags.push(src.diag(a.listen.span(), format!("admin.listen must be host:port: {e}")));
                None
            }
        };
        let token_env = a.token_env.get_ref();
        let token = match env(token_env) {
            Some(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
            Some(_) => {
                diags.push(src.diag(
                    a.token_env.span(),
                    format!("the admin token in ${token_env} is shorter than 16 characters"),
                ));
                None
            }
            None => {
                diags.push(
                    src.diag(
                        a.token_env.span(),
                        format!("environment variable `{token_env}` is not set"),
                    )
                    .with_hint("it holds the bearer token of the admin API"),
                );
                None
            }
        };
        let public_url = match &a.public_url {
            Some(u) => match reqwest::Url::parse(u.get_ref()) {
                Ok(_) => Some(u.get_ref().trim_end_matches('/').to_string()),
                Err(e) => {
                    diags.push(src.diag(u.span(), format!("invalid url: {e}")));
                    None
                }
            },
            None => listen.map(|l| format!("http://{l}")),
        };
        match (listen, token, public_url) {
            (Some(listen), Some(token), Some(public_url)) => Some(Admin {
                listen,
                token,
                public_url,
                console: a.console,
            }),
            _ => None,
        }
    });

    // Subscribers.
    let mut subscribers = Vec::new();
    let mut allowed_hosts = Vec::new();
    for h in &spec.delivery.allowed_hosts {
        match globset::Glob::new(&h.get_ref().to_ascii_lowercase()) {
            Ok(g) => allowed_hosts.push(g.compile_matcher()),
            Err(e) => diags.push(src.diag(h.span(), format!("invalid host pattern: {e}"))),
        }
    }
    let mut names = std::collections::HashSet::new();
    for s in &spec.subscribers {
        if !names.insert(s.name.get_ref().clone()) {
            diags.push(src.diag(
                s.name.span(),
                format!("duplicate subscriber name `{}`", s.name.get_ref()),
            ));
        }
        let url = match reqwest::Url::parse(s.url.get_ref()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                match crate::deliver::guard::check_url(&u, &allowed_hosts, spec.delivery.allow_link_local) {
                    Ok(()) => Some(u),
                    Err(why) => {
                        diags.push(src.diag(s.url.span(), why).with_hint(
                            "[delivery] allowed_hosts lists the hosts subscribers may use; allow_link_local = true permits link-local addresses",
                        ));
                        None
                    }
                }
            }
            Ok(_) => {
                diags.push(src.diag(s.url.span(), "subscriber url must be http or https"));
                None
            }
            Err(e) => {
                diags.push(src.diag(s.url.span(), format!("invalid url: {e}")));
                None
            }
        };
        let env_name = s.secret_env.get_ref();
        let mut keys = Vec::new();
        match env(env_name) {
            None => diags.push(
                src.diag(
                    s.secret_env.span(),
                    format!("environment variable `{env_name}` is not set"),
                )
                .with_hint("it holds the subscriber's whsec_… signing secret"),
            ),
            Some(v) => {
                for secret in v.split_whitespace() {
                    match decode_secret(secret) {
                        Ok(k) => keys.push(k),
                        Err(e) => diags.push(src.diag(s.secret_env.span(), format!("${env_name}: {e}"))),
                    }
                }
                if keys.is_empty() && !v.trim().is_empty() {
                    // already reported
                } else if keys.is_empty() {
                    diags.push(src.diag(s.secret_env.span(), format!("${env_name} is empty")));
                }
            }
        }
        let retry_schedule = match &s.retry_schedule {
            None => DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|d| match duration::parse_duration(d.get_ref()) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        diags.push(src.diag(d.span(), e));
                        None
                    }
                })
                .collect(),
        };
        let mut milestones = Vec::new();
        for pat in &s.milestones {
            match globset::Glob::new(pat) {
                Ok(g) => milestones.push(g.compile_matcher()),
                Err(e) => diags.push(src.diag(s.name.span(), format!("bad milestone pattern `{pat}`: {e}"))),
            }
        }
        if s.max_in_flight == 0 {
            diags.push(src.diag(s.name.span(), "max_in_flight must be at least 1"));
        }
        let identity = match (&s.client_cert, &s.client_key) {
            (None, None) => None,
            (Some(c), None) => {
                diags.push(src.diag(c.span(), "client_cert needs client_key"));
                None
            }
            (None, Some(k)) => {
                diags.push(src.diag(k.span(), "client_key needs client_cert"));
                None
            }
            (Some(c), Some(k)) => {
                let mut read = |p: &Spanned<PathBuf>| match std::fs::read(resolve(p.get_ref())) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        diags.push(src.diag(p.span(), format!("cannot read {}: {e}", p.get_ref().display())));
                        None
                    }
                };
                match (read(c), read(k)) {
                    (Some(mut pem), Some(key)) => {
                        pem.push(b'\n');
                        pem.extend_from_slice(&key);
                        match reqwest::Identity::from_pem(&pem) {
                            Ok(id) => Some(ClientIdentity(id)),
                            Err(e) => {
                                diags.push(
                                    src.diag(
                                        k.span(),
                                        format!("client certificate or key is not usable PEM: {e}"),
                                    )
                                    .with_hint(
                                        "the key must be PKCS#8, RSA or SEC1 PEM without a passphrase",
                                    ),
                                );
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
        };
        if s.payload == PayloadMode::Thin && spec.admin.is_none() {
            diags.push(
                src.diag(
                    s.name.span(),
                    "payload = \"thin\" links to the admin API, which is not configured",
                )
                .with_hint("add an [admin] table with listen and token_env (and public_url)"),
            );
        }
        if s.breaker_probe_interval.0.is_zero() {
            diags.push(src.diag(s.name.span(), "breaker_probe_interval must be more than 0"));
        }
        if let Some(url) = url {
            subscribers.push(Arc::new(Subscriber {
                name: s.name.get_ref().clone(),
                url,
                keys,
                timeout: s.timeout.0,
                max_in_flight: s.max_in_flight.max(1),
                retry_schedule,
                retry_after_max: s.retry_after_max.0,
                milestones,
                programs: s.programs.clone(),
                connectors: s.connectors.clone(),
                headers: s.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                identity,
                payload: s.payload,
                link_base: admin.as_ref().map(|a| format!("{}/v1/messages/", a.public_url)),
                envelope: s.envelope,
                coalesce: s.coalesce,
                breaker_failures: s.breaker_failures,
                breaker_probe_interval: s.breaker_probe_interval.0,
                feed_missing: s.feed_missing,
                allow_link_local: spec.delivery.allow_link_local,
            }));
        }
    }

    // Mappings, then connectors that name them.
    let mappings_dir = resolve(&spec.mappings_dir);
    let mut mappings: BTreeMap<String, Arc<Mapping>> = BTreeMap::new();
    // Mappings that exist but have errors: a connector naming one is not
    // reported again as "no mapping named …".
    let mut broken: Vec<String> = Vec::new();
    for file in toml_files(&mappings_dir) {
        match Mapping::load(&file) {
            Ok(m) => {
                mappings.insert(m.name.clone(), Arc::new(m));
            }
            Err(d) => {
                broken.extend(file.file_stem().map(|s| s.to_string_lossy().into_owned()));
                diags.extend(d);
            }
        }
    }
    let connectors_dir = resolve(&spec.connectors_dir);
    let mut connectors = Vec::new();
    for file in toml_files(&connectors_dir) {
        match load_connector(&file, &mappings, &resolve, &data_dir, env) {
            Ok(c) => connectors.push(Arc::new(c)),
            Err(d) => diags.extend(Diagnostics(
                d.0.into_iter()
                    .filter(|x| {
                        !broken
                            .iter()
                            .any(|b| x.message == format!("no mapping named `{b}` in the mappings folder"))
                    })
                    .collect(),
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in &connectors {
        if !seen.insert(c.name.clone()) {
            diags.push(Diagnostic::file_level(
                &connectors_dir,
                format!("two connectors are named `{}`", c.name),
            ));
        }
    }

    let programs: Vec<&str> = connectors.iter().map(|c| c.program.as_str()).collect();
    let fed = diags.is_empty().then_some(programs.as_slice());
    let journeys = match crate::journey::load(&resolve(&spec.journeys.dir), spec.journeys.horizon.0, fed) {
        Ok(j) => j,
        Err(d) => {
            diags.extend(d);
            crate::journey::Journeys::default()
        }
    };

    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Config {
        path: path.to_path_buf(),
        data_dir,
        mappings_dir,
        store_url,
        chunk_rows: spec.store.chunk_rows,
        state_cache_entries: spec.store.state_cache_entries,
        lease: spec.store.lease.0,
        connectors,
        subscribers,
        pseudonymizer,
        content_seed,
        poll_interval: spec.delivery.poll_interval.0,
        shutdown_grace: spec.delivery.shutdown_grace.0,
        log_format: spec.log.format,
        log_level: spec.log.level,
        payload_retention: spec.delivery.payload_retention.0,
        cleaner_interval: spec.delivery.cleaner_interval.0,
        admin,
        journeys: Arc::new(journeys),
    })
}

/// Validates `[format]` for its kind: keys of another kind are reported, and
/// the mapping's syntax must suit the format.
fn load_format(
    src: &SourceFile,
    f: &connector::FormatSpec,
    kind: FormatKind,
    mapping: &Arc<Mapping>,
    mappings: &BTreeMap<String, Arc<Mapping>>,
    diags: &mut Diagnostics,
) -> Option<Format> {
    use crate::map::Syntax;
    use crate::parse::excel::{HeaderAt, SheetRule, SheetSelect};
    // Keys that belong to another kind.
    let mut foreign: Vec<(std::ops::Range<usize>, &str, FormatKind)> = Vec::new();
    if kind != FormatKind::Excel {
        if let Some(s) = &f.sheets {
            foreign.push((s.span(), "sheets", FormatKind::Excel));
        }
        if let Some(s) = &f.skip_rows {
            foreign.push((s.span(), "skip_rows", FormatKind::Excel));
        }
        if let Some(s) = &f.find_header {
            foreign.push((s.span(), "find_header", FormatKind::Excel));
        }
        if let Some(s) = &f.include_hidden_sheets {
            foreign.push((s.span(), "include_hidden_sheets", FormatKind::Excel));
        }
        if let Some(s) = &f.fill_merged {
            foreign.push((s.span(), "fill_merged", FormatKind::Excel));
        }
    }
    if kind != FormatKind::Csv {
        if let Some(s) = &f.delimiter {
            foreign.push((s.span(), "delimiter", FormatKind::Csv));
        }
        if let Some(s) = &f.quote {
            foreign.push((s.span(), "quote", FormatKind::Csv));
        }
        if let Some(s) = &f.encoding {
            foreign.push((s.span(), "encoding", FormatKind::Csv));
        }
        if let Some(s) = &f.skip_lines {
            foreign.push((s.span(), "skip_lines", FormatKind::Csv));
        }
    }
    if kind != FormatKind::X12 {
        if let Some(s) = &f.separator_collision {
            foreign.push((s.span(), "separator_collision", FormatKind::X12));
        }
        if let Some(s) = &f.lenient_isa_width {
            foreign.push((s.span(), "lenient_isa_width", FormatKind::X12));
        }
        if let Some(s) = &f.record_levels {
            foreign.push((s.span(), "record_levels", FormatKind::X12));
        }
        if let Some(s) = &f.transaction_sets {
            foreign.push((s.span(), "transaction_sets", FormatKind::X12));
        }
        if let Some(s) = &f.purposes {
            foreign.push((s.span(), "purposes", FormatKind::X12));
        }
        if let Some(s) = &f.acknowledgments {
            foreign.push((s.span(), "acknowledgments", FormatKind::X12));
        }
    }
    if kind != FormatKind::Xml {
        if let Some(s) = &f.record {
            foreign.push((s.span(), "record", FormatKind::Xml));
        }
        if let Some(s) = &f.no_records {
            foreign.push((s.span(), "no_records", FormatKind::Xml));
        }
    }
    for (span, key, owner) in foreign {
        diags.push(src.diag(
            span,
            format!(
                "`{key}` applies to kind = \"{}\", not \"{}\"",
                owner.name(),
                kind.name()
            ),
        ));
    }
    let want_syntax = match kind {
        FormatKind::Csv | FormatKind::Excel => Syntax::Header,
        FormatKind::X12 => Syntax::X12,
        FormatKind::Xml => Syntax::Xml,
    };
    let check_syntax = |m: &Mapping, span: std::ops::Range<usize>, diags: &mut Diagnostics| {
        if m.syntax != want_syntax {
            diags.push(
                src.diag(
                    span,
                    format!(
                        "mapping `{}` addresses columns with {:?} syntax, but this connector reads {}",
                        m.name,
                        m.syntax,
                        kind.name()
                    ),
                )
                .with_hint(match want_syntax {
                    Syntax::Header => "CSV and Excel mappings name columns by `header`",
                    Syntax::X12 => "X12 mappings set syntax = \"x12\" and give each column a `path`",
                    Syntax::Xml => "XML mappings set syntax = \"xml\" and give each column a `path`",
                }),
            );
            false
        } else {
            true
        }
    };
    let kind_span = f.kind.span();
    match kind {
        FormatKind::Csv => {
            check_syntax(mapping, kind_span, diags);
            match CsvFormat::from_spec(f) {
                Ok(c) => Some(Format::Csv(c)),
                Err((span, msg)) => {
                    diags.push(src.diag(span, msg));
                    None
                }
            }
        }
        FormatKind::Excel => {
            let default_header = |skip: &Option<Spanned<u32>>, find: &Option<Spanned<bool>>, m: &Mapping| {
                let find = find
                    .as_ref()
                    .or(f.find_header.as_ref())
                    .is_some_and(|b| *b.get_ref());
                if find {
                    HeaderAt::Find(
                        m.columns
                            .iter()
                            .filter(|c| c.required)
                            .map(|c| {
                                std::iter::once(&c.header)
                                    .chain(&c.aliases)
                                    .map(|h| crate::map::normalize_header(h))
                                    .collect()
                            })
                            .collect(),
                    )
                } else {
                    HeaderAt::Skip(skip.as_ref().or(f.skip_rows.as_ref()).map_or(0, |s| *s.get_ref()))
                }
            };
            let include_hidden = f.include_hidden_sheets.as_ref().is_some_and(|b| *b.get_ref());
            // A name to fill must be a header the sheet's mapping reads (a
            // typo would silently fill nothing).
            let fill =
                |own: &Option<Spanned<Vec<String>>>, m: &Mapping, diags: &mut Diagnostics| -> Vec<String> {
                    let Some(list) = own.as_ref().or(f.fill_merged.as_ref()) else {
                        return Vec::new();
                    };
                    let known: Vec<String> = m
                        .columns
                        .iter()
                        .flat_map(|c| std::iter::once(&c.header).chain(&c.aliases))
                        .map(|h| crate::map::normalize_header(h))
                        .collect();
                    let names: Vec<String> = list
                        .get_ref()
                        .iter()
                        .map(|h| crate::map::normalize_header(h))
                        .collect();
                    for (raw, n) in list.get_ref().iter().zip(&names) {
                        if !known.contains(n) {
                            diags.push(src.diag(
                                list.span(),
                                format!(
                                    "`fill_merged` names `{raw}`, which is not a header of mapping `{}`",
                                    m.name
                                ),
                            ));
                        }
                    }
                    names
                };
            let mut rules = Vec::new();
            match &f.sheets {
                None => {
                    check_syntax(mapping, kind_span, diags);
                    rules.push((
                        SheetRule {
                            select: SheetSelect::Index(0),
                            header: default_header(&None, &None, mapping),
                            fill_merged: fill(&None, mapping, diags),
                            include_hidden,
                        },
                        mapping.clone(),
                    ));
                }
                Some(sheets) => {
                    if sheets.get_ref().is_empty() {
                        diags.push(src.diag(
                            sheets.span(),
                            "`sheets` is empty; omit it to read the first sheet",
                        ));
                    }
                    for sh in sheets.get_ref() {
                        let select = match (&sh.name, &sh.glob, &sh.index) {
                            (Some(n), None, None) => Some(SheetSelect::Name(n.get_ref().clone())),
                            (None, Some(g), None) => match globset::Glob::new(g.get_ref()) {
                                Ok(g) => Some(SheetSelect::Glob(g.compile_matcher())),
                                Err(e) => {
                                    diags.push(src.diag(g.span(), format!("bad sheet glob: {e}")));
                                    None
                                }
                            },
                            (None, None, Some(i)) => Some(SheetSelect::Index(*i.get_ref())),
                            _ => {
                                diags.push(src.diag(
                                    sheets.span(),
                                    "each sheet needs exactly one of `name`, `glob` or `index`",
                                ));
                                None
                            }
                        };
                        let m = match &sh.mapping {
                            None => Some(mapping.clone()),
                            Some(name) => match mappings.get(name.get_ref()) {
                                Some(m) => Some(m.clone()),
                                None => {
                                    diags.push(src.diag(
                                        name.span(),
                                        format!(
                                            "no mapping named `{}` in the mappings folder",
                                            name.get_ref()
                                        ),
                                    ));
                                    None
                                }
                            },
                        };
                        if let (Some(select), Some(m)) = (select, m) {
                            let span = sh.mapping.as_ref().map_or(sheets.span(), |s| s.span());
                            check_syntax(&m, span, diags);
                            let header = default_header(&sh.skip_rows, &sh.find_header, &m);
                            rules.push((
                                SheetRule {
                                    select,
                                    header,
                                    fill_merged: fill(&sh.fill_merged, &m, diags),
                                    include_hidden,
                                },
                                m,
                            ));
                        }
                    }
                }
            }
            Some(Format::Excel(rules))
        }
        FormatKind::X12 => {
            check_syntax(mapping, kind_span, diags);
            let record_levels = f
                .record_levels
                .as_ref()
                .map_or(Vec::new(), |l| l.get_ref().clone());
            Some(Format::X12(crate::parse::x12::X12Format {
                collision: f
                    .separator_collision
                    .as_ref()
                    .map_or_else(Default::default, |c| *c.get_ref()),
                lenient_isa_width: f.lenient_isa_width.as_ref().is_some_and(|b| *b.get_ref()),
                record_levels,
                transaction_sets: f.transaction_sets.as_ref().map_or_else(
                    || mapping.transaction.iter().cloned().collect(),
                    |l| l.get_ref().clone(),
                ),
                purposes: f.purposes.as_ref().map_or(Vec::new(), |l| l.get_ref().clone()),
                acknowledgments: f.acknowledgments.as_ref().is_some_and(|b| *b.get_ref()),
            }))
        }
        FormatKind::Xml => {
            check_syntax(mapping, kind_span.clone(), diags);
            if mapping.columns.len() > crate::parse::xml::MAX_FIELDS {
                diags.push(src.diag(
                    kind_span.clone(),
                    format!(
                        "mapping `{}` declares {} columns; an XML mapping reads at most {}",
                        mapping.name,
                        mapping.columns.len(),
                        crate::parse::xml::MAX_FIELDS
                    ),
                ));
            }
            let Some(record) = &f.record else {
                diags.push(
                    src.diag(
                        kind_span,
                        "an XML connector needs `record`, the path of the record element",
                    )
                    .with_hint("e.g. record = \"Export/Cases/Case\""),
                );
                return None;
            };
            match crate::parse::xml::parse_path(record.get_ref(), &mapping.namespaces) {
                Ok(p) if p.attr.is_none() => Some(Format::Xml(crate::parse::xml::XmlFormat {
                    record: p,
                    no_records: f
                        .no_records
                        .as_ref()
                        .map_or_else(Default::default, |n| *n.get_ref()),
                })),
                Ok(_) => {
                    diags.push(src.diag(record.span(), "`record` names an element, not an attribute"));
                    None
                }
                Err((_, msg)) => {
                    diags.push(src.diag(record.span(), msg));
                    None
                }
            }
        }
    }
}

/// `*.toml` files directly in `dir`, sorted; a missing folder has none.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn load_connector(
    path: &Path,
    mappings: &BTreeMap<String, Arc<Mapping>>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connector, Diagnostics> {
    let src = SourceFile::read(path)?;
    let spec: ConnectorSpec = parse_toml(&src)?;
    let mut diags = Diagnostics::default();
    let name = spec.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mapping = match mappings.get(spec.mapping.get_ref()) {
        Some(m) => Some(m.clone()),
        None => {
            let known: Vec<String> = mappings.keys().cloned().collect();
            let mut d = src.diag(
                spec.mapping.span(),
                format!(
                    "no mapping named `{}` in the mappings folder",
                    spec.mapping.get_ref()
                ),
            );
            d = d.with_hint(match crate::map::expr::closest(spec.mapping.get_ref(), &known) {
                Some(c) => format!("did you mean `{c}`?"),
                None if known.is_empty() => "the mappings folder has no loadable mapping".to_string(),
                None => format!("mappings: {}", known.join(", ")),
            });
            diags.push(d);
            None
        }
    };
    let tz = match spec.time_zone.get_ref().parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            diags.push(
                src.diag(
                    spec.time_zone.span(),
                    format!("unknown time zone `{}`", spec.time_zone.get_ref()),
                )
                .with_hint("use an IANA name such as America/New_York"),
            );
            None
        }
    };
    if spec.program.get_ref().trim().is_empty() {
        diags.push(src.diag(spec.program.span(), "program cannot be empty"));
    }
    let source = match spec.source.kind.get_ref() {
        SourceKind::Local => load_local(&spec.source, &src, &mut diags, resolve, data_dir, &name),
        SourceKind::Sftp => load_sftp(&spec.source, &src, &mut diags, resolve, data_dir, &name, env),
    };
    let format = match (spec.format.kind.get_ref(), &mapping) {
        (_, None) => None,
        (kind, Some(mapping)) => {
            let before = diags.0.len();
            let f = load_format(&src, &spec.format, *kind, mapping, mappings, &mut diags);
            f.filter(|_| diags.0.len() == before)
        }
    };
    let expect = spec
        .expect
        .as_ref()
        .and_then(|e| load_expect(e, &src, &mut diags));
    match (mapping, tz, source, format) {
        (Some(mapping), Some(tz), Some(source), Some(format)) if diags.is_empty() => Ok(Connector {
            name,
            program: spec.program.get_ref().trim().to_string(),
            mapping,
            time: TimePolicy {
                tz,
                ambiguous: spec.dst_ambiguous,
                gap: spec.dst_gap,
            },
            source,
            format,
            on_row_error: spec.on_row_error,
            max_rejects: spec.max_rejects,
            expect,
            extra_columns: spec.header.extra_columns,
        }),
        _ => Err(diags),
    }
}

fn load_pattern(l: &SourceSpec, src: &SourceFile, diags: &mut Diagnostics) -> Option<globset::GlobMatcher> {
    match globset::Glob::new(l.pattern.get_ref()) {
        Ok(g) => Some(g.compile_matcher()),
        Err(e) => {
            diags.push(src.diag(l.pattern.span(), format!("bad file pattern: {e}")));
            None
        }
    }
}

fn check_done_marker(l: &SourceSpec, src: &SourceFile, diags: &mut Diagnostics) {
    if let Some(m) = &l.done_marker {
        if !m.get_ref().contains("{name}") {
            diags.push(src.diag(m.span(), "done_marker must contain `{name}`, e.g. `{name}.done`"));
        }
    }
}

fn load_local(
    l: &SourceSpec,
    src: &SourceFile,
    diags: &mut Diagnostics,
    resolve: &dyn Fn(&Path) -> PathBuf,
    data_dir: &Path,
    name: &str,
) -> Option<Source> {
    // Keys that only make sense for a remote drop are mistakes here, not noise.
    let sftp_only: [(&str, Option<std::ops::Range<usize>>); 13] = [
        ("host", l.host.as_ref().map(|v| v.span())),
        ("port", l.port.as_ref().map(|v| v.span())),
        ("user", l.user.as_ref().map(|v| v.span())),
        ("key_file", l.key_file.as_ref().map(|v| v.span())),
        (
            "key_passphrase_env",
            l.key_passphrase_env.as_ref().map(|v| v.span()),
        ),
        ("password_env", l.password_env.as_ref().map(|v| v.span())),
        (
            "host_key_fingerprint",
            l.host_key_fingerprint.as_ref().map(|v| v.span()),
        ),
        ("known_hosts", l.known_hosts.as_ref().map(|v| v.span())),
        ("recursive", l.recursive.as_ref().map(|v| v.span())),
        ("poll_interval", l.poll_interval.as_ref().map(|v| v.span())),
        ("after_commit", l.after_commit.as_ref().map(|v| v.span())),
        ("remote_archive", l.remote_archive.as_ref().map(|v| v.span())),
        ("timeout", l.timeout.as_ref().map(|v| v.span())),
    ];
    for (key, span) in sftp_only {
        if let Some(span) = span {
            diags.push(
                src.diag(span, format!("`{key}` applies to `kind = \"sftp\"` sources only"))
                    .with_hint("this source is `kind = \"local\"`"),
            );
        }
    }
    let pattern = load_pattern(l, src, diags);
    check_done_marker(l, src, diags);
    pattern.map(|pattern| {
        Source::Local(LocalSource {
            path: resolve(l.path.get_ref()),
            pattern,
            settle: l.settle.get_ref().0,
            done_marker: l.done_marker.as_ref().map(|m| m.get_ref().clone()),
            rescan: l
                .rescan
                .as_ref()
                .map_or(Duration::from_secs(5), |r| r.get_ref().0),
            archive: l
                .archive
                .as_ref()
                .map_or_else(|| data_dir.join("archive").join(name), |a| resolve(a.get_ref())),
            error: l
                .error
                .as_deref()
                .map_or_else(|| data_dir.join("error").join(name), resolve),
        })
    })
}

/// Validates an sftp `[source]`: every missing or misplaced key is a
/// diagnostic at its span, secrets come from the environment only.
fn load_sftp(
    l: &SourceSpec,
    src: &SourceFile,
    diags: &mut Diagnostics,
    resolve: &dyn Fn(&Path) -> PathBuf,
    data_dir: &Path,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Source> {
    let before = diags.0.len();
    let kind_span = l.kind.span();
    let local_only: [(&str, Option<std::ops::Range<usize>>, &str); 2] = [
        (
            "rescan",
            l.rescan.as_ref().map(|v| v.span()),
            "use `poll_interval`",
        ),
        (
            "archive",
            l.archive.as_ref().map(|v| v.span()),
            "use `after_commit` and `remote_archive`",
        ),
    ];
    for (key, span, hint) in local_only {
        if let Some(span) = span {
            diags.push(
                src.diag(
                    span,
                    format!("`{key}` applies to `kind = \"local\"` sources only"),
                )
                .with_hint(hint),
            );
        }
    }
    let required = |v: Option<&Spanned<String>>, key: &str, diags: &mut Diagnostics| -> Option<String> {
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().trim().to_string()),
            Some(v) => {
                diags.push(src.diag(v.span(), format!("`{key}` cannot be empty")));
                None
            }
            None => {
                diags.push(src.diag(kind_span.clone(), format!("an sftp source needs `{key}`")));
                None
            }
        }
    };
    let host = required(l.host.as_ref(), "host", diags);
    let user = required(l.user.as_ref(), "user", diags);
    let port = l.port.as_ref().map_or(22, |p| *p.get_ref());
    if port == 0 {
        if let Some(p) = &l.port {
            diags.push(src.diag(p.span(), "port must be 1-65535"));
        }
    }
    let secret = |key_env: &Spanned<String>, what: &str, diags: &mut Diagnostics| -> Option<Secret> {
        match env(key_env.get_ref()) {
            Some(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                diags.push(
                    src.diag(
                        key_env.span(),
                        format!("environment variable `{}` is not set", key_env.get_ref()),
                    )
                    .with_hint(format!("it holds the {what}; secrets never go in config files")),
                );
                None
            }
        }
    };
    let auth = match (&l.key_file, &l.password_env) {
        (Some(_), Some(p)) => {
            diags.push(
                src.diag(p.span(), "give either `key_file` or `password_env`, not both")
                    .with_hint("key authentication is preferred"),
            );
            None
        }
        (None, None) => {
            diags.push(src.diag(
                kind_span.clone(),
                "an sftp source needs `key_file` or `password_env`",
            ));
            None
        }
        (None, Some(p)) => {
            if let Some(k) = &l.key_passphrase_env {
                diags.push(src.diag(k.span(), "`key_passphrase_env` needs `key_file`"));
            }
            secret(p, "SFTP password", diags).map(SftpAuth::Password)
        }
        (Some(k), None) => {
            let passphrase = match &l.key_passphrase_env {
                Some(e) => secret(e, "key file's passphrase", diags),
                None => Some(Secret(String::new())),
            };
            passphrase.and_then(|pass| {
                let pass = (!pass.0.is_empty()).then_some(pass);
                match crate::source::sftp::load_key(&resolve(k.get_ref()), pass.as_ref()) {
                    Ok(key) => Some(SftpAuth::Key(ClientKey(key))),
                    Err(e) => {
                        diags.push(src.diag(k.span(), e.to_string()));
                        None
                    }
                }
            })
        }
    };
    let host_key = match (&l.host_key_fingerprint, &l.known_hosts) {
        (Some(f), None) => {
            let fp = f.get_ref().trim();
            if crate::source::sftp::is_fingerprint(fp) {
                Some(HostKeyCheck::Fingerprint(fp.to_string()))
            } else {
                diags.push(
                    src.diag(f.span(), "host_key_fingerprint must look like `SHA256:<43 base64 characters>`")
                        .with_hint("print it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server, or `ssh-keyscan HOST | ssh-keygen -lf -`"),
                );
                None
            }
        }
        (None, Some(k)) => {
            let path = resolve(k.get_ref());
            if path.is_file() {
                Some(HostKeyCheck::KnownHosts(path))
            } else {
                diags.push(src.diag(
                    k.span(),
                    format!("known_hosts file {} does not exist", path.display()),
                ));
                None
            }
        }
        (Some(_), Some(k)) => {
            diags.push(src.diag(
                k.span(),
                "give either `host_key_fingerprint` or `known_hosts`, not both",
            ));
            None
        }
        (None, None) => {
            diags.push(
                src.diag(
                    kind_span.clone(),
                    "an sftp source needs `host_key_fingerprint` or `known_hosts`",
                )
                .with_hint("host keys are always verified; there is no accept-any mode"),
            );
            None
        }
    };
    let settle = l.settle.get_ref().0;
    if l.done_marker.is_none() && settle < Duration::from_secs(1) {
        diags.push(
            src.diag(l.settle.span(), "an sftp settle window must be at least 1s")
                .with_hint("remote mtimes have one-second precision"),
        );
    }
    let remote_dir = l
        .path
        .get_ref()
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let remote_dir = if remote_dir.is_empty() {
        "/".to_string()
    } else {
        remote_dir
    };
    let after_commit = l
        .after_commit
        .as_ref()
        .map_or(AfterCommit::default(), |a| *a.get_ref());
    if let (Some(r), Some(a)) = (&l.remote_archive, &l.after_commit) {
        if *a.get_ref() != AfterCommit::Archive {
            diags.push(src.diag(
                r.span(),
                "`remote_archive` is only used with `after_commit = \"archive\"`",
            ));
        }
    }
    let remote_archive = l.remote_archive.as_ref().map_or_else(
        || format!("{}/archive", remote_dir.trim_end_matches('/')),
        |r| r.get_ref().trim_end_matches('/').to_string(),
    );
    let recursive = l.recursive.as_ref().is_some_and(|r| *r.get_ref());
    let pattern = load_pattern(l, src, diags);
    check_done_marker(l, src, diags);
    let poll_interval = l
        .poll_interval
        .as_ref()
        .map_or(Duration::from_secs(30), |p| p.get_ref().0);
    if poll_interval.is_zero() {
        if let Some(p) = &l.poll_interval {
            diags.push(src.diag(p.span(), "poll_interval must be more than 0"));
        }
    }
    if diags.0.len() != before {
        return None;
    }
    Some(Source::Sftp(SftpSource {
        host: host?,
        port,
        user: user?,
        auth: auth?,
        host_key: host_key?,
        path: remote_dir,
        pattern: pattern?,
        recursive,
        poll_interval,
        settle,
        done_marker: l.done_marker.as_ref().map(|m| m.get_ref().clone()),
        after_commit,
        remote_archive,
        timeout: l
            .timeout
            .as_ref()
            .map_or(Duration::from_secs(30), |t| t.get_ref().0),
        staging: data_dir.join("staging").join(name),
        archive: data_dir.join("archive").join(name),
        error: l
            .error
            .as_deref()
            .map_or_else(|| data_dir.join("error").join(name), resolve),
    }))
}

fn load_expect(e: &connector::ExpectSpec, src: &SourceFile, diags: &mut Diagnostics) -> Option<Expectation> {
    let raw = e.daily_by.get_ref().trim();
    let daily_by = chrono::NaiveTime::parse_from_str(raw, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(raw, "%H:%M"));
    let daily_by = match daily_by {
        Ok(t) => Some(t),
        Err(_) => {
            diags.push(src.diag(
                e.daily_by.span(),
                format!("`{raw}` is not a time of day; use HH:MM or HH:MM:SS"),
            ));
            None
        }
    };
    let mut days = Vec::new();
    for d in &e.days {
        match d.get_ref().trim().parse::<chrono::Weekday>() {
            Ok(w) => days.push(w),
            Err(_) => diags.push(src.diag(
                d.span(),
                format!("`{}` is not a weekday (mon … sun)", d.get_ref()),
            )),
        }
    }
    daily_by.map(|daily_by| Expectation { daily_by, days })
}
