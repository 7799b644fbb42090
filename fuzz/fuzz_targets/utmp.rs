//! Any bytes as utmp/wtmp/btmp and as lastlog: the readers report, never panic.
#![no_main]

use custody::timeline::parse::{Collect, Format, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parse_file(Format::Utmp, "", data, 2024, &mut Collect::default());
    parse_file(Format::Lastlog, "", data, 2024, &mut Collect::default());
});
