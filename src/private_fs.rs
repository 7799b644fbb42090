//! Files and directories custody creates hold evidence and keys: they are
//! made readable by their owner only (directories 0700, files 0600), whatever
//! the umask, and a new directory's entry is fsynced in its parent, so an
//! acknowledged object's path survives a power cut on every file system.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

pub use custody_ledger::private_fs::create_dir_all;

/// fsyncs a directory, making the entries created in it durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Options that create a file 0600 (reading and writing).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(0o600);
    o
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn s1_new_directories_are_0700_whatever_the_umask() {
        let t = tempfile::tempdir().expect("tmp");
        let deep = t.path().join("a/b/c");
        create_dir_all(&deep).expect("mkdir");
        for d in ["a", "a/b", "a/b/c"] {
            let mode = std::fs::metadata(t.path().join(d))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
        let f = options()
            .create_new(true)
            .open(deep.join("f"))
            .expect("file");
        drop(f);
        let mode = std::fs::metadata(deep.join("f"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        create_dir_all(&deep).expect("an existing directory is fine");
    }
}
