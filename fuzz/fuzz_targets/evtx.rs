//! Any bytes as a Windows event log: the EVTX reader reports, never panics.
#![no_main]

use custody::timeline::parse::{Collect, Format, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parse_file(Format::Evtx, "", data, 2024, &mut Collect::default());
});
