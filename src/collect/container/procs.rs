//! The processes inside a container, found by their control group: every
//! process the kernel lists under the container's cgroup, not only the one
//! the runtime started (an `exec`'d shell is the usual intruder).

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    /// `comm`, as the kernel keeps it (the process can set it).
    pub comm: String,
    pub cmdline: Vec<String>,
    /// `/proc/PID/exe`'s target, as the kernel shows it.
    pub exe: Option<String>,
    pub uid: Option<u32>,
    /// The cgroup line that placed it in the container.
    pub cgroup: String,
}

/// How a container's processes are recognised in `/proc/PID/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMatch {
    /// The spec's `linux.cgroupsPath` as a path (`/k8s.io/c1`, `/docker/ID`):
    /// the cgroup is that path, or ends with it under a parent.
    Path(String),
    /// A systemd unit (`slice:prefix:name` becomes `prefix-name.scope`).
    Scope(String),
}

impl CgroupMatch {
    /// From a spec's `cgroupsPath`, in either form.
    pub fn from_spec(cgroups_path: &str) -> Option<Self> {
        let p = cgroups_path.trim();
        if p.is_empty() {
            return None;
        }
        let parts: Vec<&str> = p.split(':').collect();
        match parts.as_slice() {
            [_slice, prefix, name] if !p.starts_with('/') => {
                Some(Self::Scope(if prefix.is_empty() {
                    format!("{name}.scope")
                } else {
                    format!("{prefix}-{name}.scope")
                }))
            }
            _ => Some(Self::Path(format!("/{}", p.trim_matches('/')))),
        }
    }

    /// Whether a cgroup path (the third field of a `/proc/PID/cgroup` line) is this one.
    pub fn matches(&self, path: &str) -> bool {
        let path = format!("/{}", path.trim_matches('/'));
        match self {
            // A suffix that starts with `/` ends at a component boundary;
            // the root cgroup holds everything, so only itself.
            Self::Path(p) => path == *p || (p != "/" && path.ends_with(p.as_str())),
            Self::Scope(s) => path.rsplit('/').next() == Some(s.as_str()),
        }
    }
}

fn field(status: &str, name: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One process's record, when its cgroup matches; `None` when it does not
/// or it is gone.
fn read(proc: &Path, pid: u32, want: &CgroupMatch) -> Option<Process> {
    let dir = proc.join(pid.to_string());
    let cgroups = std::fs::read_to_string(dir.join("cgroup")).ok()?;
    let line = cgroups
        .lines()
        .find(|l| l.splitn(3, ':').nth(2).is_some_and(|p| want.matches(p)))?;
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let comm = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default();
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(Process {
        pid,
        ppid: field(&status, "PPid:"),
        comm,
        cmdline,
        exe: std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.display().to_string()),
        uid: field(&status, "Uid:"),
        cgroup: line.to_owned(),
    })
}

/// The processes under `want`, by pid.
pub fn in_cgroup(proc: &Path, want: &CgroupMatch) -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| read(proc, pid, want))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_in_both_forms() {
        let p = CgroupMatch::from_spec("/k8s.io/c1").unwrap();
        assert!(p.matches("/k8s.io/c1"));
        assert!(p.matches("/kubepods/k8s.io/c1/"));
        assert!(!p.matches("/k8s.io/c10"));
        let s = CgroupMatch::from_spec("kubepods-besteffort.slice:cri-containerd:abc").unwrap();
        assert_eq!(s, CgroupMatch::Scope("cri-containerd-abc.scope".into()));
        assert!(s.matches("/kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope"));
        assert!(!s.matches("/cri-containerd-abcd.scope"));
        assert_eq!(CgroupMatch::from_spec("  "), None);
    }

    #[test]
    fn finds_this_test_by_its_own_cgroup() {
        let me = std::process::id();
        let line = std::fs::read_to_string(format!("/proc/{me}/cgroup")).unwrap();
        // A line with a cgroup of its own (the root cgroup matches only itself).
        let path = line
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .find(|p| *p != "/")
            .expect("this test runs in a cgroup other than the root");
        let want = CgroupMatch::Path(path.to_owned());
        let found = in_cgroup(Path::new("/proc"), &want);
        assert!(found.iter().any(|p| p.pid == me), "{found:?}");
    }
}
