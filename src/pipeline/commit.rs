//! The committer half of one file: per chunk, the **diff → stage outbox →
//! commit** steps, in ONE transaction — the only place a file's output
//! becomes durable.
//!
//! 1. [`fence`]: lock the program (a shared store serializes its chunk
//!    commits) and confirm the in-memory index's "unchanged" verdicts if
//!    another instance wrote the program's state since it was loaded;
//! 2. [`resolve`] (diff): candidates against the stored state, keeping only
//!    deltas, and the chunk's reconciliation counts;
//! 3. [`Pipeline::stage`] (outbox): per-case sequence numbers, each delta's
//!    webhook body rendered once, and the state rows that go with them;
//! 4. [`Pipeline::commit`]: state, journey timers, outbox and delivery rows,
//!    rejects and the checkpoint, then COMMIT, then wake the workers.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::produce::{Chunk, Finish};
use super::{Pipeline, PipelineError, WARNING_SEPARATOR};
use crate::diff::{self, Delta, StateRow};
use crate::map::Fingerprint;
use crate::model::{Counts, Provenance};
use crate::outbox::sequence::CaseSequences;
use crate::outbox::{self, OutboxWrite};
use crate::setup::Connector;
use crate::store::{FileStatus, Generation, Progress, Tx};

/// A chunk's rows, rendered and ready to write.
struct Staged {
    outbox: Vec<OutboxWrite>,
    /// One row per state key: the last write in file order wins.
    state: Vec<StateRow>,
}

impl Pipeline {
    /// Commits one chunk of `connector`'s file `file_id` (see the module docs
    /// for the steps). `generations` is the index's view of each program's
    /// state generation, moved on when this commit keeps it in sync.
    pub(super) async fn commit(
        &self,
        connector: &Connector,
        file_id: i64,
        provenance: &Provenance,
        chunk: Chunk,
        generations: &mut HashMap<String, i64>,
    ) -> Result<(), PipelineError> {
        let program = connector.program.as_str();
        let mut tx = self.store.begin().await?;
        let in_sync = fence(&mut tx, program, &chunk.skipped, generations).await?;
        let (deltas, counts) = resolve(&mut tx, chunk.candidates, chunk.counts).await?;
        let mut staged = self.stage(&mut tx, connector, provenance, &deltas).await?;

        // Write: everything below lands in the same commit.
        let mut bumped = None;
        if !staged.state.is_empty() {
            tx.upsert_state(&staged.state, file_id).await?;
            bumped = Some(tx.bump_program(program).await?);
        }
        // Journey timers arm and settle with the state that moves them; a
        // late awaited milestone's `journey.resumed` joins this chunk's outbox.
        let journey_rows =
            crate::timers::chunk::on_chunk(&mut tx, &self.config, connector, &deltas, self.seed).await?;
        if self.seed {
            staged.outbox.clear();
        }
        staged.outbox.extend(journey_rows);
        tx.insert_outbox(&staged.outbox, file_id).await?;
        if !chunk.rejects.is_empty() {
            tx.insert_rejects(file_id, &chunk.rejects).await?;
        }
        let warnings = match &chunk.finish {
            Some(Finish::Done(w)) if !w.is_empty() => Some(w.join(WARNING_SEPARATOR)),
            _ => None,
        };
        let finish = match &chunk.finish {
            None => None,
            Some(Finish::Done(_)) => Some((FileStatus::Done, warnings.as_deref())),
            Some(Finish::Failed(r)) => Some((FileStatus::Failed, Some(r.as_str()))),
        };
        tx.file_progress(&Progress {
            file_id,
            records_done: chunk.records_done,
            counts: &counts,
            finish,
        })
        .await?;
        tx.commit().await?;

        // In sync and we wrote: the index has our writes, so it stays in sync.
        // Out of sync: leave the old number, so every later chunk re-checks.
        if let (true, Some(Generation::Shared(g))) = (in_sync, bumped) {
            generations.insert(program.to_string(), g);
        }
        if !staged.outbox.is_empty() {
            for w in &self.wakers {
                w.notify_one();
            }
        }
        if !deltas.is_empty() && self.config.journeys.program(program).is_some() {
            // A timer armed here may be due before the clock's next wake-up.
            self.timers.notify_one();
        }
        Ok(())
    }

    /// The stage-outbox step: sequence numbers per case (taken in the store,
    /// in file order), each delta's webhook body rendered once from one
    /// serialization of its content, and the state rows that keep it.
    async fn stage(
        &self,
        tx: &mut Tx,
        connector: &Connector,
        provenance: &Provenance,
        deltas: &[Delta],
    ) -> Result<Staged, PipelineError> {
        let mut seqs = CaseSequences::default();
        for d in deltas {
            let c = &d.candidate.content;
            seqs.count(&c.program, &c.case_id);
        }
        // Seeding sends nothing, so it consumes no sequence numbers: the first
        // delta a receiver ever sees for a case is its sequence 1.
        let last = if seqs.counts().is_empty() || self.seed {
            Vec::new()
        } else {
            tx.bump_cases(seqs.counts()).await?
        };
        seqs.start(&last);

        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut staged = Staged {
            outbox: Vec::with_capacity(deltas.len()),
            state: Vec::with_capacity(deltas.len()),
        };
        let mut state_at: HashMap<u64, usize> = HashMap::with_capacity(deltas.len());
        for d in deltas {
            let c = &d.candidate.content;
            let seq = seqs.take(&c.program, &c.case_id);
            let source = Provenance {
                locator: d.candidate.locator.clone(),
                ..provenance.clone()
            };
            // One serialization of the content serves both writes: the
            // state row keeps it (for field-level diffs), the outbox body
            // embeds it.
            let content_json = serde_json::to_string(c)?;
            let body = outbox::render_from_content_json(&content_json, d, &source, seq, &timestamp);
            let subscribers = self
                .config
                .subscribers
                .iter()
                .filter(|s| s.wants(&connector.name, &c.program, c.milestone.as_str()))
                .map(|s| s.name.clone())
                .collect();
            let Fingerprint { key, content, lane } = d.candidate.fp;
            staged.outbox.push(OutboxWrite {
                id: outbox::new_webhook_id(),
                connector: connector.name.clone(),
                program: c.program.clone(),
                case_id: c.case_id.clone(),
                milestone: c.milestone.as_str().to_string(),
                seq,
                lane,
                body,
                key_hash: key,
                subscribers,
            });
            let row = StateRow {
                program: c.program.clone(),
                case_id: c.case_id.clone(),
                milestone: c.milestone.as_str().to_string(),
                occurrence: c.occurrence.clone(),
                key_hash: key,
                content_hash: content,
                body: content_json,
            };
            // One upsert per key per statement: the last write in file order wins.
            let rows = &mut staged.state;
            match state_at.get(&key).copied().filter(|i| {
                rows[*i].case_id == row.case_id
                    && rows[*i].milestone == row.milestone
                    && rows[*i].occurrence == row.occurrence
                    && rows[*i].program == row.program
            }) {
                Some(i) => rows[i] = row,
                None => {
                    state_at.insert(key, rows.len());
                    rows.push(row);
                }
            }
        }
        Ok(staged)
    }
}

/// The fence step. The program lock is the transaction's first statement:
/// on a shared store it serializes chunk commits of the program, so the
/// state read next is settled. If another instance wrote the program's state
/// since the index was loaded, the index's "unchanged" verdicts (`skipped`)
/// must be confirmed, and one that no longer holds refuses the chunk.
/// Returns whether the index is in sync with the store.
async fn fence(
    tx: &mut Tx,
    program: &str,
    skipped: &[(u64, u64)],
    generations: &HashMap<String, i64>,
) -> Result<bool, PipelineError> {
    let in_sync = match tx.lock_program(program).await? {
        Generation::SingleWriter => true,
        Generation::Shared(g) => generations.get(program).copied().unwrap_or(0) == g,
    };
    if !in_sync && !skipped.is_empty() {
        let mut keys: Vec<u64> = skipped.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        let stored: HashSet<(u64, u64)> = tx.state_hashes(&keys).await?.into_iter().collect();
        if skipped.iter().any(|fp| !stored.contains(fp)) {
            // Rolled back on drop; those records' content was never kept.
            return Err(PipelineError::StaleIndex {
                program: program.to_string(),
            });
        }
    }
    Ok(in_sync)
}

/// The diff step: candidates against their stored state, keeping only
/// deltas. Reconciles per record: a record is "emitted" when any of its
/// milestones was a delta, "unchanged" when it produced milestones and none
/// changed.
async fn resolve(
    tx: &mut Tx,
    candidates: Vec<diff::Candidate>,
    mut counts: Counts,
) -> Result<(Vec<Delta>, Counts), PipelineError> {
    let mut hashes: Vec<u64> = candidates.iter().map(|c| c.fp.key).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let stored = if hashes.is_empty() {
        Vec::new()
    } else {
        tx.state_rows(&hashes).await?
    };
    let candidate_records: BTreeSet<u64> = candidates.iter().map(|c| c.record).collect();
    let (deltas, _) = diff::resolve(candidates, &stored)?;
    let emitted_records: BTreeSet<u64> = deltas.iter().map(|d| d.candidate.record).collect();
    counts.emitted = emitted_records.len() as u64;
    counts.unchanged += (candidate_records.len() - emitted_records.len()) as u64;
    counts.deltas = deltas.len() as u64;
    Ok((deltas, counts))
}
