//! The fat reader (being written).

use std::sync::Arc;

use super::{FileSystem, FsError};
use crate::image::ReadAt;

/// Opens the fat file system on `volume`.
pub fn open(volume: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    let _ = volume;
    Err(FsError::Unsupported {
        at: "byte 0".into(),
        what: "fat (reader not written yet)".into(),
    })
}
