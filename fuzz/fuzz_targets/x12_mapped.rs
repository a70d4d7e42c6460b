//! A x12 file through the shipped `payer-278` connector and its mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::dry("payer-278", "x12", data));
