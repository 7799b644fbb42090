#![no_main]
//! Any text as a timeline query: parsed into SQL with bound parameters, or
//! refused with the term at fault; never a panic.

use custody::timeline::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(q) = Query::parse(text)
    {
        let _ = q.to_sql();
    }
});
