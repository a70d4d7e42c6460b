//! The spool of files owed to a partner: the acknowledgments an SFTP
//! connector pushes back to the hub's outbox folder, kept on local disk
//! until the hub's server has them.
//!
//! Why a spool and not an upload in line: a push can fail (the link drops,
//! the outbox folder is missing or read-only) after the file's milestones
//! are committed, and an acknowledgment that is owed must not be lost.
//! Each one is written here durably (temporary name, fsync, rename, fsync
//! of the folder) right after the file's commit, and leaves `pending/` for
//! `sent/` only once the server confirmed the upload; every poll retries
//! what is still pending, oldest first. `sent/` is the record of what went
//! out, and also how a re-fetched file (committed just before a crash, so
//! seen again as a duplicate) is known to be already acknowledged.
//!
//! Entries are named `<tag>-<name>`: the tag is the input file's sha256
//! prefix, the name what the hub sees (`<file>.ta1`, `<file>.999`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// One connector's spool: `<dir>/pending` and `<dir>/sent`.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A spooled file waiting to be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub path: PathBuf,
    /// The name the partner sees (the entry's name without its tag).
    pub name: String,
}

impl Spool {
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    fn pending_dir(&self) -> PathBuf {
        self.dir.join("pending")
    }

    fn sent_dir(&self) -> PathBuf {
        self.dir.join("sent")
    }

    /// Whether anything with `tag` is pending or was sent.
    pub fn has(&self, tag: &str) -> bool {
        let prefix = format!("{tag}-");
        [self.pending_dir(), self.sent_dir()].iter().any(|d| {
            std::fs::read_dir(d).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            })
        })
    }

    /// Queues `body` to be pushed as `name`; durable when this returns.
    pub fn queue(&self, tag: &str, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        let dir = self.pending_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{tag}-{name}"));
        let tmp = dir.join(format!(".{tag}-{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        // The rename is durable only once the folder is.
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(path)
    }

    /// What is still to push, oldest first (by modification time, then name).
    pub fn pending(&self) -> std::io::Result<Vec<Pending>> {
        let rd = match std::fs::read_dir(self.pending_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') {
                continue;
            }
            let Some((_, name)) = file.split_once('-') else {
                continue;
            };
            let mtime = e.metadata().and_then(|m| m.modified()).ok();
            out.push((
                mtime,
                Pending {
                    path: e.path(),
                    name: name.to_string(),
                },
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        Ok(out.into_iter().map(|(_, p)| p).collect())
    }

    /// Moves a pushed entry from `pending/` to `sent/`.
    pub fn mark_sent(&self, p: &Pending) -> std::io::Result<()> {
        let dir = self.sent_dir();
        std::fs::create_dir_all(&dir)?;
        let file = p.path.file_name().map(PathBuf::from).unwrap_or_default();
        std::fs::rename(&p.path, dir.join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_entries_are_pending_until_sent() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let spool = Spool::new(tmp.path());
        assert!(spool.pending().expect("empty spool lists").is_empty());
        assert!(!spool.has("abc"));
        spool.queue("abc", "f.x12.ta1", b"TA1").expect("queued");
        spool.queue("abc", "f.x12.999", b"999").expect("queued");
        assert!(spool.has("abc") && !spool.has("abd"));
        let p = spool.pending().expect("lists");
        assert_eq!(p.len(), 2);
        assert!(p.iter().any(|e| e.name == "f.x12.999"));
        spool.mark_sent(&p[0]).expect("moved");
        assert_eq!(spool.pending().expect("lists").len(), 1);
        assert!(spool.has("abc"), "a sent entry still counts");
        assert_eq!(
            std::fs::read(tmp.path().join("sent").join(format!("abc-{}", p[0].name))).expect("in sent/"),
            if p[0].name.ends_with("ta1") {
                b"TA1"
            } else {
                b"999"
            }
        );
    }
}
