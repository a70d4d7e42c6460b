//! SFTP drops: connecting (host key verified, ed25519 key or password),
//! listing a remote folder until files settle (or a done-marker appears),
//! streaming a settled file into local staging while hashing it, and tidying
//! the remote file away once the pipeline has committed.
//!
//! This module owns the SSH/SFTP protocol and nothing of the pipeline: the
//! runtime decides what to do with a [`ReadyFile`] and calls
//! [`SftpDrop::after_commit`] when it is durable.
//!
//! Why the checks are as they are:
//! - A file counts as complete only when its size and mtime are the same in
//!   two listings at least `settle` apart. Remote mtimes have one-second
//!   precision, so the settle window is at least a second (checked at load),
//!   and the file is stat-ed again after download: a file that changed while
//!   it was read is thrown away and must settle again.
//! - Downloads go to `<staging>/<…>.part` and are renamed only once every
//!   byte arrived, so a dropped connection never leaves a file that looks
//!   complete; the pipeline sees only whole files.
//! - The host key is always verified (pinned SHA256 fingerprint or a
//!   known_hosts file). A mismatch is [`SftpError::HostKeyMismatch`], which
//!   the runtime treats as fatal for the connector.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::error::Error as SftpProtoError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileType, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ssh_keys::{fingerprint, ClientKey};
use super::ReadyFile;
use crate::config::{AfterCommit, Secret};

/// An SFTP drop, validated at load by setup.
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
    /// Where acknowledgments go back to the hub, when they do (`ack_outbox`).
    pub ack_outbox: Option<Box<AckOutbox>>,
    /// Local folder downloads are streamed into: `<data_dir>/staging/<connector>`.
    pub staging: PathBuf,
    /// Local folder for rejects sidecars: `<data_dir>/archive/<connector>`.
    pub archive: PathBuf,
    /// Local folder failed files (and their `.error.json`) go to.
    pub error: PathBuf,
}

/// The hub's folder for acknowledgments and the local spool of those owed.
#[derive(Debug, Clone)]
pub struct AckOutbox {
    /// The remote folder (`ack_outbox`).
    pub remote: String,
    /// `<data_dir>/acks/<connector>`: see [`super::spool`].
    pub spool: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SftpAuth {
    /// An ed25519 key, decoded at load (so `hubsync check` catches a bad key
    /// or passphrase).
    Key(ClientKey),
    Password(Secret),
}

/// How the server's host key is verified. There is no "accept any".
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// `SHA256:<base64>`, as `ssh-keygen -lf` prints it.
    Fingerprint(String),
    KnownHosts(PathBuf),
}

/// Errors of the SFTP stage. [`SftpError::scope`] says how far each reaches.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "host key of {addr} does not match: the server offered {offered} ({algorithm}), expected {expected}; \
         if the hub really changed its key, update the connector's host key setting"
    )]
    HostKeyMismatch {
        addr: String,
        offered: String,
        algorithm: String,
        expected: String,
    },
    #[error("{addr} refused authentication for user `{user}`")]
    AuthRefused { addr: String, user: String },
    #[error("ssh session: {0}")]
    Session(String),
    #[error("{op} {path}: no such file")]
    NotFound { op: &'static str, path: String },
    #[error("{op} {path}: permission denied")]
    PermissionDenied { op: &'static str, path: String },
    #[error("{op} {path}: {reason}")]
    Remote {
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error("{op} {path}: connection lost: {reason}")]
    Lost {
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error("{path} changed while it was downloaded; it must settle again")]
    Changed { path: String },
    #[error("local {op} {path}: {source}")]
    Local {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// How far an error reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This file only: report it and go on with the others.
    File,
    /// The connection: drop it, reconnect with backoff.
    Connection,
    /// The connector cannot safely go on (the host key changed).
    Fatal,
}

impl SftpError {
    pub fn scope(&self) -> Scope {
        match self {
            SftpError::HostKeyMismatch { .. } => Scope::Fatal,
            SftpError::NotFound { .. }
            | SftpError::PermissionDenied { .. }
            | SftpError::Remote { .. }
            | SftpError::Changed { .. } => Scope::File,
            SftpError::Connect { .. }
            | SftpError::AuthRefused { .. }
            | SftpError::Session(_)
            | SftpError::Lost { .. }
            | SftpError::Local { .. }
            | SftpError::Timeout(_) => Scope::Connection,
        }
    }

    fn local(op: &'static str, path: &Path, source: std::io::Error) -> SftpError {
        SftpError::Local {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Classifies an SFTP protocol error for `op` on `path`.
fn proto(op: &'static str, path: &str, e: SftpProtoError) -> SftpError {
    let path = path.to_string();
    match e {
        SftpProtoError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => SftpError::NotFound { op, path },
            StatusCode::PermissionDenied => SftpError::PermissionDenied { op, path },
            StatusCode::NoConnection | StatusCode::ConnectionLost => SftpError::Lost {
                op,
                path,
                reason: s.error_message,
            },
            _ => SftpError::Remote {
                op,
                path,
                reason: format!("{}: {}", s.status_code, s.error_message),
            },
        },
        // Timeouts, closed channels and protocol confusion all mean the
        // session can no longer be trusted: reconnect.
        other => SftpError::Lost {
            op,
            path,
            reason: other.to_string(),
        },
    }
}

/// Classifies an I/O error from reading a remote file (the SFTP error hides inside).
fn proto_io(op: &'static str, path: &str, e: std::io::Error) -> SftpError {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<SftpProtoError>())
        .cloned();
    match inner {
        Some(p) => proto(op, path, p),
        None => SftpError::Lost {
            op,
            path: path.to_string(),
            reason: e.to_string(),
        },
    }
}

/// What a known_hosts file says about a key.
#[derive(Debug, PartialEq, Eq)]
enum KnownHosts {
    Match,
    /// The host is listed, with other keys (or this key is revoked).
    Mismatch(String),
    /// The host is not listed at all.
    Unknown,
}

/// Checks `key` for `host:port` against an OpenSSH known_hosts file: plain
/// and hashed (`|1|salt|hash`) host patterns, `[host]:port`, `@revoked`.
/// `@cert-authority` lines are ignored (no certificates here).
fn check_known_hosts(text: &str, host: &str, port: u16, key: &PublicKey) -> KnownHosts {
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut listed = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let mut first = parts.next().unwrap_or_default();
        let marker = if first.starts_with('@') {
            let m = first;
            first = parts.next().unwrap_or_default();
            Some(m)
        } else {
            None
        };
        let (Some(_algo), Some(b64)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !host_matches(first, &name) {
            continue;
        }
        let Ok(recorded) = russh::keys::parse_public_key_base64(b64) else {
            continue;
        };
        match marker {
            Some("@revoked") if recorded.key_data() == key.key_data() => {
                return KnownHosts::Mismatch("the key is marked @revoked".into())
            }
            Some(_) => continue,
            None => {}
        }
        if recorded.key_data() == key.key_data() {
            return KnownHosts::Match;
        }
        listed.push(fingerprint(&recorded));
    }
    if listed.is_empty() {
        KnownHosts::Unknown
    } else {
        KnownHosts::Mismatch(listed.join(", "))
    }
}

/// One known_hosts host field (comma-separated patterns) against `name`.
fn host_matches(field: &str, name: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut hit = false;
    for pat in field.split(',') {
        if let Some(rest) = pat.strip_prefix("|1|") {
            let Some((salt, hash)) = rest.split_once('|') else {
                continue;
            };
            let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
                continue;
            };
            let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
                continue;
            };
            mac.update(name.as_bytes());
            if mac.verify_slice(&hash).is_ok() {
                hit = true;
            }
        } else if let Some(neg) = pat.strip_prefix('!') {
            if wildcard(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if wildcard(pat.as_bytes(), name.as_bytes()) {
            hit = true;
        }
    }
    hit
}

/// OpenSSH host patterns: `*` any run of characters, `?` exactly one.
fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && wildcard(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && wildcard(rest, &s[1..]),
    }
}

/// The russh handler: verifies the host key, remembering why it refused.
struct Verifier {
    check: HostKeyCheck,
    host: String,
    port: u16,
    refusal: Arc<Mutex<Option<(String, String, String)>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        let offered = fingerprint(key);
        let refused = match &self.check {
            HostKeyCheck::Fingerprint(pinned) => (offered != *pinned).then(|| pinned.clone()),
            HostKeyCheck::KnownHosts(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                match check_known_hosts(&text, &self.host, self.port, key) {
                    KnownHosts::Match => None,
                    KnownHosts::Mismatch(listed) => Some(format!("{listed} (from {})", path.display())),
                    KnownHosts::Unknown => Some(format!(
                        "an entry for this host in {}, which has none",
                        path.display()
                    )),
                }
            }
        };
        match refused {
            None => Ok(true),
            Some(expected) => {
                *self
                    .refusal
                    .lock()
                    .expect("the lock is never held across a panic") =
                    Some((offered, key.algorithm().to_string(), expected));
                Ok(false)
            }
        }
    }
}

/// A live SSH connection with its SFTP channel.
struct Connection {
    ssh: client::Handle<Verifier>,
    sftp: SftpSession,
}

/// A listed remote file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Full remote path.
    pub path: String,
    pub name: String,
    pub size: u64,
    /// Seconds since the epoch (the protocol's precision).
    pub mtime: u32,
    /// The done-marker's remote path, when the connector uses markers.
    pub marker: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Observation {
    size: u64,
    mtime: u32,
    since: Instant,
}

/// One connector's SFTP drop and what has been seen in it.
pub struct SftpDrop {
    src: SftpSource,
    conn: Option<Connection>,
    seen: HashMap<String, Observation>,
    /// Paths already reported for a per-file problem: reported once, not every poll.
    reported: HashSet<String>,
    /// Spooled acknowledgments whose push failed and was reported.
    unpushed: HashSet<PathBuf>,
}

/// Names that are never partner files: hidden files and partial uploads.
fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || [".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp"]
            .iter()
            .any(|s| lower.ends_with(s))
}

impl SftpDrop {
    pub fn new(src: SftpSource) -> SftpDrop {
        SftpDrop {
            src,
            conn: None,
            seen: HashMap::new(),
            reported: HashSet::new(),
            unpushed: HashSet::new(),
        }
    }

    pub fn source(&self) -> &SftpSource {
        &self.src
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.src.host, self.src.port)
    }

    /// Creates the local staging and error folders and clears stale partial downloads.
    pub fn prepare(&self) -> Result<(), SftpError> {
        for dir in [&self.src.staging, &self.src.error] {
            std::fs::create_dir_all(dir).map_err(|e| SftpError::local("create", dir, e))?;
        }
        // Anything left in staging is from a run that stopped mid-download or
        // mid-file; it is fetched again, so it can go.
        if let Ok(rd) = std::fs::read_dir(&self.src.staging) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.ssh.is_closed())
    }

    /// Drops the connection (after an error); the next call reconnects.
    pub async fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.sftp.close().await;
            let _ = c.ssh.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        }
    }

    /// Connects and authenticates if not connected.
    pub async fn connect(&mut self) -> Result<(), SftpError> {
        if self.is_connected() {
            return Ok(());
        }
        self.conn = None;
        let timeout = self.src.timeout;
        let conn = tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| SftpError::Timeout(timeout))??;
        self.conn = Some(conn);
        Ok(())
    }

    async fn open(&self) -> Result<Connection, SftpError> {
        let addr = self.addr();
        let config = client::Config {
            // A silent peer is found by keepalives, not by a hung read.
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            // A larger window keeps more of the file in flight on slow links.
            window_size: 16 * 1024 * 1024,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(&[
                    russh::cipher::AES_256_GCM,
                    russh::cipher::AES_128_GCM,
                    russh::cipher::CHACHA20_POLY1305,
                    russh::cipher::AES_256_CTR,
                    russh::cipher::AES_128_CTR,
                ]),
                ..Default::default()
            },
            ..Default::default()
        };
        let refusal = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            check: self.src.host_key.clone(),
            host: self.src.host.clone(),
            port: self.src.port,
            refusal: refusal.clone(),
        };
        let connected = client::connect(
            Arc::new(config),
            (self.src.host.as_str(), self.src.port),
            verifier,
        )
        .await;
        let mut ssh = match connected {
            Ok(h) => h,
            Err(e) => {
                let refused = refusal
                    .lock()
                    .expect("the lock is never held across a panic")
                    .take();
                return Err(match refused {
                    Some((offered, algorithm, expected)) => SftpError::HostKeyMismatch {
                        addr,
                        offered,
                        algorithm,
                        expected,
                    },
                    None => SftpError::Connect {
                        addr,
                        reason: e.to_string(),
                    },
                });
            }
        };
        let auth = match &self.src.auth {
            SftpAuth::Key(key) => {
                ssh.authenticate_publickey(
                    self.src.user.clone(),
                    PrivateKeyWithHashAlg::new(key.0.clone(), None),
                )
                .await
            }
            SftpAuth::Password(pw) => {
                ssh.authenticate_password(self.src.user.clone(), pw.0.clone())
                    .await
            }
        }
        .map_err(|e| SftpError::Session(e.to_string()))?;
        if !auth.success() {
            return Err(SftpError::AuthRefused {
                addr,
                user: self.src.user.clone(),
            });
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| SftpError::Session(e.to_string()))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpError::Session(e.to_string()))?;
        let cfg = russh_sftp::client::Config {
            request_timeout_secs: self.src.timeout.as_secs().max(1),
            max_concurrent_reads: 32,
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), cfg)
            .await
            .map_err(|e| SftpError::Session(e.to_string()))?;
        Ok(Connection { ssh, sftp })
    }

    fn sftp(&self) -> Result<&SftpSession, SftpError> {
        self.conn
            .as_ref()
            .map(|c| &c.sftp)
            .ok_or_else(|| SftpError::Session("not connected".into()))
    }

    fn marker_for(&self, dir: &str, name: &str) -> Option<String> {
        self.src
            .done_marker
            .as_ref()
            .map(|m| join(dir, &m.replace("{name}", name)))
    }

    fn is_marker(&self, name: &str) -> bool {
        let Some(template) = &self.src.done_marker else {
            return false;
        };
        let (prefix, suffix) = template
            .split_once("{name}")
            .expect("validated at load: done_marker contains {name}");
        name.len() > prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
    }

    /// Lists the remote folder (walking subfolders when `recursive`) and
    /// returns the files that are complete, in path order, plus how long
    /// until the next candidate could become complete.
    pub async fn scan(&mut self) -> Result<(Vec<RemoteFile>, Option<Duration>), SftpError> {
        let now = Instant::now();
        let mut dirs = vec![self.src.path.clone()];
        let mut listed: Vec<(String, String, u64, u32)> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        while let Some(dir) = dirs.pop() {
            let entries = {
                let sftp = self.sftp()?;
                match sftp.read_dir(dir.clone()).await {
                    Ok(rd) => rd,
                    // A vanished subfolder is not an error for the whole walk.
                    Err(e) if dir != self.src.path => {
                        tracing::debug!(dir = %dir, error = %e, "cannot list a subfolder; skipped");
                        continue;
                    }
                    Err(e) => return Err(proto("list", &dir, e)),
                }
            };
            for entry in entries {
                let name = entry.file_name();
                let meta = entry.metadata();
                let path = join(&dir, &name);
                // `file_type` compares the whole S_IFMT field (the `is_*`
                // helpers test single bits, and a symlink has the regular bit).
                let kind = meta.file_type();
                if kind == FileType::Dir {
                    if self.src.recursive && !name.starts_with('.') && path != self.src.remote_archive {
                        dirs.push(path);
                    }
                    continue;
                }
                names.insert(path.clone());
                // Symlinks and devices are not partner files.
                if kind != FileType::File || is_temporary(&name) || self.is_marker(&name) {
                    continue;
                }
                if !self.src.pattern.is_match(&name) {
                    continue;
                }
                listed.push((dir.clone(), name, meta.size.unwrap_or(0), meta.mtime.unwrap_or(0)));
            }
        }
        let mut ready = Vec::new();
        let mut next: Option<Duration> = None;
        let mut present = HashSet::new();
        for (dir, name, size, mtime) in listed {
            let path = join(&dir, &name);
            present.insert(path.clone());
            if let Some(marker) = self.marker_for(&dir, &name) {
                if names.contains(&marker) {
                    ready.push(RemoteFile {
                        path,
                        name,
                        size,
                        mtime,
                        marker: Some(marker),
                    });
                }
                continue;
            }
            let since = match self.seen.get(&path) {
                Some(prev) if prev.size == size && prev.mtime == mtime => prev.since,
                _ => {
                    self.seen.insert(
                        path.clone(),
                        Observation {
                            size,
                            mtime,
                            since: now,
                        },
                    );
                    now
                }
            };
            let stable_for = now.duration_since(since);
            if stable_for >= self.src.settle {
                ready.push(RemoteFile {
                    path,
                    name,
                    size,
                    mtime,
                    marker: None,
                });
            } else {
                let wait = self.src.settle - stable_for;
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        self.seen.retain(|p, _| present.contains(p));
        self.reported.retain(|p| present.contains(p));
        ready.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((ready, next))
    }

    /// Forgets a file's settle observation: it must be seen stable again.
    pub fn unsettle(&mut self, path: &str) {
        self.seen.remove(path);
    }

    /// Whether a per-file problem with `path` is new (report it) or already reported.
    pub fn first_report(&mut self, path: &str) -> bool {
        self.reported.insert(path.to_string())
    }

    /// Whether a failed push of spooled `entry` is new (report it) or was
    /// reported already; `pushed` forgets it once it went through.
    pub fn first_push_failure(&mut self, entry: &Path, pushed: bool) -> bool {
        if pushed {
            self.unpushed.remove(entry);
            return false;
        }
        self.unpushed.insert(entry.to_path_buf())
    }

    /// Streams `file` into staging while hashing it. The staged copy appears
    /// under its final name only when complete and unchanged on the server.
    pub async fn fetch(&mut self, file: &RemoteFile) -> Result<ReadyFile, SftpError> {
        let stem = format!(
            "{:016x}-{}",
            xxhash_rust::xxh3::xxh3_64(file.path.as_bytes()),
            file.name
        );
        // The partial download is per process: instances sharing a data
        // folder may fetch the same remote file at once, and one writing into
        // the other's `.part` (truncating it) could leave a truncated file
        // under the final name (the chaos suite's two-instance run saw an
        // empty one quarantined). The final rename is atomic either way.
        let part = self
            .src
            .staging
            .join(format!("{stem}.{}.part", std::process::id()));
        let done = self.src.staging.join(&stem);
        let result = self.download(file, &part).await;
        match result {
            Ok((sha256, size)) => {
                std::fs::rename(&part, &done).map_err(|e| SftpError::local("rename", &part, e))?;
                Ok(ReadyFile {
                    path: done,
                    name: file.name.clone(),
                    size,
                    sha256,
                    marker: None,
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                if matches!(e, SftpError::Changed { .. }) {
                    self.unsettle(&file.path);
                }
                Err(e)
            }
        }
    }

    async fn download(&self, file: &RemoteFile, part: &Path) -> Result<(String, u64), SftpError> {
        let sftp = self.sftp()?;
        let mut remote = sftp
            .open(file.path.clone())
            .await
            .map_err(|e| proto("open", &file.path, e))?;
        let local = tokio::fs::File::create(part)
            .await
            .map_err(|e| SftpError::local("create", part, e))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, local);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = remote
                .read(&mut buf)
                .await
                .map_err(|e| proto_io("read", &file.path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|e| SftpError::local("write", part, e))?;
            size += n as u64;
        }
        // Stat the open handle: a file that grew, shrank or was touched while
        // it was read is not the file that settled.
        let after = remote
            .metadata()
            .await
            .map_err(|e| proto("stat", &file.path, e))?;
        let _ = remote.shutdown().await;
        if size != file.size || after.size != Some(file.size) || after.mtime != Some(file.mtime) {
            return Err(SftpError::Changed {
                path: file.path.clone(),
            });
        }
        out.flush()
            .await
            .map_err(|e| SftpError::local("write", part, e))?;
        out.get_mut()
            .sync_all()
            .await
            .map_err(|e| SftpError::local("sync", part, e))?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Applies the connector's `after_commit` to a committed remote file:
    /// rename into the remote archive, delete, or leave it. Returns where it went.
    pub async fn after_commit(&mut self, file: &RemoteFile) -> Result<Option<String>, SftpError> {
        self.seen.remove(&file.path);
        let moved = match self.src.after_commit {
            AfterCommit::Leave => return Ok(None),
            AfterCommit::Delete => {
                let sftp = self.sftp()?;
                match sftp.remove_file(file.path.clone()).await {
                    Ok(()) => None,
                    // Someone else tidied it already: the goal is met.
                    Err(e) => match proto("delete", &file.path, e) {
                        SftpError::NotFound { .. } => None,
                        other => return Err(other),
                    },
                }
            }
            AfterCommit::Archive => Some(self.archive(file).await?),
        };
        if let Some(marker) = &file.marker {
            let _ = self.sftp()?.remove_file(marker.clone()).await;
        }
        Ok(moved)
    }

    /// Renames into the remote archive under a free name (a rename onto an
    /// existing path fails on OpenSSH, so the next free `.N` suffix is used).
    async fn archive(&self, file: &RemoteFile) -> Result<String, SftpError> {
        let sftp = self.sftp()?;
        let dir = self.src.remote_archive.clone();
        if !sftp
            .try_exists(dir.clone())
            .await
            .map_err(|e| proto("stat", &dir, e))?
        {
            if let Err(e) = sftp.create_dir(dir.clone()).await {
                // Another process may have made it meanwhile.
                if !sftp.try_exists(dir.clone()).await.unwrap_or(false) {
                    return Err(proto("mkdir", &dir, e));
                }
            }
        }
        let mut last = None;
        for n in 0..100u32 {
            let target = if n == 0 {
                join(&dir, &file.name)
            } else {
                join(&dir, &format!("{}.{n}", file.name))
            };
            if sftp
                .try_exists(target.clone())
                .await
                .map_err(|e| proto("stat", &target, e))?
            {
                continue;
            }
            match sftp.rename(file.path.clone(), target.clone()).await {
                Ok(()) => return Ok(target),
                Err(e) => match proto("archive", &file.path, e) {
                    // Gone: it was archived by an earlier try whose reply was lost.
                    SftpError::NotFound { .. } => return Ok(target),
                    e @ SftpError::Remote { .. } => last = Some(e),
                    other => return Err(other),
                },
            }
        }
        Err(last.unwrap_or(SftpError::Remote {
            op: "archive",
            path: file.path.clone(),
            reason: "no free name in the remote archive".into(),
        }))
    }

    /// Uploads `body` into the remote folder `dir` as `name` so that the hub
    /// never sees half a file: it is written under a hidden `.part` name,
    /// flushed (every write confirmed, then `fsync@openssh.com` when the
    /// server offers it), its size checked, and only then renamed.
    ///
    /// A rename onto an existing file fails on OpenSSH, so nothing the hub
    /// has not collected yet is overwritten: an existing `name` holding the
    /// same bytes is this upload (an earlier try whose reply was lost), one
    /// holding other bytes sends this one to the next free `<stem>.N.<ext>`.
    /// Returns the remote path.
    pub async fn push(&self, dir: &str, name: &str, body: &[u8]) -> Result<String, SftpError> {
        let sftp = self.sftp()?;
        if !sftp
            .try_exists(dir.to_string())
            .await
            .map_err(|e| proto("stat", dir, e))?
        {
            if let Err(e) = sftp.create_dir(dir.to_string()).await {
                if !sftp.try_exists(dir.to_string()).await.unwrap_or(false) {
                    return Err(proto("mkdir", dir, e));
                }
            }
        }
        let part = join(dir, &format!(".{name}.{}.part", std::process::id()));
        let mut f = sftp
            .create(part.clone())
            .await
            .map_err(|e| proto("create", &part, e))?;
        let written = async {
            f.write_all(body).await?;
            f.flush().await?;
            f.shutdown().await
        }
        .await;
        if let Err(e) = written {
            let _ = sftp.remove_file(part.clone()).await;
            return Err(proto_io("write", &part, e));
        }
        let size = sftp
            .metadata(part.clone())
            .await
            .map_err(|e| proto("stat", &part, e))?
            .size;
        if size != Some(body.len() as u64) {
            let _ = sftp.remove_file(part.clone()).await;
            return Err(SftpError::Remote {
                op: "upload",
                path: part,
                reason: format!("the server holds {size:?} of {} bytes", body.len()),
            });
        }
        for n in 0..100u32 {
            let target = join(dir, &numbered(name, n));
            match sftp.rename(part.clone(), target.clone()).await {
                Ok(()) => return Ok(target),
                Err(e) => {
                    let exists = sftp
                        .try_exists(target.clone())
                        .await
                        .map_err(|e| proto("stat", &target, e))?;
                    if !exists {
                        let _ = sftp.remove_file(part.clone()).await;
                        return Err(proto("rename", &part, e));
                    }
                    if sftp.read(target.clone()).await.ok().as_deref() == Some(body) {
                        let _ = sftp.remove_file(part.clone()).await;
                        return Ok(target);
                    }
                }
            }
        }
        let _ = sftp.remove_file(part.clone()).await;
        Err(SftpError::Remote {
            op: "upload",
            path: join(dir, name),
            reason: "no free name in the remote folder".into(),
        })
    }

    /// Removes a staged file once the pipeline is done with it.
    pub fn discard(&self, staged: &Path) {
        let _ = std::fs::remove_file(staged);
    }

    /// Moves a failed staged file into the local error folder with a
    /// `.error.json` sidecar; the remote file is left where it is.
    pub fn quarantine(
        &self,
        staged: &ReadyFile,
        remote: &RemoteFile,
        reason: &str,
    ) -> Result<PathBuf, SftpError> {
        let dir = &self.src.error;
        std::fs::create_dir_all(dir).map_err(|e| SftpError::local("create", dir, e))?;
        let mut dest = dir.join(&staged.name);
        let mut n = 1;
        while dest.exists() {
            dest = dir.join(format!("{}.{n}", staged.name));
            n += 1;
        }
        std::fs::rename(&staged.path, &dest).map_err(|e| SftpError::local("move", &staged.path, e))?;
        let remote_path = Some(remote.path.as_str());
        let (sidecar, written) =
            super::write_error_sidecar(&dest, &staged.name, remote_path, &staged.sha256, reason);
        written.map_err(|e| SftpError::local("write", &sidecar, e))?;
        Ok(dest)
    }
}

/// Joins remote path parts with `/` (SFTP paths are POSIX on the wire).
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `name` for `n == 0`, else `<stem>.N.<ext>` (`a.x12.999` → `a.x12.1.999`),
/// so a hub's `*.999` pattern still matches.
fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
        _ => format!("{name}.{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_keep_their_extension() {
        assert_eq!(numbered("a.x12.999", 0), "a.x12.999");
        assert_eq!(numbered("a.x12.999", 2), "a.x12.2.999");
        assert_eq!(numbered("noext", 1), "noext.1");
    }

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBbiP8q7F2jsXobWIJSGr4LSK3VvHNu1Ykw9ZlznOWFj";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).expect("test key parses")
    }

    #[test]
    fn known_hosts_match_mismatch_unknown() {
        let text =
            format!("# comment\n[sftp.example]:2222 ssh-ed25519 {KEY}\nother.example ssh-ed25519 {OTHER}\n");
        assert_eq!(
            check_known_hosts(&text, "sftp.example", 2222, &key(KEY)),
            KnownHosts::Match
        );
        assert!(matches!(
            check_known_hosts(&text, "sftp.example", 2222, &key(OTHER)),
            KnownHosts::Mismatch(_)
        ));
        assert_eq!(
            check_known_hosts(&text, "sftp.example", 22, &key(KEY)),
            KnownHosts::Unknown,
            "the port is part of the name"
        );
        let revoked = format!("@revoked * ssh-ed25519 {KEY}\nsftp.example ssh-ed25519 {KEY}\n");
        assert!(matches!(
            check_known_hosts(&revoked, "sftp.example", 22, &key(KEY)),
            KnownHosts::Mismatch(_)
        ));
        let wild = format!("*.example,!bad.example ssh-ed25519 {KEY}\n");
        assert_eq!(
            check_known_hosts(&wild, "sftp.example", 22, &key(KEY)),
            KnownHosts::Match
        );
        assert_eq!(
            check_known_hosts(&wild, "bad.example", 22, &key(KEY)),
            KnownHosts::Unknown
        );
    }

    #[test]
    fn hashed_known_hosts_entries_match() {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).expect("any key length");
        mac.update(b"[127.0.0.1]:2022");
        let field = format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        assert!(host_matches(&field, "[127.0.0.1]:2022"));
        assert!(!host_matches(&field, "127.0.0.1"));
    }

    #[test]
    fn fingerprints_are_checked_for_shape() {
        use crate::source::ssh_keys::is_fingerprint;
        let fp = fingerprint(&key(KEY));
        assert!(is_fingerprint(&fp), "{fp}");
        assert!(!is_fingerprint("MD5:aa:bb"));
        assert!(!is_fingerprint("SHA256:short"));
    }

    #[test]
    fn temporary_names_are_skipped() {
        assert!(is_temporary("a.csv.part"));
        assert!(is_temporary(".hidden.csv"));
        assert!(!is_temporary("status_20261122.csv"));
    }
}
