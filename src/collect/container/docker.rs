//! Docker's containers from its data root: `containers/<id>/config.v2.json`
//! and `hostconfig.json`, the `overlay2` layer database for the writable
//! layer and the layers beneath it, `repositories.json` for image digests,
//! and the json-file logs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::files::Files;
use super::{Mount, Node, Record};

/// Largest JSON state file read.
const MAX_JSON: u64 = 64 << 20;
/// Largest one-line file read (`mount-id`).
const MAX_LINE: u64 = 4096;

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// overlay2's layer and link names: letters, digits, `-` (the `-init` layer).
fn is_layer_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn read_json(files: &dyn Files, p: &Path) -> Result<Value, String> {
    let data = files
        .read(p, MAX_JSON)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("{}: not JSON: {e}", p.display()))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().map(str::to_owned)
}

/// The upper directory and the layers beneath it, from overlay2's link names.
fn layers(
    files: &dyn Files,
    root: &Path,
    driver: &str,
    id: &str,
) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let mounts = root
        .join("image")
        .join(driver)
        .join("layerdb/mounts")
        .join(id);
    let mount_id = files
        .read(&mounts.join("mount-id"), MAX_LINE)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("{}: {e}", mounts.join("mount-id").display()))?;
    let mount_id = mount_id.trim();
    if !is_layer_name(mount_id) {
        return Err(format!("mount-id {mount_id:?} is not a layer name"));
    }
    let dir = root.join(driver).join(mount_id);
    let mut lowers = Vec::new();
    if let Ok(lower) = files
        .read(&dir.join("lower"), MAX_JSON)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
    {
        for link in lower.trim().split(':').filter(|l| !l.is_empty()) {
            let Some(name) = link.strip_prefix("l/").filter(|n| is_layer_name(n)) else {
                return Err(format!("lower entry {link:?} is not l/NAME"));
            };
            let target = files
                .read_link(&root.join(driver).join("l").join(name))
                .map_err(|e| format!("link l/{name}: {e}"))?;
            // `../<layer>/diff`: only that shape, so a link cannot lead elsewhere.
            let layer = target
                .strip_prefix("..")
                .ok()
                .and_then(|t| t.parent().filter(|_| t.ends_with("diff")))
                .and_then(|l| l.to_str())
                .filter(|l| is_layer_name(l))
                .ok_or_else(|| format!("link l/{name} points to {}", target.display()))?;
            lowers.push(root.join(driver).join(layer).join("diff"));
        }
    }
    Ok((dir.join("diff"), lowers))
}

/// Repository digests (`name@sha256:…`) that name the image id.
fn repo_digests(files: &dyn Files, root: &Path, driver: &str, image_id: &str) -> Vec<String> {
    let Ok(v) = read_json(
        files,
        &root.join("image").join(driver).join("repositories.json"),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for refs in v
        .get("Repositories")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
    {
        for (name, id) in refs.as_object().into_iter().flatten() {
            if id.as_str() == Some(image_id) && name.contains("@sha256:") {
                out.push(name.clone());
            }
        }
    }
    out.sort();
    out
}

fn record(files: &dyn Files, node: &Node, id: &str) -> Record {
    let dir = node.docker_root.join("containers").join(id);
    let mut r = Record {
        runtime: "docker",
        id: id.to_owned(),
        ..Record::default()
    };
    let config = match read_json(files, &dir.join("config.v2.json")) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(e);
            return r;
        }
    };
    r.runtime_files.push(dir.join("config.v2.json"));
    r.name = text(&config, &["Name"]).map(|n| n.trim_start_matches('/').to_owned());
    r.image = text(&config, &["Config", "Image"]).unwrap_or_default();
    r.image_id = text(&config, &["Image"]);
    r.env = strings(config.pointer("/Config/Env"));
    r.command = text(&config, &["Path"])
        .into_iter()
        .chain(strings(config.get("Args")))
        .collect();
    r.created = text(&config, &["Created"]);
    r.labels = config
        .pointer("/Config/Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    r.pod_from_labels();
    r.running = config.pointer("/State/Running").and_then(Value::as_bool) == Some(true);
    r.pid = config
        .pointer("/State/Pid")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0);
    // An image's record is history: what ran when it was taken is said,
    // not believed.
    if !files.live() {
        if r.running {
            r.problems.push(format!(
                "recorded as running (pid {}) when the image was taken",
                r.pid.map_or_else(|| "unknown".into(), |p| p.to_string())
            ));
        }
        r.running = false;
        r.pid = None;
    }
    // A daemon that died leaves Running set: believe it only with the process.
    if r.running
        && !r
            .pid
            .is_some_and(|p| node.proc.join(p.to_string()).is_dir())
    {
        r.running = false;
        r.problems
            .push("recorded as running, but its process is gone".into());
    }
    if let Some(points) = config.get("MountPoints").and_then(Value::as_object) {
        r.mounts = points
            .values()
            .map(|m| Mount {
                destination: text(m, &["Destination"]).unwrap_or_default(),
                source: text(m, &["Source"]).unwrap_or_default(),
                kind: text(m, &["Type"]).unwrap_or_default(),
                options: if m.get("RW").and_then(Value::as_bool) == Some(false) {
                    vec!["ro".into()]
                } else {
                    vec!["rw".into()]
                },
            })
            .collect();
    }
    match read_json(files, &dir.join("hostconfig.json")) {
        Ok(h) => {
            r.runtime_files.push(dir.join("hostconfig.json"));
            if h.get("Privileged").and_then(Value::as_bool) == Some(true) {
                r.privileged = true;
                r.privileged_because = Some("hostconfig.json: Privileged".into());
            }
            // Until a task's spec says exactly, the grants Docker was asked for.
            r.capabilities = strings(h.get("CapAdd"))
                .into_iter()
                .map(|c| format!("+{c}"))
                .chain(
                    strings(h.get("CapDrop"))
                        .into_iter()
                        .map(|c| format!("-{c}")),
                )
                .collect();
        }
        Err(e) => r.problems.push(e),
    }
    let driver = text(&config, &["Driver"]).unwrap_or_else(|| "overlay2".into());
    if driver == "overlay2" {
        match layers(files, &node.docker_root, &driver, id) {
            Ok((upper, lowers)) => {
                r.upper_dir = Some(upper);
                r.lower_dirs = lowers;
            }
            Err(e) => r.problems.push(format!("writable layer: {e}")),
        }
    } else {
        r.problems.push(format!(
            "storage driver {driver:?}: its writable layer is not read (only overlay2 is)"
        ));
    }
    if let Some(image_id) = &r.image_id {
        r.image_digest = repo_digests(files, &node.docker_root, &driver, image_id)
            .into_iter()
            .next()
            .and_then(|d| d.split_once('@').map(|(_, d)| d.to_owned()));
    }
    if let Ok(names) = files.list(&dir) {
        let prefix = format!("{id}-json.log");
        let mut logs: Vec<PathBuf> = names
            .iter()
            .filter(|n| n.to_string_lossy().starts_with(&prefix))
            .map(|n| dir.join(n))
            .collect();
        logs.sort();
        r.logs = logs;
    }
    r.logs
        .extend(super::containerd::kubernetes_logs(files, node, &r));
    r
}

pub fn records(files: &dyn Files, node: &Node, problems: &mut Vec<String>) -> Vec<Record> {
    let dir = node.docker_root.join("containers");
    let entries = match files.list(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(format!("docker {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut ids: Vec<String> = entries
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| is_id(n))
        .collect();
    ids.sort();
    ids.iter().map(|id| record(files, node, id)).collect()
}
