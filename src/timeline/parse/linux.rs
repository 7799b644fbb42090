//! What a responder reads first on a Linux disk besides its logs.

use super::{FileContext, Sink};

pub fn shell_history(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn crontab(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn systemd_unit(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn authorized_keys(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn passwd(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn group(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn sudoers(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn dnf(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn cloud_init(bytes: &[u8], ctx: &FileContext, sink: &mut dyn Sink) {
    let _ = (bytes, ctx, sink);
}

pub fn dpkg(bytes: &[u8], sink: &mut dyn Sink) {
    let _ = (bytes, sink);
}
