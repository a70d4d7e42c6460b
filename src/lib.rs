//! hubsync turns patient-services hubs' batch files into real-time, signed
//! milestone webhooks.
//!
//! # Layout
//!
//! A file travels through the stages in this order; each is a module:
//!
//! - [`source`]: finds complete files (local drop folders, SFTP drops), hashes them.
//! - [`parse`]: streams records out of a file, each with its locator.
//! - [`map`]: a declarative mapping turns a record into canonical milestones.
//! - [`diff`]: compares milestones with stored state; keeps only deltas.
//! - [`outbox`]: renders each delta as the webhook body it will always be.
//! - [`deliver`]: signs and POSTs outbox messages, in order per case, with retries.
//!
//! Around them:
//!
//! - [`pipeline`]: wires parse → map → diff → outbox for one file, committing
//!   ledger progress, state and outbox in one transaction per chunk.
//! - [`runtime`]: spawns sources, pipelines and delivery workers; owns shutdown.
//! - [`expect`]: per-connector deadlines; a missed drop becomes `feed.missing`.
//! - [`journey`]: journey rules and durable timers; a case that misses a
//!   deadline becomes `journey.stalled`.
//! - [`store`]: the only place with SQL; SQLite, or PostgreSQL shared by
//!   several instances (see `src/store/design.md`).
//! - [`config`]: config and connector files as users write them (serde
//!   specs and `file:line:col` diagnostics); the bottom layer.
//! - [`setup`]: validates the specs and builds each stage's runtime parts.
//! - [`text`]: header folding and typo hints, shared by several stages.
//! - [`model`]: the canonical milestone model.
//! - [`telemetry`]: logging setup; no PHI ever reaches it.
//! - [`metrics`]: Prometheus counters and the exposition text.
//! - [`admin`]: the admin HTTP API (health, metrics, backlog, replay).
//! - [`console`]: the operator console, web pages served beside the admin API.
//! - [`workbench`]: dry runs and mapping tests for integration engineers.
//! - [`cli`]: the `hubsync` command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod console;
pub mod deliver;
pub mod diff;
pub mod expect;
pub mod journey;
pub mod map;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod parse;
pub mod pipeline;
pub mod runtime;
pub mod setup;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod workbench;
