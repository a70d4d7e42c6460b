//! Persistence: the ledger of files, milestone state, the outbox and delivery
//! bookkeeping. This module (and only it) speaks SQL.
//!
//! [`Store`] is an enum over backends. A chunk of a file is written through a
//! [`Tx`]: ledger progress, state, case sequences, outbox rows, delivery rows
//! and rejects all commit together or not at all (the Quickwit rule: the
//! checkpoint lives in the same transaction as the output).
//!
//! Two backends ([`sqlite`], [`postgres`]), each with its own migration
//! folder. They keep only the SQL that differs (multi-row writes, index
//! hints, leases): a statement that reads the same in both dialects is
//! written once, with `$N` placeholders, in `shared`; row mapping and the
//! bookkeeping around queries are in `rows`. The enums hand each call to the
//! backend (`dispatch!`) or to the shared statement (`shared!`). The types the store
//! persists belong to the stages that make them (`diff::StateRow`,
//! `outbox::OutboxWrite`, `journey::timer::TimerRow`, `model::Counts`, …):
//! the store imports them, never the reverse.
//! PostgreSQL also lets several instances share the work: files and
//! deliveries are claimed with leases, and chunk commits of one program are
//! serialized by a per-program generation row. SQLite is single-instance, so
//! it grants every claim. See `design.md` beside this file.

/// Writes methods of [`Store`] (`&self`) or [`Tx`] (`&mut self`) that hand
/// the call, as is, to the backend's method of the same name: each backend
/// implements every one, SQLite granting what only sharing needs (leases,
/// generations), so a dispatch is all the enum adds. A method may open with
/// a block that answers without the database (an empty batch).
macro_rules! dispatch {
    ($enum:ident; $($(#[$doc:meta])* $vis:vis async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?)
        -> $ret:ty $($guard:block)?;)*) => {
        impl $enum {
            $($(#[$doc])* $vis async fn $name(&self $(, $arg: $ty)*) -> $ret {
                $($guard)?
                match self {
                    $enum::Sqlite(b) => b.$name($($arg),*).await,
                    $enum::Postgres(b) => b.$name($($arg),*).await,
                }
            })*
        }
    };
    ($enum:ident; $($(#[$doc:meta])* $vis:vis async fn $name:ident(&mut self $(, $arg:ident: $ty:ty)* $(,)?)
        -> $ret:ty $($guard:block)?;)*) => {
        impl $enum {
            $($(#[$doc])* $vis async fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                $($guard)?
                match self {
                    $enum::Sqlite(b) => b.$name($($arg),*).await,
                    $enum::Postgres(b) => b.$name($($arg),*).await,
                }
            })*
        }
    };
}

/// Writes methods of [`Store`] or [`Tx`] whose statements are the same on
/// both backends: the one implementation is [`shared::Sql`]'s function of
/// the same name, run on the SQLite pool named after `=>` (`reader`, or
/// `writer` where a read must see this process's latest commit), on
/// PostgreSQL's one pool, or on the transaction (`tx`).
macro_rules! shared {
    ($enum:ident; $($(#[$doc:meta])* $vis:vis async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?)
        -> $ret:ty => $conn:ident;)*) => {
        impl $enum {
            $($(#[$doc])* $vis async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    $enum::Sqlite(b) => $crate::store::shared::Sql(&b.$conn).$name($($arg),*).await,
                    $enum::Postgres(b) => $crate::store::shared::Sql(&b.pool).$name($($arg),*).await,
                }
            })*
        }
    };
    ($enum:ident; $($(#[$doc:meta])* $vis:vis async fn $name:ident(&mut self $(, $arg:ident: $ty:ty)* $(,)?)
        -> $ret:ty => $conn:ident;)*) => {
        impl $enum {
            $($(#[$doc])* $vis async fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                match self {
                    $enum::Sqlite(b) => {
                        $crate::store::shared::Sql::<sqlx::Sqlite>::$name(&mut b.tx $(, $arg)*).await
                    }
                    $enum::Postgres(b) => {
                        $crate::store::shared::Sql::<sqlx::Postgres>::$name(&mut b.tx $(, $arg)*).await
                    }
                }
            })*
        }
    };
}

pub mod journey;
pub mod lock;
pub mod postgres;
mod rows;
mod shared;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

// Types the store persists but does not own: each belongs to the stage that
// produces it, below the store, so the store imports them and not the reverse.
use crate::diff::StateRow;
use crate::model::Counts;
use crate::outbox::{AttemptOutcome, AttemptResult, DeliveryStatus, Due, OutboxWrite};

/// Errors from the database: system errors, to be propagated and retried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database location: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported store url `{0}` (use sqlite://PATH or postgres://USER@HOST/DB)")]
    Url(String),
    #[error(
        "the database schema is at version {found}, newer than this binary supports ({supported}); \
         upgrade hubsync (a newer version migrated this database) rather than run an older one against it"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("file {file_id}: this instance no longer holds its lease (another instance took it over)")]
    LeaseLost { file_id: i64 },
}

/// How a store behaves towards other instances sharing its database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a claim on a file or a delivery lasts without renewal. An
    /// instance that dies holds its work this long before others take it.
    pub lease: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lease: Duration::from_secs(30),
        }
    }
}

/// The result of claiming a discovered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds the file's lease: process it from `records_done`.
    Owned(FileRow),
    /// Already processed, and long enough ago that no instance is still
    /// archiving it: a re-drop of a known file.
    Done(FileRow),
    /// Another instance holds the lease, or has just finished the file and is
    /// moving it away: leave the file alone.
    Busy,
}

/// Where a program's state stands, as seen inside a chunk transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Only this process writes the store (SQLite): an in-memory index built
    /// from it can only be changed by this process.
    SingleWriter,
    /// Shared store: the program's state generation, bumped by every chunk
    /// that writes state, whichever instance wrote it.
    Shared(i64),
}

/// The schema versions: what the database has applied, what this binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    pub applied: i64,
    pub supported: i64,
}

/// Refuses a database whose schema is newer than this binary's migrations.
fn check_schema(
    applied: Option<i64>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<SchemaVersion, StoreError> {
    let supported = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = applied.unwrap_or(0);
    if applied > supported {
        return Err(StoreError::SchemaTooNew {
            found: applied,
            supported,
        });
    }
    Ok(SchemaVersion { applied, supported })
}

/// A name for this process in lease columns: host, pid and a random suffix,
/// so a restarted process on the same host and pid is still a new owner.
pub fn instance_id() -> String {
    format!(
        "{}:{}:{:04x}",
        host_name(),
        std::process::id(),
        rand::random::<u16>()
    )
}

/// This machine's host name (`host` when it cannot be found).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// A discovered file, as [`Store::file_claim`] records it in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileArrival<'a> {
    pub connector: &'a str,
    pub sha256: &'a str,
    pub name: &'a str,
    pub size: u64,
}

/// A chunk's move of its file's checkpoint ([`Tx::file_progress`]).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub file_id: i64,
    /// Records of the file done once this chunk commits.
    pub records_done: u64,
    /// This chunk's counts, added to the file's.
    pub counts: &'a Counts,
    /// Marks the file done or failed (with an error to keep); `None`: still processing.
    pub finish: Option<(FileStatus, Option<&'a str>)>,
}

/// Which due lane heads [`Store::claim_due`] claims.
#[derive(Debug, Clone, Copy)]
pub struct DueClaim<'a> {
    pub subscriber: &'a str,
    /// Unix ms: what is due at this time.
    pub now_ms: i64,
    pub limit: usize,
    /// How long a shared store leases each claimed delivery.
    pub lease: Duration,
    /// This worker's unsettled sends, left out.
    pub in_flight: &'a HashSet<i64>,
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRow {
    pub id: i64,
    pub connector: String,
    pub sha256: String,
    pub name: String,
    pub status: FileStatus,
    pub records_done: u64,
    pub counts: Counts,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Processing,
    Done,
    Failed,
}

impl FileStatus {
    fn as_str(self) -> &'static str {
        match self {
            FileStatus::Processing => "processing",
            FileStatus::Done => "done",
            FileStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> FileStatus {
        match s {
            "done" => FileStatus::Done,
            "failed" => FileStatus::Failed,
            _ => FileStatus::Processing,
        }
    }
}

/// A quarantined record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectRow {
    pub locator: String,
    pub column: Option<String>,
    pub reason: String,
}

/// Operator-visible state of a subscriber (absent row = enabled, closed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriberState {
    pub subscriber: String,
    /// Set by a 410 Gone: unix ms and why. Nothing is sent while set.
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    /// The URL that answered 410; configuring another URL re-enables.
    pub disabled_url: Option<String>,
    /// Set while the circuit breaker is open: unix ms of the next probe.
    pub parked_until: Option<i64>,
    pub parked_reason: Option<String>,
}

/// Which deliveries `hubsync replay` resets to pending. Every given
/// criterion must hold; `subscriber` is required.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub subscriber: String,
    /// Outbox commit time range, unix ms, inclusive start, exclusive end.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub program: Option<String>,
    pub case_id: Option<String>,
    pub message_id: Option<String>,
    /// Only dead letters (status failed).
    pub failed_only: bool,
    /// Also replay messages whose body was purged (thin subscribers only).
    pub allow_purged: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayCount {
    pub replayed: u64,
    /// Matched but skipped: the payload was purged by retention.
    pub purged: u64,
}

/// One outbox message with its provenance, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub id: String,
    #[serde(skip)]
    pub pos: i64,
    pub connector: String,
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub sequence: i64,
    pub created_at_ms: i64,
    pub file: Option<String>,
    pub sha256: Option<String>,
    #[serde(skip)]
    pub body: Option<String>,
    pub deliveries: Vec<DeliveryRow>,
}

/// One subscriber's delivery of a message.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub subscriber: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// One logged HTTP attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub subscriber: String,
    pub attempt: i64,
    pub at_ms: i64,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// A dead letter: a message whose delivery to a subscriber failed for good.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub sequence: i64,
    pub created_at_ms: i64,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Per-subscriber delivery figures for `hubsync status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscriberStats {
    pub subscriber: String,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub coalesced: i64,
    /// Pending deliveries whose last attempt failed (being retried).
    pub failing: i64,
    pub oldest_pending_ms: Option<i64>,
}

/// What the remote-file ledger says about a listed (path, size, mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteStatus {
    /// Committed (or a duplicate of committed content).
    Done,
    /// Refused as a whole (bad header, too many rejects); the staged copy is
    /// in the error folder and the same remote version is not fetched again.
    Failed,
}

impl RemoteStatus {
    fn as_str(self) -> &'static str {
        match self {
            RemoteStatus::Done => "done",
            RemoteStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> RemoteStatus {
        match s {
            "failed" => RemoteStatus::Failed,
            _ => RemoteStatus::Done,
        }
    }
}

/// A remote file version as listed: its identity in the remote-file ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey<'a> {
    pub connector: &'a str,
    pub path: &'a str,
    pub size: u64,
    pub mtime: u32,
}

/// A missed deadline, for `hubsync status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingDrop {
    pub connector: String,
    pub expected_by_ms: i64,
    pub detected_at_ms: i64,
    pub last_arrival_ms: Option<i64>,
    pub webhook_id: Option<String>,
}

// ------------------------------------------------ operator console (issue 17)

/// A ledger row with its size and times, for the console's feed pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    #[serde(flatten)]
    pub file: FileRow,
    pub size: u64,
    /// Unix ms: when the file arrived (its ledger row was created).
    pub started_at_ms: i64,
    /// Unix ms: when it was done or refused.
    pub finished_at_ms: Option<i64>,
}

/// Which ledger rows [`Store::file_summaries`] lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct FileQuery {
    pub connector: Option<String>,
    /// Files that arrived at or after this unix-ms time.
    pub since_ms: Option<i64>,
    pub failed_only: bool,
    pub limit: i64,
}

/// A subscriber's attempts since some time, and how many of them failed
/// (a transport error or a non-2xx answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttemptTally {
    pub subscriber: String,
    pub attempts: i64,
    pub failed: i64,
}

/// One delivered message: when, and how long after its outbox commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub delivered_at_ms: i64,
    pub latency_ms: i64,
}

/// A case with recent milestones (the console's case list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseRef {
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub created_at_ms: i64,
}

/// One operator action in the console's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The name the operator gave at login.
    pub operator: String,
    pub action: String,
    /// A subscriber name, or empty.
    pub target: String,
    pub detail: String,
}

/// The store, over one backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// A chunk transaction.
pub enum Tx {
    Sqlite(sqlite::SqliteTx),
    Postgres(postgres::PgTx),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`, with
    /// default options.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    /// Opens and migrates the store at `url`. Refuses (before touching
    /// anything) a schema newer than this binary's.
    pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(postgres::PgStore::open(url, opts).await?));
        }
        Err(StoreError::Url(url.to_string()))
    }

    /// Opens an existing store read-only; `None` when there is none yet.
    pub async fn open_read_only(url: &str) -> Result<Option<Store>, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(sqlite::SqliteStore::open_read_only(path)
                .await?
                .map(Store::Sqlite));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(postgres::PgStore::open_read_only(url).await?.map(Store::Postgres));
        }
        Err(StoreError::Url(url.to_string()))
    }

    /// This process's name in lease columns.
    pub fn instance(&self) -> &str {
        match self {
            Store::Sqlite(s) => s.instance(),
            Store::Postgres(s) => s.instance(),
        }
    }

    /// Whether other instances may share this store's work.
    pub fn is_shared(&self) -> bool {
        match self {
            Store::Sqlite(_) => false,
            Store::Postgres(_) => true,
        }
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(Tx::Sqlite(s.begin().await?)),
            Store::Postgres(s) => Ok(Tx::Postgres(s.begin().await?)),
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// The cases of the latest file-borne messages, newest first, each once.
    pub async fn recent_cases(&self, limit: i64) -> Result<Vec<CaseRef>, StoreError> {
        let rows = self.recent_case_rows(limit * 8).await?;
        let mut seen = HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|c| seen.insert((c.program.clone(), c.case_id.clone())))
            .take(limit as usize)
            .collect())
    }

    /// Records a missed deadline and, in the same transaction, its
    /// `feed.missing` message when `message` has subscribers. Returns false
    /// when the deadline was already recorded (nothing is written twice).
    pub async fn missing_drop(
        &self,
        drop: &MissingDrop,
        message: Option<&OutboxWrite>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = tx
            .record_missing_drop(drop, message.map(|m| m.id.as_str()))
            .await?;
        if let Some(m) = message.filter(|_| inserted) {
            // Not from a file: file_id 0 marks outbox rows of feed events.
            tx.insert_outbox(std::slice::from_ref(m), 0).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

dispatch! { Store;
    /// Stored state rows by key hash (read-only; for dry runs).
    pub async fn state_rows(&self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError>;

    /// The schema version applied to the database and the one this binary has.
    pub async fn schema_version(&self) -> Result<SchemaVersion, StoreError>;

    /// Claims a discovered file for this instance (see [`Claim`]). A file
    /// that failed earlier is claimed again (it was dropped again).
    pub async fn file_claim(&self, file: &FileArrival<'_>) -> Result<Claim, StoreError>;

    /// The earliest `next_attempt_at` of a pending delivery.
    pub async fn next_due(&self, subscriber: &str) -> Result<Option<i64>, StoreError>;

    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<(), StoreError>;

    pub async fn subscriber_stats(&self) -> Result<Vec<SubscriberStats>, StoreError>;

    /// Extends this instance's lease on a file it is processing; `false` when
    /// the lease was lost (expired and taken over).
    pub async fn file_renew(&self, file_id: i64) -> Result<bool, StoreError>;

    /// Gives up this instance's lease on a file (shutdown mid-file), so another
    /// instance can resume it at once instead of after the lease expires.
    pub async fn file_release(&self, file_id: i64) -> Result<(), StoreError>;

    /// Each program's state generation (empty for a single-writer store).
    /// Read before [`Store::state_index`], so an index is never newer than the
    /// generations it is checked against.
    pub async fn state_generations(&self) -> Result<HashMap<String, i64>, StoreError>;

    /// Claims up to `limit` heads of lanes that are due for `subscriber`,
    /// oldest first, leaving out `in_flight` (this worker's unsettled sends).
    /// On a shared store each is leased to this instance for `lease`, and a
    /// lane whose head another instance holds is not due.
    pub async fn claim_due(&self, claim: &DueClaim<'_>) -> Result<Vec<Due>, StoreError>;

    /// Applies the outcomes an outcome journal kept (`deliver::journal`)
    /// after a crash. Idempotent: an outcome already recorded, or overtaken
    /// since (a replay re-queued the message), changes nothing. Returns how
    /// many deliveries it settled or rescheduled.
    pub async fn apply_journal(&self, results: &[AttemptResult]) -> Result<u64, StoreError>;
}

shared! { Store;
    pub async fn file_get(&self, connector: &str, sha256: &str) -> Result<Option<FileRow>, StoreError> => writer;

    /// Marks a file failed with its reason (the whole-file errors: header, I/O).
    pub async fn file_fail(&self, file_id: i64, reason: &str) -> Result<(), StoreError> => writer;

    pub async fn files(&self, limit: i64) -> Result<Vec<FileRow>, StoreError> => reader;

    pub async fn rejects(&self, file_id: i64) -> Result<Vec<RejectRow>, StoreError> => writer;

    /// Every (key hash, content hash) in the state, unless there are more than `cap`.
    pub async fn state_index(&self, cap: usize) -> Result<Option<Vec<(u64, u64)>>, StoreError> => writer;

    /// A trivial query: is the database answering?
    pub async fn ping(&self) -> Result<(), StoreError> => reader;

    /// Every stored subscriber state (subscribers never disabled or parked have none).
    pub async fn subscriber_states(&self) -> Result<Vec<SubscriberState>, StoreError> => writer;

    /// Writes a subscriber's whole state (upsert). Rare: on 410, breaker
    /// transitions and re-enable.
    pub async fn set_subscriber_state(&self, state: &SubscriberState) -> Result<(), StoreError> => writer;

    /// Marks as coalesced every pending, never-attempted delivery of
    /// `subscriber` that a later pending delivery in the same lane with the
    /// same milestone key supersedes. With `all_lanes` false, only lanes whose
    /// head is failing (has attempts) are considered. Returns how many.
    pub async fn coalesce(&self, subscriber: &str, all_lanes: bool) -> Result<u64, StoreError> => writer;

    /// Resets matching deliveries to pending, due now, attempts zero. The
    /// outbox row (webhook-id and body) is reused as is.
    pub async fn replay(&self, filter: &ReplayFilter) -> Result<ReplayCount, StoreError> => writer;

    /// Nulls the body of up to `limit` messages committed before `cutoff_ms`
    /// whose deliveries are all settled as delivered or coalesced. Ids and
    /// metadata stay. Returns how many were purged.
    pub async fn purge_payloads(&self, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> => writer;

    /// One message by webhook id, with provenance and deliveries.
    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>, StoreError> => reader;

    /// Logged attempts of a message, oldest first.
    pub async fn attempts(&self, message_id: &str) -> Result<Vec<AttemptRow>, StoreError> => reader;

    /// Dead letters of `subscriber`, oldest first.
    pub async fn dead_letters(&self, subscriber: &str, limit: i64) -> Result<Vec<DeadLetter>, StoreError> => reader;

    /// All messages of a case in sequence order, with provenance and deliveries.
    pub async fn case_timeline(&self, program: &str, case_id: &str) -> Result<Vec<MessageRow>, StoreError> => reader;

    /// The ledger's verdict on a listed remote file version, if it has one.
    pub async fn remote_file_status(&self, key: &RemoteKey<'_>) -> Result<Option<RemoteStatus>, StoreError> => writer;

    /// Records that a remote file version was handled (idempotent).
    pub async fn remote_file_record(
        &self,
        key: &RemoteKey<'_>,
        sha256: &str,
        status: RemoteStatus,
    ) -> Result<(), StoreError> => writer;

    /// Unix ms of the latest file that arrived for `connector` at or before
    /// `until_ms`: a ledger row started, or a remote file recorded.
    pub async fn last_arrival(&self, connector: &str, until_ms: i64) -> Result<Option<i64>, StoreError> => writer;

    /// Missed deadlines, newest first.
    pub async fn missing_drops(&self, limit: i64) -> Result<Vec<MissingDrop>, StoreError> => reader;

    /// Ledger rows with their times, newest first.
    pub async fn file_summaries(&self, q: &FileQuery) -> Result<Vec<FileSummary>, StoreError> => reader;

    pub async fn file_summary(&self, file_id: i64) -> Result<Option<FileSummary>, StoreError> => reader;

    /// The first `limit` messages a file produced, in outbox order.
    pub async fn file_messages(&self, file_id: i64, limit: i64) -> Result<Vec<MessageRow>, StoreError> => reader;

    /// Attempts per subscriber since `since_ms`, and how many failed.
    pub async fn attempt_tallies(&self, since_ms: i64) -> Result<Vec<AttemptTally>, StoreError> => reader;

    /// Up to `limit` of `subscriber`'s latest deliveries delivered since `since_ms`.
    pub async fn delivery_latencies(
        &self,
        subscriber: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Latency>, StoreError> => reader;

    /// What [`Store::replay`] would queue again with this filter; changes nothing.
    pub async fn replay_preview(&self, filter: &ReplayFilter) -> Result<ReplayCount, StoreError> => reader;

    pub async fn audit_record(&self, entry: &AuditEntry) -> Result<(), StoreError> => writer;

    /// The latest audit entries, newest first.
    pub async fn audit_recent(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> => reader;

    /// Latest file-borne outbox rows, newest first (cases may repeat).
    async fn recent_case_rows(&self, limit: i64) -> Result<Vec<CaseRef>, StoreError> => reader;
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

dispatch! { Tx;
    /// Stored state rows whose key hash is in `hashes`.
    pub async fn state_rows(&mut self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError>;

    /// Adds `n` to each case's sequence; returns each case's new last sequence.
    pub async fn bump_cases(&mut self, cases: &[(&str, &str, i64)]) -> Result<Vec<i64>, StoreError>;

    pub async fn upsert_state(&mut self, rows: &[StateRow], file_id: i64) -> Result<(), StoreError>;

    pub async fn insert_outbox(&mut self, rows: &[OutboxWrite], file_id: i64) -> Result<(), StoreError>;

    pub async fn insert_rejects(&mut self, file_id: i64, rows: &[RejectRow]) -> Result<(), StoreError>;

    /// Moves the file's checkpoint and adds this chunk's counts; `finish` marks it done or failed.
    pub async fn file_progress(&mut self, progress: &Progress<'_>) -> Result<(), StoreError>;

    /// (key hash, content hash) of stored states whose key hash is in `hashes`.
    pub async fn state_hashes(&mut self, hashes: &[u64]) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Locks `program`'s state for the rest of the transaction (chunk commits
    /// of one program serialize across instances) and returns its generation.
    pub async fn lock_program(&mut self, program: &str) -> Result<Generation, StoreError>;

    /// Records that this transaction wrote `program`'s state; returns the new generation.
    pub async fn bump_program(&mut self, program: &str) -> Result<Generation, StoreError>;
}

shared! { Tx;
    /// Records a missed deadline once; false when it was already recorded.
    async fn record_missing_drop(&mut self, drop: &MissingDrop, webhook_id: Option<&str>) -> Result<bool, StoreError> => tx;
}

impl FileStatus {
    pub fn label(self) -> &'static str {
        self.as_str()
    }
}
