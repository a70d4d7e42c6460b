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
