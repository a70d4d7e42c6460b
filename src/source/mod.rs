//! Sources: where partner files come from, and when a file counts as complete.
//!
//! A source never reads a file's records; it finds files, decides that they
//! are complete (settled, or marked done), hashes them (the sha256 is the
//! file's identity in the ledger) and, once the pipeline has committed, moves
//! them to the archive or error folder.
//!
//! - [`local`]: drop folders on this machine (filesystem events plus rescans).
//! - [`sftp`]: remote drops polled over SFTP, downloaded into local staging.
//! - [`spool`]: files owed back to a partner (acknowledgments), kept until
//!   its server has them.

pub mod local;
pub mod sftp;
pub mod spool;
pub mod ssh_keys;

use std::path::PathBuf;

pub use local::LocalSource;
pub use sftp::SftpSource;

/// Where one connector's files come from.
#[derive(Debug, Clone)]
pub enum Source {
    Local(LocalSource),
    Sftp(SftpSource),
}

/// A complete file, ready for the pipeline.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// A done-marker to tidy away with the file.
    pub marker: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
}

/// Writes the `<dest>.error.json` sidecar of a quarantined file: its name,
/// where it came from on a remote server (SFTP), its sha256, when and why it
/// failed. Returns the sidecar's path with the outcome, for the caller's error.
pub fn write_error_sidecar(
    dest: &std::path::Path,
    file: &str,
    remote_path: Option<&str>,
    sha256: &str,
    reason: &str,
) -> (std::path::PathBuf, std::io::Result<()>) {
    let sidecar = std::path::PathBuf::from(format!("{}.error.json", dest.display()));
    let mut body = serde_json::Map::new();
    body.insert("file".into(), file.into());
    if let Some(r) = remote_path {
        body.insert("remote_path".into(), r.into());
    }
    body.insert("sha256".into(), sha256.into());
    body.insert("failed_at".into(), chrono::Utc::now().to_rfc3339().into());
    body.insert("reason".into(), reason.into());
    let text = format!("{:#}\n", serde_json::Value::Object(body));
    let res = write_private(&sidecar, text.as_bytes());
    (sidecar, res)
}

/// Writes a file only its owner can read (mode 0600): error sidecars and
/// rejects files, which sit beside partner files that hold PHI. Replaces any
/// file of that name.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl SourceError {
    pub fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> SourceError {
        SourceError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod sidecar_tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_error_sidecar_says_what_where_when_and_why_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("s.csv");
        let (path, res) =
            super::write_error_sidecar(&dest, "s.csv", Some("/out/s.csv"), "ab12", "bad header");
        res.expect("written");
        assert_eq!(path, dir.path().join("s.csv.error.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(v["file"], "s.csv");
        assert_eq!(v["remote_path"], "/out/s.csv");
        assert_eq!(v["sha256"], "ab12");
        assert_eq!(v["reason"], "bad header");
        assert!(
            v["failed_at"].as_str().is_some_and(|t| t.starts_with("20")),
            "{v}"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A local drop has no remote path.
        let (path, res) = super::write_error_sidecar(&dest, "s.csv", None, "ab12", "x");
        res.expect("written");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert!(v.get("remote_path").is_none(), "{v}");
    }
}
