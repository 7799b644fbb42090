//! Progress reporting. The library reports bytes; the binary decides whether
//! that becomes a progress bar (only on a terminal, never with `--no-progress`).

use std::fmt;
use std::sync::Arc;

pub trait Progress: Send + Sync + fmt::Debug {
    /// A new phase of work with its expected length in bytes, if known.
    fn start(&self, _label: &str, _total: Option<u64>) {}
    /// `n` more bytes done.
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

pub fn none() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}
