//! Journey statistics, the seeds of payer intelligence: per program and
//! payer, how long cases take between milestone pairs (referral → benefit
//! verification, PA submitted → decision, approved → shipped), as p50 and
//! p90 over a window. Computed from the stored state (each milestone's
//! `occurred_at`), not from logs, so it is right after restarts and for
//! history loaded with `ingest --seed`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::journey::calendar::occurred_instant;
use crate::model::MilestoneCode;
use crate::store::{Store, StoreError};

/// A pair of steps: from the first of `from` to the first of `to` after it.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub name: &'static str,
    pub from: &'static [MilestoneCode],
    pub to: &'static [MilestoneCode],
}

/// The pairs reported.
pub const PAIRS: &[Pair] = &[
    Pair {
        name: "referral→bv",
        from: &[MilestoneCode::ReferralReceived],
        to: &[MilestoneCode::BvCompleted],
    },
    Pair {
        name: "pa_submitted→decision",
        from: &[MilestoneCode::PaSubmitted],
        to: &[MilestoneCode::PaApproved, MilestoneCode::PaDenied],
    },
    Pair {
        name: "approved→shipped",
        from: &[MilestoneCode::PaApproved],
        to: &[MilestoneCode::DispenseShipped],
    },
];

/// The one case being folded: the rows of a case arrive together, so only
/// this case's instants are held, never the program's.
#[derive(Default)]
struct CaseFold {
    case_id: String,
    /// The earliest instant of each code of the case.
    times: HashMap<MilestoneCode, DateTime<Utc>>,
    /// The payer its milestones name (the first that does).
    payer: Option<String>,
}

/// What statistics read of a stored body: two fields, borrowed.
#[derive(serde::Deserialize)]
struct Facts<'a> {
    #[serde(borrow, default)]
    occurred_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    attributes: Option<Attributes>,
}

#[derive(serde::Deserialize)]
struct Attributes {
    /// Any JSON; only a string names a payer.
    #[serde(default)]
    payer: Option<serde_json::Value>,
}

/// Hours between pairs, per payer and pair: one `f64` per case and pair.
type Samples = BTreeMap<(String, &'static str), Vec<f64>>;

impl CaseFold {
    /// Adds the case's pair samples to `samples` and starts afresh.
    fn flush(&mut self, since: DateTime<Utc>, samples: &mut Samples) {
        for pair in PAIRS {
            let from = pair.from.iter().filter_map(|c| self.times.get(c)).min();
            let to = pair
                .to
                .iter()
                .filter_map(|c| self.times.get(c))
                .filter(|t| Some(*t) >= from)
                .min();
            if let (Some(from), Some(to)) = (from, to) {
                if *to >= since {
                    let payer = self.payer.as_deref().unwrap_or("unknown");
                    let hours = (*to - *from).num_seconds() as f64 / 3600.0;
                    samples
                        .entry((payer.to_string(), pair.name))
                        .or_default()
                        .push(hours);
                }
            }
        }
        self.times.clear();
        self.payer = None;
    }
}

/// One line of the statistics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairStats {
    pub program: String,
    /// The payer the case's milestones name (`unknown` when none does).
    pub payer: String,
    pub pair: &'static str,
    pub cases: usize,
    pub p50_hours: f64,
    pub p90_hours: f64,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Statistics for every program in `programs`, over pairs whose second
/// milestone happened at or after `since` (dates in `tz` of each program's
/// connector; a date-only value counts as the end of its day, on both
/// sides, so whole days remain whole days).
pub async fn compute(
    store: &Store,
    programs: &[(String, Tz)],
    since: DateTime<Utc>,
) -> Result<Vec<PairStats>, StoreError> {
    let mut codes: Vec<&str> = PAIRS
        .iter()
        .flat_map(|p| p.from.iter().chain(p.to))
        .map(|c| c.as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let mut out = Vec::new();
    for (program, tz) in programs {
        let mut samples = Samples::new();
        let mut case = CaseFold::default();
        let mut visit = |r: crate::journey::timer::StateBody| {
            if r.case_id != case.case_id {
                case.flush(since, &mut samples);
                case.case_id = r.case_id;
            }
            let Some(code) = MilestoneCode::parse(&r.milestone) else {
                return;
            };
            let Ok(facts) = serde_json::from_str::<Facts>(&r.body) else {
                return;
            };
            let Some(at) = facts.occurred_at.and_then(|s| occurred_instant(&s, *tz)) else {
                return;
            };
            let t = case.times.entry(code).or_insert(at);
            if at < *t {
                *t = at;
            }
            if case.payer.is_none() {
                case.payer = facts
                    .attributes
                    .and_then(|a| a.payer)
                    .and_then(|p| p.as_str().map(str::to_string));
            }
        };
        store.journey_state_each(program, &codes, &mut visit).await?;
        case.flush(since, &mut samples);
        for ((payer, pair), mut v) in samples {
            v.sort_by(|a, b| a.total_cmp(b));
            out.push(PairStats {
                program: program.clone(),
                payer,
                pair,
                cases: v.len(),
                p50_hours: percentile(&v, 50.0),
                p90_hours: percentile(&v, 90.0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
