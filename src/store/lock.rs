//! One writer per SQLite store: an exclusive OS lock on `<store file>.lock`.
//!
//! A SQLite store belongs to one instance (`docs/deployment.md`): the
//! daemon's in-memory state index, its "every claim is granted" ledger and
//! its unsettled deliveries all assume nobody else writes. Two daemons on one
//! file send the same webhook-ids twice and archive each other's files, so
//! the commands that run the pipeline or deliver (`run`, `ingest`) take this
//! lock first and refuse to start when another process holds it. Read-only
//! commands and the small admin writes (`status`, `map`, `replay`, …) do not
//! take it: they are meant to run beside the daemon.
//!
//! The lock is `flock`-style (`File::try_lock`), so the OS releases it when
//! the holder exits for any reason, `kill -9` included: a restarted daemon
//! never waits for a stale lock. The file also says who holds it (pid, host,
//! command, since when) for the refusal message; the file itself is never
//! removed, because removing a lock file races with the next process locking it.
//! PostgreSQL stores take no lock: several instances are the point there.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the store could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the SQLite store {store} is in use by another hubsync: {holder} (lock file {lock}). \
         A SQLite store takes one daemon at a time: stop that process first, or use \
         PostgreSQL to run several instances (docs/deployment.md)"
    )]
    Held {
        store: String,
        lock: String,
        holder: String,
    },
    #[error("cannot lock the store with {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Held for as long as this process writes the store; dropping it (or the
/// process ending) releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock, as written into the lock file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    command: String,
    since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {}, `{}`, since {}",
            self.pid, self.host, self.command, self.since
        )
    }
}

/// The store file of a `sqlite://` url; `None` for other backends and for
/// in-memory databases (private to their process anyway).
pub fn sqlite_path(store_url: &str) -> Option<&Path> {
    let rest = store_url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| Path::new(path))
}

/// The lock file of a `sqlite://` url: the store file's name plus `.lock`.
pub fn lock_path(store_url: &str) -> Option<PathBuf> {
    sqlite_path(store_url).map(|p| {
        let mut name = p.as_os_str().to_os_string();
        name.push(".lock");
        PathBuf::from(name)
    })
}

/// Takes the writer lock of `store_url` (SQLite only; `Ok(None)` for
/// PostgreSQL), or says who has it. Never waits.
pub fn acquire(store_url: &str) -> Result<Option<WriterLock>, LockError> {
    let Some(path) = lock_path(store_url) else {
        return Ok(None);
    };
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // No truncation at open: the holder's description must survive a
    // contender opening the file.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Held {
                store: sqlite_path(store_url)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                lock: path.display().to_string(),
                holder: describe_holder(&mut file),
            })
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let me = Holder {
        pid: std::process::id(),
        host: super::host_name(),
        command: command_line(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = serde_json::to_string(&me).expect("a struct of strings and a number serializes");
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{text}"))
        .map_err(io)?;
    Ok(Some(WriterLock { _file: file, path }))
}

/// The holder's description from the lock file. A holder that is starting
/// may not have written it yet: give it a moment.
fn describe_holder(file: &mut File) -> String {
    for _ in 0..10 {
        let mut text = String::new();
        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
        if read.is_ok() {
            if let Ok(h) = serde_json::from_str::<Holder>(text.trim()) {
                return h.to_string();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    "a process that has not said who it is (it may be starting)".to_string()
}

/// This process's command line, shortened: enough to recognise it.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        // `hubsync`, not the full path of the binary.
        if let Some(name) = Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    let mut line = args.join(" ");
    if line.chars().count() > 200 {
        line = line.chars().take(200).collect::<String>() + "…";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_sits_beside_the_sqlite_file() {
        assert_eq!(
            lock_path("sqlite://data/hubsync.db"),
            Some(PathBuf::from("data/hubsync.db.lock"))
        );
        assert_eq!(
            lock_path("sqlite:///var/lib/h.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/h.db.lock"))
        );
        assert_eq!(lock_path("postgres://postgres@127.0.0.1/test"), None);
        assert_eq!(lock_path("sqlite://:memory:"), None);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let first = acquire(&url).expect("free").expect("sqlite takes a lock");
        let err = acquire(&url).expect_err("held");
        let msg = err.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(msg.contains("since "), "{msg}");
        assert!(msg.contains("h.db.lock"), "{msg}");
        drop(first);
        assert!(acquire(&url).expect("free again").is_some());
        assert!(acquire("postgres://postgres@127.0.0.1/test")
            .expect("no lock")
            .is_none());
    }
}
