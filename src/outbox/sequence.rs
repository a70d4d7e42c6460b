//! Per-case sequence numbers for the outbox rows one transaction writes.
//!
//! Receivers order a case's webhooks by `sequence`, so every writer of
//! outbox rows (a file's chunk, the stall clock, a late resume) takes its
//! numbers the same way: count the rows per case, bump each case's counter
//! once in the store (`Tx::bump_cases`, in the same transaction), then hand
//! the numbers out in the order the rows are built.

use std::collections::HashMap;

/// Counts rows per (program, case), then hands out their numbers.
#[derive(Debug, Default)]
pub struct CaseSequences<'a> {
    slot: HashMap<(&'a str, &'a str), usize>,
    /// (program, case, rows counted): what the store bumps.
    counts: Vec<(&'a str, &'a str, i64)>,
    next: Vec<i64>,
}

impl<'a> CaseSequences<'a> {
    /// Counts one more row for `(program, case)`.
    pub fn count(&mut self, program: &'a str, case: &'a str) {
        let counts = &mut self.counts;
        let i = *self.slot.entry((program, case)).or_insert_with(|| {
            counts.push((program, case, 0));
            counts.len() - 1
        });
        self.counts[i].2 += 1;
    }

    /// The (program, case, rows) list for `Tx::bump_cases`, in first-seen order.
    pub fn counts(&self) -> &[(&'a str, &'a str, i64)] {
        &self.counts
    }

    /// Starts handing out numbers, given each case's new last sequence (in
    /// [`CaseSequences::counts`] order) after the bump. Without one (a seed,
    /// which sends nothing) every number is 0.
    pub fn start(&mut self, last: &[i64]) {
        self.next = self
            .counts
            .iter()
            .zip(last)
            .map(|((_, _, n), last)| last - n + 1)
            .collect();
        self.next.resize(self.counts.len(), 0);
    }

    /// The next number of `(program, case)`, which must have been counted.
    pub fn take(&mut self, program: &str, case: &str) -> i64 {
        let i = self.slot[&(program, case)];
        let seq = self.next[i];
        self.next[i] += 1;
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_bumped_counters_in_row_order() {
        let mut s = CaseSequences::default();
        for case in ["A", "B", "A"] {
            s.count("P", case);
        }
        assert_eq!(s.counts(), [("P", "A", 2), ("P", "B", 1)]);
        // A was at 5 and is now 7; B was at 0 and is now 1.
        s.start(&[7, 1]);
        assert_eq!([s.take("P", "A"), s.take("P", "B"), s.take("P", "A")], [6, 1, 7]);
    }

    #[test]
    fn without_a_bump_every_number_is_zero() {
        let mut s = CaseSequences::default();
        s.count("P", "A");
        s.start(&[]);
        assert_eq!(s.take("P", "A"), 0);
    }
}
