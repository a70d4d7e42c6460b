//! Journey timers on SQLite (see `store::journey`). One writer: a claim is
//! simply the write transaction.

use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, SqliteTx, MAX_PARAMS};
use crate::journey::timer::{TimerArm, TimerRow, TimerStatus, RULE_REMOVED};
use crate::store::journey::{Presence, Settle};
use crate::store::rows::{self, all, timer_cols_of, TIMER_COLS};
use crate::store::StoreError;

/// Appends `(?, ?, …)`, one bound parameter per value.
fn push_list(q: &mut QueryBuilder<'_, Sqlite>, values: &[&str]) {
    q.push("(");
    let mut sep = q.separated(", ");
    for v in values {
        sep.push_bind(v.to_string());
    }
    q.push(")");
}

impl SqliteStore {
    pub async fn journey_next_due(&self) -> Result<Option<i64>, StoreError> {
        // fetch_all: see `next_due` (a statement dropped early pins a snapshot).
        let v: Vec<Option<i64>> = sqlx::query_scalar(
            "SELECT MIN(deadline_at) FROM journey_timers INDEXED BY journey_timers_next WHERE status = 0",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(v.into_iter().next().flatten())
    }

    pub async fn journey_open(&self, program: Option<&str>, limit: i64) -> Result<Vec<TimerRow>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {TIMER_COLS} FROM journey_timers WHERE status = 1"
        ));
        if let Some(p) = program {
            q.push(" AND program = ").push_bind(p.to_string());
        }
        q.push(" ORDER BY deadline_at, id LIMIT ").push_bind(limit);
        all(&q.build().fetch_all(&self.reader).await?, rows::timer_row)
    }
}

impl SqliteTx {
    pub async fn journey_present(&mut self, q: &Presence<'_>) -> Result<Vec<(String, String)>, StoreError> {
        let (program, case_ids, codes) = (q.program, q.case_ids, q.codes);
        let mut out = Vec::new();
        for chunk in case_ids.chunks(MAX_PARAMS - codes.len() - 1) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT case_id, milestone FROM state WHERE program = ");
            q.push_bind(program.to_string());
            q.push(" AND case_id IN ");
            push_list(&mut q, chunk);
            q.push(" AND milestone IN ");
            push_list(&mut q, codes);
            out.extend(
                q.build_query_as::<(String, String)>()
                    .persistent(false)
                    .fetch_all(&mut *self.tx)
                    .await?,
            );
        }
        Ok(out)
    }

    pub async fn journey_arm(&mut self, arms: &[TimerArm]) -> Result<u64, StoreError> {
        let mut n = 0;
        for rearm in [false, true] {
            let these: Vec<&TimerArm> = arms.iter().filter(|a| a.rearm == rearm).collect();
            for chunk in these.chunks(MAX_PARAMS / 10) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO journey_timers (program, case_id, rule, trigger_milestone, trigger_occurrence,
                        trigger_occurred_at, connector, armed_at, deadline_at, status) ",
                );
                q.push_values(chunk, |mut b, a| {
                    b.push_bind(&a.timer.program)
                        .push_bind(&a.timer.case_id)
                        .push_bind(&a.timer.rule)
                        .push_bind(&a.timer.trigger_milestone)
                        .push_bind(&a.timer.trigger_occurrence)
                        .push_bind(&a.timer.trigger_occurred_at)
                        .push_bind(&a.timer.connector)
                        .push_bind(a.timer.armed_at_ms)
                        .push_bind(a.timer.deadline_ms)
                        .push_bind(0i64);
                });
                q.push(" ").push(rows::arm_conflict(rearm));
                n += q
                    .build()
                    .persistent(false)
                    .execute(&mut *self.tx)
                    .await?
                    .rows_affected();
            }
        }
        Ok(n)
    }

    pub async fn journey_settle(&mut self, s: &Settle<'_>) -> Result<Vec<TimerRow>, StoreError> {
        let (from_armed, from_stalled) = s.kind.settles_to();
        let (settles, now_ms) = (s.settles, s.now_ms);
        let mut out = Vec::new();
        for chunk in settles.chunks(MAX_PARAMS / 4 - 4) {
            let mut q =
                QueryBuilder::<Sqlite>::new("UPDATE journey_timers SET status = CASE status WHEN 0 THEN ");
            q.push_bind(from_armed.code())
                .push(" ELSE ")
                .push_bind(from_stalled.code())
                .push(" END, settled_at = ")
                .push_bind(now_ms)
                .push(", settled_by = v.column4 FROM (");
            q.push_values(chunk, |mut b, s| {
                b.push_bind(&s.program)
                    .push_bind(&s.case_id)
                    .push_bind(&s.rule)
                    .push_bind(&s.by);
            });
            q.push(format!(
                ") AS v WHERE journey_timers.program = v.column1 AND journey_timers.case_id = v.column2
                   AND journey_timers.rule = v.column3 AND journey_timers.status IN (0, 1)
                 RETURNING {}",
                timer_cols_of("journey_timers")
            ));
            out.extend(all(
                &q.build().persistent(false).fetch_all(&mut *self.tx).await?,
                rows::timer_row,
            )?);
        }
        Ok(out)
    }

    pub async fn journey_fired(
        &mut self,
        fired: &[(i64, TimerStatus, Option<String>)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for chunk in fired.chunks(MAX_PARAMS / 3 - 3) {
            let mut q =
                QueryBuilder::<Sqlite>::new("UPDATE journey_timers SET status = v.column2, fired_at = ");
            q.push_bind(now_ms)
                .push(", settled_at = CASE v.column2 WHEN 1 THEN NULL ELSE ");
            q.push_bind(now_ms)
                .push(" END, settled_by = CASE v.column2 WHEN 1 THEN NULL ELSE ");
            q.push_bind(RULE_REMOVED)
                .push(" END, stalled_webhook = v.column3 FROM (");
            q.push_values(chunk, |mut b, (id, status, webhook)| {
                b.push_bind(*id)
                    .push_bind(status.code())
                    .push_bind(webhook.clone());
            });
            q.push(") AS v WHERE journey_timers.id = v.column1 AND journey_timers.status = 0");
            q.build().persistent(false).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn journey_resumed(&mut self, resumed: &[(i64, String)]) -> Result<(), StoreError> {
        for chunk in resumed.chunks(MAX_PARAMS / 2 - 2) {
            let mut q =
                QueryBuilder::<Sqlite>::new("UPDATE journey_timers SET resumed_webhook = v.column2 FROM (");
            q.push_values(chunk, |mut b, (id, webhook)| {
                b.push_bind(*id).push_bind(webhook.clone());
            });
            q.push(") AS v WHERE journey_timers.id = v.column1");
            q.build().persistent(false).execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::{ARMED_COUNTS, OPEN_COUNTS};

    /// The counts behind the journey gauges walk an index in group order:
    /// a temporary B-tree here sorts every armed timer in the daemon's
    /// memory (temp_store = memory), once at start and on every scrape.
    #[tokio::test]
    async fn journey_counts_group_without_sorting_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path.to_string_lossy()).await.expect("open");
        for (sql, index) in [
            (ARMED_COUNTS, "journey_timers_armed"),
            (OPEN_COUNTS, "journey_timers_open"),
        ] {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.reader)
                .await
                .expect("explain");
            let plan: Vec<String> = rows
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE FOR GROUP BY"), "{sql}: {plan}");
        }
        store.close().await;
    }
}
