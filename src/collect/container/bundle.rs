//! One container's bundle, most volatile first: `container.json` (the
//! record, with the processes listed at inventory), each process's procfs
//! files, the runtime's own files for it (`config.json`, `config.v2.json`,
//! `hostconfig.json`), then its logs; `index.json` last, as in the host
//! triage bundle.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};
use super::super::host::bundle::{Bundle, Status};
use super::{Node, Record};

pub fn start(record: Record, node: Node) -> ChannelReader {
    channel::spawn(move |w| write(&record, &node, w))
}

fn write(r: &Record, node: &Node, w: &mut dyn Write) -> io::Result<SourceEnd> {
    let mut b = Bundle::new(Path::new("/"), w)?;
    let json = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    b.add_bytes("container", Path::new(&r.id), "container.json", &json)?;
    for p in &r.processes {
        let base = node.proc.join(p.pid.to_string());
        for f in [
            "cmdline",
            "status",
            "environ",
            "maps",
            "cgroup",
            "mountinfo",
        ] {
            b.copy("processes", &base.join(f))?;
        }
    }
    for f in &r.runtime_files {
        b.copy("runtime", f)?;
    }
    for log in &r.logs {
        b.copy("logs", log)?;
        // The kubelet's links in /var/log/containers: the file they name,
        // when it lies under the pod logs (it is copied there otherwise).
        if let Ok(target) = std::fs::canonicalize(log)
            && target != *log
            && target.starts_with(&node.pod_logs)
            && !r.logs.contains(&target)
        {
            b.copy("logs", &target)?;
        }
    }
    if r.logs.is_empty() {
        let mut why = PathBuf::from(&r.id);
        why.push("logs");
        b.record(
            "logs",
            &why,
            Status::Absent,
            Some("the runtime keeps no log file for this container on the node".into()),
        );
    }
    let label = r.label();
    b.finish("container items", |items| {
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "custody-container/1",
            "container": label,
            "items": items,
        }))
    })
}
