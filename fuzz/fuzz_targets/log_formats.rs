#![no_main]
//! Any bytes as a log file of any format, alone or as a bundle member: the
//! parsers must yield events and problems, never panic or hang.

use custody::timeline::ingest::parse_bundle;
use custody::timeline::parse::{Collect, Format, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let formats = <Format as clap::ValueEnum>::value_variants();
    let Some(&format) = formats.get(usize::from(pick) % formats.len()) else {
        return;
    };
    let mut sink = Collect::default();
    if pick >= 128 {
        parse_bundle(format, bytes, 2021, &mut sink);
    } else {
        parse_file(format, "", bytes, 2021, &mut sink);
    }
});
