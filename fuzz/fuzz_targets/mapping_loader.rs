//! The mapping loader, diagnostics rendering (file:line:col, caret) included.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::ctx().dir.path().join("mapping.toml");
    std::fs::write(&path, data).expect("write the scratch mapping");
    if let Err(d) = hubsync::map::Mapping::load(&path) {
        let _ = d.to_string();
    }
});
