//! A xml file through the shipped `beacon-xml` connector and its mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::dry("beacon-xml", "xml", data));
