//! The integration tests' one support module, shared by every test file
//! through `mod support;` (and by `examples/sftp_bench.rs` through `#[path]`).
//! Everything here is a real part: webhook receivers on 127.0.0.1:0 that
//! check signatures on their own ([`receiver`]), an isolated hubsync on a
//! real SQLite file ([`hub`]), a throw-away PostgreSQL database ([`pg`]),
//! a real OpenSSH `sshd` ([`sftp`]), a cluster of `hubsync run` processes
//! ([`cluster`]), the malformed-file generators and limited child runs
//! ([`malformed`]), and process helpers ([`process`]).
//!
//! Each test binary compiles this module on its own and uses only part of
//! it, hence the one `dead_code` allowance here rather than one per item.
#![allow(dead_code)]

pub mod admin;
pub mod cluster;
pub mod hub;
pub mod malformed;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod sftp;

// The names most tests use, at the root; a binary that takes none of them
// must not warn (the unused-import lint is the re-export's dead_code).
#[allow(unused_imports)]
pub use admin::{admin_get, admin_post, wait_admin};
#[allow(unused_imports)]
pub use hub::{admin_table, subscriber, write_snapshot, Hub, Running};
#[allow(unused_imports)]
pub use pg::{Backend, PgDb, TEST_LEASE};
#[allow(unused_imports)]
pub use process::bin;
#[allow(unused_imports)]
pub use receiver::{Hit, Received, Receiver, Recorder};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const PSEUDONYM_KEY: &str = "test-pseudonym-key-0123456789";
/// A second signing secret, for key rotation tests.
pub const SECRET2: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
/// The admin API's bearer token in tests.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The acme-hub fixture file `name` from the repository.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures/acme-hub").join(name)
}

/// A free loopback port (bound, then released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Every file below `dir`, recursively, in directory order; none if `dir`
/// does not exist.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Polls `f` every 20 ms until it returns `Ok`; after `timeout`, fails the
/// test with `f`'s last explanation of what it was still waiting for.
pub async fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "timed out after {timeout:?}: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` every 50 ms until it returns `Some`; after `timeout`, an error
/// naming `what` (for tests that return `anyhow::Result`).
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
