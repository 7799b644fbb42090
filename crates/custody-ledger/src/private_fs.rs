//! Owner-only directories: a new directory is made readable by its owner
//! only (0700, whatever the umask) and fsynced in its parent, so a new key's
//! (or evidence object's) path survives a power cut. `custody::private_fs`
//! uses this one.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

/// Creates `dir` and any missing parents, each 0700, fsyncing the parent of
/// each one created. An existing directory keeps its mode.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        create_dir_all(p)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => File::open(parent.unwrap_or(Path::new(".")))?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}
