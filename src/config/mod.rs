//! Configuration files as users write them: the main file and connector
//! files, as serde structs with `deny_unknown_fields`, plus the diagnostics
//! (`file:line:col` and a caret) every load error carries.
//!
//! This is the bottom layer: it imports no stage. As in Vector, these `*Spec`
//! structs only describe; [`crate::setup`] validates them and builds the
//! runtime parts each stage owns (connectors, compiled mappings, SFTP keys,
//! subscribers). Mapping files are the mapping stage's own language
//! (`map::spec`); journey rule files are the journey stage's.

pub mod connector;
pub mod diag;
pub mod duration;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use connector::AfterCommit;
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

/// A secret read from the environment; never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `*.toml` files directly in `dir`, sorted; a missing folder has none. Each
/// kind of file (connectors, mappings, journey rules) lives in such a folder.
pub fn toml_files(dir: &Path) -> Vec<PathBuf> {
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
