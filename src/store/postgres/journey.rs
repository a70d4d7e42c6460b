//! Journey timers on PostgreSQL (see `store::journey`). Several instances
//! fire timers side by side: each claims due rows `FOR UPDATE SKIP LOCKED`
//! inside the transaction that marks them stalled and writes their outbox
//! rows, after taking the program lock (so firing and chunk commits of one
//! program serialize, and lock order is the same as a chunk's: program,
//! then cases, then timers). A timer is therefore fired by one transaction
//! only; a crash before commit releases the claim.

use super::{PgStore, PgTx};
use crate::journey::timer::{TimerArm, TimerRow, TimerSettle, TimerStatus, RULE_REMOVED};
use crate::store::journey::{Presence, Settle};
use crate::store::rows::{self, all, timer_cols_of, TIMER_COLS};
use crate::store::StoreError;

impl PgStore {
    pub async fn journey_next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(deadline_at) FROM journey_timers WHERE status = 0")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn journey_open(&self, program: Option<&str>, limit: i64) -> Result<Vec<TimerRow>, StoreError> {
        let rs = sqlx::query(&format!(
            "SELECT {TIMER_COLS} FROM journey_timers WHERE status = 1 AND ($1::text IS NULL OR program = $1)
             ORDER BY deadline_at, id LIMIT $2"
        ))
        .bind(program)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(&rs, rows::timer_row)
    }
}

impl PgTx {
    pub async fn journey_present(&mut self, q: &Presence<'_>) -> Result<Vec<(String, String)>, StoreError> {
        let (program, case_ids, codes) = (q.program, q.case_ids, q.codes);
        Ok(sqlx::query_as(
            "SELECT case_id, milestone FROM state WHERE program = $1 AND case_id = ANY($2) AND milestone = ANY($3)",
        )
        .bind(program)
        .bind(case_ids)
        .bind(codes)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    pub async fn journey_arm(&mut self, arms: &[TimerArm]) -> Result<u64, StoreError> {
        let mut n = 0;
        for rearm in [false, true] {
            let these: Vec<&TimerArm> = arms.iter().filter(|a| a.rearm == rearm).collect();
            if these.is_empty() {
                continue;
            }
            let col = |f: fn(&TimerArm) -> &str| these.iter().map(|a| f(a)).collect::<Vec<&str>>();
            let sql = format!(
                "INSERT INTO journey_timers (program, case_id, rule, trigger_milestone, trigger_occurrence,
                    trigger_occurred_at, connector, armed_at, deadline_at, status)
                 SELECT u.*, 0 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::bigint[], $9::bigint[]) AS u
                 {}",
                rows::arm_conflict(rearm)
            );
            n += sqlx::query(&sql)
                .bind(col(|a| &a.timer.program))
                .bind(col(|a| &a.timer.case_id))
                .bind(col(|a| &a.timer.rule))
                .bind(col(|a| &a.timer.trigger_milestone))
                .bind(col(|a| &a.timer.trigger_occurrence))
                .bind(col(|a| &a.timer.trigger_occurred_at))
                .bind(col(|a| &a.timer.connector))
                .bind(these.iter().map(|a| a.timer.armed_at_ms).collect::<Vec<i64>>())
                .bind(these.iter().map(|a| a.timer.deadline_ms).collect::<Vec<i64>>())
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    pub async fn journey_settle(&mut self, s: &Settle<'_>) -> Result<Vec<TimerRow>, StoreError> {
        let (from_armed, from_stalled) = s.kind.settles_to();
        let (settles, now_ms) = (s.settles, s.now_ms);
        let col = |f: fn(&TimerSettle) -> &str| settles.iter().map(f).collect::<Vec<&str>>();
        let returning = timer_cols_of("t");
        let rs = sqlx::query(&format!(
            "UPDATE journey_timers t SET status = CASE t.status WHEN 0 THEN $5::bigint ELSE $6::bigint END,
                settled_at = $7, settled_by = v.by
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS v(program, case_id, rule, by)
             WHERE t.program = v.program AND t.case_id = v.case_id AND t.rule = v.rule AND t.status IN (0, 1)
             RETURNING {returning}"
        ))
        .bind(col(|s| &s.program))
        .bind(col(|s| &s.case_id))
        .bind(col(|s| &s.rule))
        .bind(col(|s| &s.by))
        .bind(from_armed.code())
        .bind(from_stalled.code())
        .bind(now_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        all(&rs, rows::timer_row)
    }

    pub async fn journey_fired(
        &mut self,
        fired: &[(i64, TimerStatus, Option<String>)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = fired.iter().map(|f| f.0).collect();
        let status: Vec<i64> = fired.iter().map(|f| f.1.code()).collect();
        let webhooks: Vec<Option<String>> = fired.iter().map(|f| f.2.clone()).collect();
        sqlx::query(
            "UPDATE journey_timers t SET status = v.status, fired_at = $4,
                settled_at = CASE v.status WHEN 1 THEN NULL ELSE $4 END,
                settled_by = CASE v.status WHEN 1 THEN NULL ELSE $5 END, stalled_webhook = v.webhook
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS v(id, status, webhook)
             WHERE t.id = v.id AND t.status = 0",
        )
        .bind(&ids)
        .bind(&status)
        .bind(&webhooks)
        .bind(now_ms)
        .bind(RULE_REMOVED)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn journey_resumed(&mut self, resumed: &[(i64, String)]) -> Result<(), StoreError> {
        let ids: Vec<i64> = resumed.iter().map(|r| r.0).collect();
        let webhooks: Vec<&str> = resumed.iter().map(|r| r.1.as_str()).collect();
        sqlx::query(
            "UPDATE journey_timers t SET resumed_webhook = v.webhook
             FROM UNNEST($1::bigint[], $2::text[]) AS v(id, webhook) WHERE t.id = v.id",
        )
        .bind(&ids)
        .bind(&webhooks)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
