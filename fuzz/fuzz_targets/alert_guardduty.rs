#![no_main]
//! Any bytes posted to `/v1/alerts/guardduty`: the adapter must answer with
//! alerts or an error, never panic or hang.

use custody::alert::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse("guardduty", data, &Limits::default());
});
