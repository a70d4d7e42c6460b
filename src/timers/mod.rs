//! Durable journey timers at work: the part of journeys that reads and
//! writes the store. [`chunk`] applies a chunk's journey plan inside its
//! commit (or previews it for `hubsync map`), [`fire`] fires due timers from
//! the wall clock, [`view`] and [`stats`] are what `hubsync journeys`, the
//! admin API and the console show.
//!
//! The rules, deadline arithmetic, the plan and the timer types are
//! `crate::journey`, below the store; this module is above it, so neither
//! journey nor the store imports the other's callers.

pub mod chunk;
pub mod fire;
pub mod stats;
pub mod view;

use crate::setup::Config;

/// Subscribers that want `code` events of `program` from `connector`.
pub fn subscribers(config: &Config, connector: &str, program: &str, code: &str) -> Vec<String> {
    config
        .subscribers
        .iter()
        .filter(|s| s.wants(connector, program, code))
        .map(|s| s.name.clone())
        .collect()
}
