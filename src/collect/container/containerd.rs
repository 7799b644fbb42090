//! containerd's containers, every namespace, from its `meta.db`, its
//! overlay snapshotter's `metadata.db` and its task state directory.

use std::path::{Path, PathBuf};

use custody_disk::containerd::{self as meta, Container};

use super::files::Files;
use super::{Node, Record};

/// Largest bbolt file read; containerd's are a few MiB.
const MAX_DB: u64 = 1 << 30;

/// containerd's identifiers (`[A-Za-z0-9][A-Za-z0-9_.-]*`): the only names
/// joined into paths here.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 255
}

/// A bbolt file read whole while its owner may be writing it: read twice
/// and keep the first read only when both saw the same transaction. An
/// image does not change: one read.
fn read_db(files: &dyn Files, path: &Path) -> std::io::Result<Vec<u8>> {
    let read = || files.read(path, MAX_DB);
    if !files.live() {
        return read();
    }
    let txid = |d: &[u8]| custody_disk::bolt::Bolt::open(d).map(|b| b.txid()).ok();
    let mut last = read()?;
    for _ in 0..5 {
        let again = read()?;
        if txid(&last).is_some() && txid(&last) == txid(&again) {
            return Ok(last);
        }
        last = again;
    }
    Err(std::io::Error::other(
        "it changed at every read (five times); try again",
    ))
}

fn unix_rfc3339(t: Option<(i64, u32)>) -> Option<String> {
    let (s, n) = t?;
    let t =
        time::OffsetDateTime::from_unix_timestamp(s).ok()? + time::Duration::nanoseconds(n.into());
    Some(crate::clock::rfc3339(t))
}

/// The log files of a Kubernetes container: its directory under
/// `/var/log/pods` and the kubelet's links in `/var/log/containers`.
pub fn kubernetes_logs(files: &dyn Files, node: &Node, r: &Record) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(pod) = &r.pod
        && let (Some(ns), Some(name), Some(uid), Some(c)) =
            (&pod.namespace, &pod.name, &pod.uid, &pod.container)
    {
        let dir = format!("{ns}_{name}_{uid}");
        // Names from labels join a path only when they are one plain component.
        let plain = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
        if plain(&dir) && plain(c) {
            let dir = node.pod_logs.join(dir).join(c);
            if let Ok(names) = files.list(&dir) {
                let mut logs: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
                logs.sort();
                out.extend(logs);
            }
        }
    }
    if let Ok(names) = files.list(&node.container_logs) {
        let suffix = format!("-{}.log", r.id);
        let mut links: Vec<PathBuf> = names
            .iter()
            .filter(|n| n.to_string_lossy().ends_with(&suffix))
            .map(|n| node.container_logs.join(n))
            .collect();
        links.sort();
        out.extend(links);
    }
    out
}

fn record(
    files: &dyn Files,
    node: &Node,
    c: Container,
    md: &meta::Metadata,
    snaps: &Snapshotters,
) -> Record {
    let mut r = Record {
        runtime: "containerd",
        namespace: Some(c.namespace.clone()),
        id: c.id.clone(),
        image: c.image.clone(),
        image_digest: md.image_digest(&c.namespace, &c.image).map(str::to_owned),
        labels: c.labels.clone(),
        created: unix_rfc3339(c.created),
        ..Record::default()
    };
    r.pod_from_labels();
    match c
        .spec
        .as_deref()
        .map(serde_json::from_slice::<serde_json::Value>)
    {
        Some(Ok(spec)) => r.apply_spec(&spec),
        Some(Err(e)) => r
            .problems
            .push(format!("its runtime spec is not JSON: {e}")),
        None => r.problems.push("no runtime spec recorded".into()),
    }
    if !is_identifier(&c.namespace) || !is_identifier(&c.id) {
        r.problems.push(
            "namespace or id is not a containerd identifier: its files are not looked for".into(),
        );
        return r;
    }
    let task = node
        .containerd_state
        .join("io.containerd.runtime.v2.task")
        .join(&c.namespace)
        .join(&c.id);
    if files.stat(&task).is_ok_and(|s| s.is_dir()) {
        r.runtime_files.push(task.join("config.json"));
        // Only a live host's pid names a process: an image's is history.
        if files.live() {
            match files
                .read(&task.join("init.pid"), 64)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
            {
                Ok(p) => match p.trim().parse::<u32>() {
                    Ok(pid) => {
                        r.pid = Some(pid);
                        r.running = node.proc.join(pid.to_string()).is_dir();
                    }
                    Err(_) => r.problems.push(format!("init.pid holds {:?}", p.trim())),
                },
                Err(e) => r.problems.push(format!("task without init.pid: {e}")),
            }
        }
    }
    if c.snapshot_key.is_empty() {
        // Docker's containers in `moby`: their layer is Docker's.
    } else if c.snapshotter != "overlayfs" {
        r.problems.push(format!(
            "snapshotter {:?}: its writable layer is not read (only overlayfs is)",
            c.snapshotter
        ));
    } else {
        match (&snaps.overlayfs, &c.snapshot_name) {
            (Ok((dir, s)), Some(name)) => {
                let (ids, why) = meta::chain(s, name);
                r.problems.extend(why);
                let fs = |id: &u64| dir.join("snapshots").join(id.to_string()).join("fs");
                if let Some((top, lower)) = ids.split_first() {
                    r.upper_dir = Some(fs(top));
                    r.lower_dirs = lower.iter().map(fs).collect();
                }
            }
            (Ok(_), None) => r
                .problems
                .push(format!("snapshot {:?} is not in meta.db", c.snapshot_key)),
            (Err(e), _) => r.problems.push(format!("overlayfs snapshots: {e}")),
        }
    }
    r.logs = kubernetes_logs(files, node, &r);
    r
}

type Snapshots = std::collections::BTreeMap<String, meta::Snapshot>;

struct Snapshotters {
    overlayfs: Result<(PathBuf, Snapshots), String>,
}

pub fn records(files: &dyn Files, node: &Node, problems: &mut Vec<String>) -> Vec<Record> {
    let db = node
        .containerd_root
        .join("io.containerd.metadata.v1.bolt")
        .join("meta.db");
    if files.stat(&db).is_err() {
        return Vec::new();
    }
    let md = match read_db(files, &db).map(|d| meta::read_metadata(&d)) {
        Ok(Ok(md)) => md,
        Ok(Err(e)) => {
            problems.push(format!("containerd {}: {e}", db.display()));
            return Vec::new();
        }
        Err(e) => {
            problems.push(format!("containerd {}: {e}", db.display()));
            return Vec::new();
        }
    };
    problems.extend(
        md.problems
            .iter()
            .map(|p| format!("containerd {}: {p}", db.display())),
    );
    let dir = node
        .containerd_root
        .join("io.containerd.snapshotter.v1.overlayfs");
    let snaps = Snapshotters {
        overlayfs: read_db(files, &dir.join("metadata.db"))
            .map_err(|e| e.to_string())
            .and_then(|d| meta::read_snapshots(&d).map_err(|e| e.to_string()))
            .map(|s| (dir, s)),
    };
    md.containers
        .iter()
        .cloned()
        .map(|c| record(files, node, c, &md, &snaps))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2_only_plain_identifiers_become_paths() {
        for ok in ["k8s.io", "c1", "3c675c19735f", "a_b-c.d"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "..", ".x", "a/b", "../../etc", "a b", "-x"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
