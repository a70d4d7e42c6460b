//! The outcome journal (SQLite stores only): each answer is written down the
//! moment it arrives, before the batch that records it in the store commits.
//!
//! Why: SQLite has one writer, and a chunk commit of a big file holds it for
//! a few hundred milliseconds. Answers that arrive meanwhile wait for it;
//! without the journal a `kill -9` then re-sent every one of them (~1,000 at
//! a few thousand deliveries per second), and bounding them would stop
//! delivery while files are committed. With it, a crash re-sends only the
//! requests that were in flight: at start, the worker applies what the
//! journal holds to the store before it sends anything.
//!
//! What it costs: one `write` per batch of answers and one small file per
//! recorded batch, no fsync. A process crash loses nothing written (the
//! kernel has it); a power cut may lose the last answers, which are then
//! sent again with the same webhook-id (at-least-once, as ever).
//!
//! Layout: a folder per subscriber beside the store file
//! (`hubsync.db.outcomes/<subscriber>/`), holding numbered segments of JSON
//! lines. A segment is closed when the batch holding its answers starts to
//! commit and removed when that commit returns. The store's writer lock
//! (`store::lock`) guarantees that one process owns the folder. Applying a
//! segment twice changes nothing (`Store::apply_journal`), and a torn last
//! line (a crash mid-write) is skipped: that answer's message is sent again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::outbox::AttemptResult;

/// The journal folder of `subscriber` for the store at `store_url`, or
/// `None` when the store does not need one (PostgreSQL: no single writer,
/// and several instances; in-memory SQLite).
pub fn dir_for(store_url: &str, subscriber: &str) -> Option<PathBuf> {
    let mut root = crate::store::lock::sqlite_path(store_url)?
        .as_os_str()
        .to_os_string();
    root.push(".outcomes");
    // Subscriber names are free text in the config: keep safe ones readable.
    let safe = subscriber
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !subscriber.starts_with('.');
    let name = if safe {
        subscriber.to_string()
    } else {
        format!("x{}", hex::encode(subscriber))
    };
    Some(PathBuf::from(root).join(name))
}

/// One subscriber's journal.
pub struct Journal {
    dir: PathBuf,
    file: File,
    segment: u64,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.jsonl"))
}

/// The numbered segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".jsonl")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

impl Journal {
    /// Opens the journal in `dir` (creating it) and returns, with it, the
    /// answers an earlier run wrote down but may not have committed. Call
    /// [`Journal::release_all`] once they are applied to the store.
    pub fn open(dir: &Path) -> io::Result<(Journal, Vec<AttemptResult>)> {
        fs::create_dir_all(dir)?;
        let found = segments(dir)?;
        let mut left = Vec::new();
        for n in &found {
            let text = fs::read(segment_path(dir, *n))?;
            // A line cut short by a crash does not parse: skipped.
            left.extend(
                text.split(|b| *b == b'\n')
                    .filter_map(|line| serde_json::from_slice::<AttemptResult>(line).ok()),
            );
        }
        let segment = found.last().map_or(0, |n| n + 1);
        let file = Self::create(dir, segment)?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                file,
                segment,
            },
            left,
        ))
    }

    fn create(dir: &Path, n: u64) -> io::Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(segment_path(dir, n))
    }

    /// Writes answers down, in one write.
    pub fn append<'a>(&mut self, results: impl Iterator<Item = &'a AttemptResult>) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        for r in results {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&buf)
    }

    /// Closes the current segment (every answer in it is in the batch about
    /// to commit, or in one committed before) and starts the next. Returns
    /// the closed segment, for [`Journal::release`] after the commit.
    pub fn rotate(&mut self) -> io::Result<u64> {
        let closed = self.segment;
        self.file = Self::create(&self.dir, closed + 1)?;
        self.segment = closed + 1;
        Ok(closed)
    }

    /// Removes the segments up to `upto`: their answers are in the store.
    pub fn release(&mut self, upto: u64) -> io::Result<()> {
        for n in segments(&self.dir)?.into_iter().filter(|n| *n <= upto) {
            fs::remove_file(segment_path(&self.dir, n))?;
        }
        Ok(())
    }

    /// Removes every segment but the current one: everything written so far
    /// is in the store. The current one is emptied.
    pub fn release_all(&mut self) -> io::Result<()> {
        if self.segment > 0 {
            self.release(self.segment - 1)?;
        }
        self.file.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::AttemptOutcome;

    fn answer(pos: i64) -> AttemptResult {
        AttemptResult {
            subscriber: "mfr".into(),
            pos,
            attempt: 1,
            at_ms: 1_700_000_000_000,
            duration_ms: 3,
            http_status: Some(204),
            error: None,
            excerpt: None,
            outcome: AttemptOutcome::Delivered,
        }
    }

    #[test]
    fn what_was_written_and_not_released_comes_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("mfr");
        let (mut j, left) = Journal::open(&dir).expect("open");
        assert!(left.is_empty());
        j.append([answer(1), answer(2)].iter()).expect("append");
        let first = j.rotate().expect("rotate");
        j.append([answer(3)].iter()).expect("append");
        let second = j.rotate().expect("rotate");
        j.append([answer(4)].iter()).expect("append");
        // The first batch committed; the second and the answer after it did not.
        j.release(first).expect("release");
        let _ = second;
        drop(j);
        // A crash mid-write leaves a torn line: skipped.
        let last = segments(&dir).expect("list").pop().expect("a segment");
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, last))
            .expect("open segment");
        f.write_all(br#"{"subscriber":"mfr","pos":5,"att"#)
            .expect("torn write");
        drop(f);
        let (mut j, left) = Journal::open(&dir).expect("reopen");
        let positions: Vec<i64> = left.iter().map(|r| r.pos).collect();
        assert_eq!(positions, vec![3, 4]);
        j.release_all().expect("release");
        let (_, left) = Journal::open(&dir).expect("reopen");
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn one_folder_per_subscriber_beside_a_sqlite_store_only() {
        assert_eq!(
            dir_for("sqlite://data/hubsync.db", "mfr"),
            Some(PathBuf::from("data/hubsync.db.outcomes/mfr"))
        );
        assert_eq!(
            dir_for("sqlite://data/hubsync.db", "a/b"),
            Some(PathBuf::from("data/hubsync.db.outcomes/x612f62"))
        );
        assert_eq!(dir_for("postgres://postgres@127.0.0.1/test", "mfr"), None);
    }
}
