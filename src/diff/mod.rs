//! Delta detection: which milestones are new or changed since the stored state.
//!
//! Two steps, so the common case costs no query:
//!
//! 1. [`StateIndex::check`], per milestone, in memory: a fingerprint whose key
//!    and content hash match the index is unchanged and goes no further.
//! 2. [`resolve`], per chunk, inside the commit transaction: every remaining
//!    candidate is compared with the stored row (fetched in one batch), which
//!    decides created / updated / unchanged and names the changed fields.
//!
//! The index is only a filter. It may be incomplete (too many keys to hold, or
//! not loaded yet); then a miss is a candidate and step 2 decides.
//!
//! Diff owns the shape of the stored state ([`StateRow`]): what step 2
//! compares against, and what a commit writes back. The store reads and
//! persists it as is, so no conversion stands between a fetched row and the
//! comparison.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::map::Fingerprint;
use crate::model::{ChangeKind, Content};

/// The keys are already xxh3 hashes: hashing them again is wasted work.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdentityMap = HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>;

/// Key hash → content hash for stored milestones.
#[derive(Default)]
pub struct StateIndex {
    map: IdentityMap,
    /// Every stored key is in `map`, so a miss means "new".
    complete: bool,
    cap: usize,
}

/// What the index says about one fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Candidate,
}

impl StateIndex {
    /// An index built from all stored entries (`complete`), or an empty,
    /// incomplete one when the store had more than the cap.
    pub fn new(entries: Option<Vec<(u64, u64)>>, cap: usize) -> StateIndex {
        match entries {
            Some(e) => {
                let mut map = IdentityMap::with_capacity_and_hasher(e.len(), Default::default());
                map.extend(e);
                StateIndex {
                    map,
                    complete: true,
                    cap,
                }
            }
            None => StateIndex {
                map: IdentityMap::default(),
                complete: false,
                cap,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn check(&self, fp: &Fingerprint) -> Verdict {
        match self.map.get(&fp.key) {
            Some(c) if *c == fp.content => Verdict::Unchanged,
            _ => Verdict::Candidate,
        }
    }

    /// Records the content a key now has. Past the cap the index stops
    /// growing and becomes incomplete: memory stays bounded whatever the feed.
    pub fn record(&mut self, fp: &Fingerprint) {
        if self.map.len() >= self.cap && !self.map.contains_key(&fp.key) {
            self.complete = false;
            return;
        }
        self.map.insert(fp.key, fp.content);
    }
}

/// One milestone as stored: its key, its hashes and its content as JSON.
/// Read back for step 2 (the prior state) and written by the commit (the
/// new state), one row per `(program, case_id, milestone, occurrence)`.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub occurrence: String,
    pub key_hash: u64,
    pub content_hash: u64,
    /// The [`Content`] as JSON, for field-level diffs.
    pub body: String,
}

/// A milestone that differs from the index (or that the index cannot vouch for).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Ordinal of the record in its file, to reconcile per record.
    pub record: u64,
    pub locator: String,
    pub fp: Fingerprint,
    pub content: Content,
}

/// A confirmed change.
#[derive(Debug, Clone)]
pub struct Delta {
    pub candidate: Candidate,
    pub kind: ChangeKind,
    /// Changed field names; empty when created.
    pub fields: Vec<String>,
}

fn same_key(row: &StateRow, c: &Content) -> bool {
    row.program == c.program
        && row.case_id == c.case_id
        && row.milestone == c.milestone.as_str()
        && row.occurrence == c.occurrence
}

/// Decides, against the stored rows, which candidates are real deltas. Later
/// candidates for the same key compare against earlier ones in the chunk.
pub fn resolve(
    candidates: Vec<Candidate>,
    stored: &[StateRow],
) -> Result<(Vec<Delta>, u64), serde_json::Error> {
    let mut by_hash: HashMap<u64, Vec<&StateRow>> = HashMap::with_capacity(stored.len());
    for r in stored {
        by_hash.entry(r.key_hash).or_default().push(r);
    }
    // Latest content per key seen in this chunk: (content hash, index in deltas).
    let mut latest: HashMap<u64, Vec<(u64, usize)>> = HashMap::new();
    let mut deltas: Vec<Delta> = Vec::new();
    let mut unchanged = 0;
    for cand in candidates {
        let in_chunk = latest.get(&cand.fp.key).and_then(|v| {
            v.iter()
                .rev()
                .find(|(_, i)| deltas[*i].candidate.content.same_key(&cand.content))
                .copied()
        });
        let (old_hash, old_content) = match in_chunk {
            Some((h, i)) => (Some(h), Some(deltas[i].candidate.content.clone())),
            None => match by_hash
                .get(&cand.fp.key)
                .and_then(|rows| rows.iter().find(|r| same_key(r, &cand.content)))
            {
                Some(row) => (
                    Some(row.content_hash),
                    Some(serde_json::from_str::<Content>(&row.body)?),
                ),
                None => (None, None),
            },
        };
        if old_hash == Some(cand.fp.content) {
            unchanged += 1;
            continue;
        }
        let (kind, fields) = match &old_content {
            Some(old) => (ChangeKind::Updated, cand.content.changed_fields(old)),
            None => (ChangeKind::Created, Vec::new()),
        };
        latest
            .entry(cand.fp.key)
            .or_default()
            .push((cand.fp.content, deltas.len()));
        deltas.push(Delta {
            candidate: cand,
            kind,
            fields,
        });
    }
    Ok((deltas, unchanged))
}

impl Content {
    pub fn same_key(&self, o: &Content) -> bool {
        self.program == o.program
            && self.case_id == o.case_id
            && self.milestone == o.milestone
            && self.occurrence == o.occurrence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MilestoneCode;

    fn content(case: &str, date: &str) -> Content {
        Content {
            program: "P".into(),
            case_id: case.into(),
            milestone: MilestoneCode::PaApproved,
            occurrence: String::new(),
            occurred_at: date.into(),
            occurred_precision: "date".into(),
            time_zone: "UTC".into(),
            patient_ref: None,
            status: None,
            sub_status: None,
            reasons: vec![],
            attributes: Default::default(),
        }
    }

    fn cand(case: &str, date: &str, key: u64, hash: u64) -> Candidate {
        Candidate {
            record: 0,
            locator: "line 2".into(),
            fp: Fingerprint {
                key,
                lane: key,
                content: hash,
            },
            content: content(case, date),
        }
    }

    fn row(c: &Content, key: u64, hash: u64) -> StateRow {
        StateRow {
            program: c.program.clone(),
            case_id: c.case_id.clone(),
            milestone: c.milestone.as_str().into(),
            occurrence: c.occurrence.clone(),
            key_hash: key,
            content_hash: hash,
            body: serde_json::to_string(c).expect("content serializes"),
        }
    }

    #[test]
    fn created_updated_unchanged() {
        let stored = vec![
            row(&content("A", "2026-11-01"), 1, 10),
            row(&content("B", "2026-11-01"), 2, 20),
        ];
        let (deltas, unchanged) = resolve(
            vec![
                cand("A", "2026-11-02", 1, 11),
                cand("B", "2026-11-01", 2, 20),
                cand("C", "2026-11-01", 3, 30),
            ],
            &stored,
        )
        .expect("bodies parse");
        assert_eq!(unchanged, 1);
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0].kind, ChangeKind::Updated);
        assert_eq!(deltas[0].fields, vec!["occurred_at".to_string()]);
        assert_eq!(deltas[1].kind, ChangeKind::Created);
    }

    #[test]
    fn duplicate_key_in_one_chunk_compares_with_the_earlier_one() {
        let (deltas, unchanged) = resolve(
            vec![
                cand("A", "2026-11-02", 1, 11),
                cand("A", "2026-11-02", 1, 11),
                cand("A", "2026-11-03", 1, 12),
            ],
            &[],
        )
        .expect("no bodies");
        assert_eq!(unchanged, 1);
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[1].kind, ChangeKind::Updated);
    }

    #[test]
    fn hash_collision_with_a_different_key_is_not_a_match() {
        let stored = vec![row(&content("Z", "2026-11-01"), 1, 11)];
        let (deltas, _) = resolve(vec![cand("A", "2026-11-02", 1, 11)], &stored).expect("bodies parse");
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].kind, ChangeKind::Created);
    }

    #[test]
    fn index_is_bounded() {
        let mut idx = StateIndex::new(Some(vec![]), 2);
        for k in 0..5 {
            idx.record(&Fingerprint {
                key: k,
                lane: k,
                content: k,
            });
        }
        assert_eq!(idx.len(), 2);
        assert!(!idx.is_complete());
        assert_eq!(
            idx.check(&Fingerprint {
                key: 0,
                lane: 0,
                content: 0
            }),
            Verdict::Unchanged
        );
        assert_eq!(
            idx.check(&Fingerprint {
                key: 4,
                lane: 4,
                content: 4
            }),
            Verdict::Candidate
        );
    }
}
