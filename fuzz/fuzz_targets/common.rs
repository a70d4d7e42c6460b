//! What the targets share: the shipped config loaded once (with test-only
//! secrets, never real ones), and a dry run of one connector over a scratch
//! file, the same producer the daemon runs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

pub struct Ctx {
    pub dir: tempfile::TempDir,
    pub config: hubsync::setup::Config,
}

/// The repository root (this crate lives in `fuzz/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

fn env(k: &str) -> Option<String> {
    match k {
        // Fixed keys for fuzzing only: nothing here is a deployment secret.
        "HUBSYNC_PSEUDONYM_KEY" => Some("fuzz-pseudonym-key-0123456789abcdef".to_string()),
        "HUBSYNC_LOCAL_SECRET" => Some("whsec_ZnV6ei13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5".to_string()),
        _ => None,
    }
}

pub fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let config = hubsync::setup::load_with_env(&repo().join("config.example.toml"), &env)
            .unwrap_or_else(|d| panic!("the shipped config loads: {d}"));
        Ctx {
            dir: tempfile::tempdir().expect("a scratch folder"),
            config,
        }
    })
}

/// Dry-runs `data` through `connector`; every outcome but a panic or a hang
/// is fine (refusals and rejected rows are the point).
pub fn dry(connector: &str, ext: &str, data: &[u8]) {
    let ctx = ctx();
    let path = ctx.dir.path().join(format!("input.{ext}"));
    std::fs::write(&path, data).expect("write the scratch input");
    let c = ctx
        .config
        .connectors
        .iter()
        .find(|c| c.name == connector)
        .expect("the connector is shipped");
    let _ = hubsync::pipeline::dry_run(&ctx.config, c, &path);
}
