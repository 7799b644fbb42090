//! Facts about the machine custody runs on, for artefact sources and the
//! ledger's actors. A leaf: it depends on nothing else in custody.

/// This machine's host name, for artefact sources.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
