//! A xlsx file through the shipped `summit-excel` connector and its mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::dry("summit-excel", "xlsx", data));
