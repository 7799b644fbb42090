//! Windows event logs (`.evtx`).

use super::Sink;

pub fn evtx(bytes: &[u8], sink: &mut dyn Sink) {
    let _ = (bytes, sink);
}
