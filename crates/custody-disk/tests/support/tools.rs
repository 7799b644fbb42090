//! A test's outside tools: one that is missing fails the test loudly,
//! naming the packages `scripts/emulators.sh` installs, never a silent skip.

use std::process::Command;

/// Fails unless `name` is on the PATH; `packages` are the Debian packages
/// that hold the test's tools.
pub fn require(name: &str, packages: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is missing: install it with scripts/emulators.sh ({packages})"
    );
}
