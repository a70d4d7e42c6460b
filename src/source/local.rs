//! Local drop folders: `notify` events as hints, a periodic rescan as the
//! truth, and a settle window (or a done-marker) before a file is complete.
//!
//! Why both: a Create event can arrive before any byte is written, a file moved
//! in from elsewhere shows up as a rename, and network filesystems may send no
//! events at all. Events only make the next scan come sooner.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{ReadyFile, SourceError};

/// A local drop folder, validated at load by setup.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Observation {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
}

/// One drop folder and what has been seen in it.
pub struct DropFolder {
    src: LocalSource,
    seen: HashMap<PathBuf, Observation>,
    strays: Option<Strays>,
    /// Entries already reported as skipped (one log line each, not one per scan).
    skipped: std::collections::HashSet<PathBuf>,
}

/// Files in a drop folder that no connector watching it picks up: a hub's
/// file under a name its pattern does not match would otherwise sit there
/// unnoticed. Each one is reported once while it stays.
struct Strays {
    /// Every connector watching this folder (this one included).
    watchers: Vec<LocalSource>,
    reported: HashSet<String>,
}

/// Why an entry of a drop folder is never read, if it is not: hubsync opens
/// regular files only, never follows a symbolic link (it could point
/// anywhere: `/etc/shadow`, another hub's folder), never opens a FIFO (a read
/// would block) or a device, and refuses names that are not plain: `..`,
/// control characters (log and terminal injection) or invalid UTF-8.
fn refusal(name: &std::ffi::OsStr, kind: fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let Some(name) = name.to_str() else {
        return Some("its name is not valid UTF-8");
    };
    if name.contains("..") {
        return Some("its name contains `..`");
    }
    if name.chars().any(char::is_control) {
        return Some("its name contains control characters");
    }
    if kind.is_symlink() {
        return Some("it is a symbolic link (links are never followed)");
    }
    if kind.is_dir() {
        return Some("it is a directory");
    }
    if kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
        return Some("it is not a regular file (FIFO, socket or device)");
    }
    None
}

/// Names that are never partner files: hidden files and partial uploads.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with('~')
        || [".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp"]
            .iter()
            .any(|s| name.to_ascii_lowercase().ends_with(s))
}

/// Whether `name` is `src`'s done-marker for some file.
fn is_marker_of(src: &LocalSource, name: &str) -> bool {
    let Some(template) = &src.done_marker else {
        return false;
    };
    let (prefix, suffix) = template
        .split_once("{name}")
        .expect("validated at load: done_marker contains {name}");
    name.len() > prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
}

/// Whether a file named `name`, in a folder these connectors watch, is one
/// that none of them will ever process (not a temporary name, not a marker).
fn is_stray(name: &str, watchers: &[LocalSource]) -> bool {
    !is_temporary(name)
        && !watchers
            .iter()
            .any(|w| w.pattern.is_match(name) || is_marker_of(w, name))
}

/// The local drop folders of `sources` (every connector's source), each with
/// every local source watching it, in the order the folders first appear.
pub fn folders<'a>(sources: impl IntoIterator<Item = &'a super::Source>) -> Vec<(PathBuf, Vec<LocalSource>)> {
    let mut out: Vec<(PathBuf, Vec<LocalSource>)> = Vec::new();
    for source in sources {
        if let super::Source::Local(src) = source {
            match out.iter_mut().find(|(p, _)| *p == src.path) {
                Some((_, w)) => w.push(src.clone()),
                None => out.push((src.path.clone(), vec![src.clone()])),
            }
        }
    }
    out
}

/// The files in `dir` that none of `watchers` (the connectors watching it)
/// will ever process, in name order: for `hubsync status`.
pub fn strays(dir: &Path, watchers: &[LocalSource]) -> Result<Vec<String>, SourceError> {
    let entries = fs::read_dir(dir).map_err(|e| SourceError::io("list", dir, e))?;
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| is_stray(name, watchers))
        .collect();
    out.sort();
    Ok(out)
}

impl DropFolder {
    pub fn new(src: LocalSource) -> DropFolder {
        DropFolder {
            src,
            seen: HashMap::new(),
            strays: None,
            skipped: std::collections::HashSet::new(),
        }
    }

    /// Makes this folder's scans report (once each, as a warning) the files
    /// that none of `watchers`, the connectors watching the same folder,
    /// matches. One connector per folder should report, or each would.
    pub fn report_strays(&mut self, watchers: Vec<LocalSource>) {
        self.strays = Some(Strays {
            watchers,
            reported: HashSet::new(),
        });
    }

    /// Creates the drop, archive and error folders.
    pub fn prepare(&self) -> Result<(), SourceError> {
        for dir in [&self.src.path, &self.src.archive, &self.src.error] {
            fs::create_dir_all(dir).map_err(|e| SourceError::io("create", dir, e))?;
        }
        Ok(())
    }

    fn marker_for(&self, name: &str) -> Option<PathBuf> {
        self.src
            .done_marker
            .as_ref()
            .map(|m| self.src.path.join(m.replace("{name}", name)))
    }

    /// Lists the folder and returns the files that are complete, in name order,
    /// plus how long until the next candidate could become complete.
    pub fn scan(&mut self) -> Result<(Vec<PathBuf>, Option<Duration>), SourceError> {
        let now = Instant::now();
        let entries = fs::read_dir(&self.src.path).map_err(|e| SourceError::io("list", &self.src.path, e))?;
        let mut present = Vec::new();
        let mut ready = Vec::new();
        let mut next: Option<Duration> = None;
        let mut strays_present = HashSet::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(strays) = &mut self.strays {
                if is_stray(&name, &strays.watchers) && entry.metadata().is_ok_and(|m| m.is_file()) {
                    if !strays.reported.contains(&name) {
                        let patterns: Vec<&str> =
                            strays.watchers.iter().map(|w| w.pattern.glob().glob()).collect();
                        crate::telemetry::FileUnmatched {
                            folder: &self.src.path,
                            file: &name,
                            patterns: &patterns,
                        }
                        .emit();
                        strays.reported.insert(name.clone());
                    }
                    strays_present.insert(name);
                    continue;
                }
            }
            if is_temporary(&name) || is_marker_of(&self.src, &name) || !self.src.pattern.is_match(&name) {
                continue;
            }
            // file_type() and metadata() of a DirEntry do not follow links.
            let Ok(kind) = entry.file_type() else { continue };
            if let Some(why) = refusal(&entry.file_name(), kind) {
                let path = entry.path();
                if self.skipped.insert(path.clone()) {
                    tracing::warn!(folder = %self.src.path.display(), entry = %name.escape_debug(), "drop folder entry skipped: {why}");
                }
                present.push(path);
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            present.push(path.clone());
            if let Some(marker) = self.marker_for(&name) {
                if marker.is_file() {
                    ready.push(path);
                }
                continue;
            }
            let obs = Observation {
                size: meta.len(),
                mtime: meta.modified().ok(),
                since: now,
            };
            let since = match self.seen.get(&path) {
                Some(prev) if prev.size == obs.size && prev.mtime == obs.mtime => prev.since,
                _ => {
                    self.seen.insert(path.clone(), obs);
                    now
                }
            };
            let stable_for = now.duration_since(since);
            if stable_for >= self.src.settle {
                ready.push(path);
            } else {
                let wait = self.src.settle - stable_for;
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        self.seen.retain(|p, _| present.contains(p));
        if let Some(strays) = &mut self.strays {
            // Gone (moved away or renamed): reported again if it comes back.
            strays.reported.retain(|n| strays_present.contains(n));
        }
        self.skipped.retain(|p| present.contains(p));
        ready.sort();
        Ok((ready, next))
    }

    /// Hashes a complete file, streaming.
    pub fn ready_file(&self, path: &Path) -> Result<ReadyFile, SourceError> {
        // Swapped for a link or a FIFO since the scan? Not read.
        let meta = fs::symlink_metadata(path).map_err(|e| SourceError::io("stat", path, e))?;
        if !meta.file_type().is_file() {
            return Err(SourceError::io(
                "open",
                path,
                std::io::Error::other("no longer a regular file (links are never followed)"),
            ));
        }
        let (sha256, size) = hash_file(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let marker = self.marker_for(&name).filter(|m| m.is_file());
        Ok(ReadyFile {
            path: path.to_path_buf(),
            name,
            size,
            sha256,
            marker,
        })
    }

    /// Moves a processed file (and its marker) into the archive; returns its new path.
    pub fn archive(&mut self, file: &ReadyFile) -> Result<PathBuf, SourceError> {
        self.seen.remove(&file.path);
        let dir = self
            .src
            .archive
            .join(chrono::Utc::now().format("%Y-%m-%d").to_string());
        let dest = move_into(&file.path, &dir, &file.name)?;
        if let Some(m) = &file.marker {
            let _ = fs::remove_file(m);
        }
        Ok(dest)
    }

    /// Moves a failed file into the error folder with a `.error.json` sidecar.
    pub fn quarantine(&mut self, file: &ReadyFile, reason: &str) -> Result<PathBuf, SourceError> {
        self.seen.remove(&file.path);
        let dest = move_into(&file.path, &self.src.error, &file.name)?;
        let (sidecar, written) = super::write_error_sidecar(&dest, &file.name, None, &file.sha256, reason);
        written.map_err(|e| SourceError::io("write", &sidecar, e))?;
        if let Some(m) = &file.marker {
            let _ = fs::remove_file(m);
        }
        Ok(dest)
    }

    pub fn path(&self) -> &Path {
        &self.src.path
    }
}

/// Moves `from` into `dir` under `name`, never overwriting: a second file of
/// the same name gets `.1`, `.2`, … appended.
fn move_into(from: &Path, dir: &Path, name: &str) -> Result<PathBuf, SourceError> {
    fs::create_dir_all(dir).map_err(|e| SourceError::io("create", dir, e))?;
    let mut dest = dir.join(name);
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    if fs::rename(from, &dest).is_err() {
        // Across filesystems rename fails: copy, sync, then remove.
        fs::copy(from, &dest).map_err(|e| SourceError::io("copy", from, e))?;
        fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| SourceError::io("sync", &dest, e))?;
        fs::remove_file(from).map_err(|e| SourceError::io("remove", from, e))?;
    }
    Ok(dest)
}

/// sha256 and size of a file, read in 256 KiB blocks.
pub fn hash_file(path: &Path) -> Result<(String, u64), SourceError> {
    let mut f = fs::File::open(path).map_err(|e| SourceError::io("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| SourceError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Watches `dir`; each filesystem event becomes a wake-up on the returned
/// channel. Keep the watcher alive as long as events are wanted.
pub fn watch(dir: &Path) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), SourceError> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // A full channel already holds a wake-up; dropping this one is fine.
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| SourceError::Watch {
        path: dir.display().to_string(),
        source: e,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| SourceError::Watch {
            path: dir.display().to_string(),
            source: e,
        })?;
    Ok((watcher, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(dir: &Path, settle: Duration, marker: Option<&str>) -> LocalSource {
        LocalSource {
            path: dir.join("drop"),
            pattern: globset::Glob::new("*.csv").expect("glob").compile_matcher(),
            settle,
            done_marker: marker.map(str::to_string),
            rescan: Duration::from_secs(1),
            archive: dir.join("archive"),
            error: dir.join("error"),
        }
    }

    #[test]
    fn a_growing_file_is_not_ready_until_it_settles() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut f = DropFolder::new(src(tmp.path(), Duration::from_millis(200), None));
        f.prepare().expect("prepare");
        let p = tmp.path().join("drop/a.csv");
        fs::write(&p, "x").expect("write");
        fs::write(tmp.path().join("drop/b.csv.part"), "x").expect("write");
        let (ready, next) = f.scan().expect("scan");
        assert!(ready.is_empty());
        assert!(next.is_some());
        std::thread::sleep(Duration::from_millis(120));
        fs::write(&p, "xy").expect("grow");
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            f.scan().expect("scan").0.is_empty(),
            "grew within the window: not ready"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(f.scan().expect("scan").0, vec![p]);
    }

    #[test]
    fn strays_are_the_files_no_watcher_of_the_folder_takes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let csv = src(tmp.path(), Duration::from_secs(1), Some("{name}.done"));
        let xml = LocalSource {
            pattern: globset::Glob::new("*.xml").expect("glob").compile_matcher(),
            ..csv.clone()
        };
        let f = DropFolder::new(csv.clone());
        f.prepare().expect("prepare");
        for name in [
            "a.csv",
            "a.csv.done",
            "b.xml",
            "notes.txt",
            "c.csv.part",
            ".hidden",
        ] {
            fs::write(tmp.path().join("drop").join(name), "x").expect("write");
        }
        fs::create_dir(tmp.path().join("drop/sub")).expect("mkdir");
        let dir = tmp.path().join("drop");
        assert_eq!(
            strays(&dir, &[csv.clone(), xml]).expect("list"),
            vec!["notes.txt"]
        );
        assert_eq!(strays(&dir, &[csv]).expect("list"), vec!["b.xml", "notes.txt"]);
    }

    #[test]
    fn done_marker_decides_and_is_not_a_file_itself() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut f = DropFolder::new(src(tmp.path(), Duration::from_secs(3600), Some("{name}.done")));
        f.prepare().expect("prepare");
        let p = tmp.path().join("drop/a.csv");
        fs::write(&p, "x").expect("write");
        assert!(f.scan().expect("scan").0.is_empty());
        fs::write(tmp.path().join("drop/a.csv.done"), "").expect("marker");
        assert_eq!(f.scan().expect("scan").0, vec![p.clone()]);
        let rf = f.ready_file(&p).expect("hash");
        let archived = f.archive(&rf).expect("archive");
        assert!(archived.exists() && !p.exists());
        assert!(!tmp.path().join("drop/a.csv.done").exists());
    }
}
