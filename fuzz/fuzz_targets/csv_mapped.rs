//! A csv file through the shipped `acme-hub` connector and its mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::dry("acme-hub", "csv", data));
