//! Login records: `utmp`, `wtmp`, `btmp` (glibc's `struct utmp`) and `lastlog`.

use super::{FileContext, Sink};

pub fn utmp(bytes: &[u8], sink: &mut dyn Sink) {
    let _ = (bytes, sink);
}

pub fn lastlog(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}
