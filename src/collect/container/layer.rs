//! A container's writable layer as its own artefact: the overlay upper
//! directory as a tar, and `changes.json` saying of every path whether the
//! container added (`A`), changed (`C`) or deleted (`D`) it, as `docker
//! diff` does.
//!
//! - A whiteout (a character device 0/0, or an AUFS-style `.wh.NAME`) is a
//!   deletion of the name beneath; an opaque directory
//!   (`trusted.overlay.opaque=y`, or `.wh..wh..opq`) hides everything below
//!   it in the image, and is marked so.
//! - A path in the upper directory that also exists in a lower layer is a
//!   change; otherwise it was added.
//! - Regular files are members `upper/<path>`; links are recorded with
//!   their targets, never as link members (see the host triage bundle).

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custody_disk::fs::Kind;
use serde::Serialize;

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};
use super::super::host::bundle::{Bundle, Status};
use super::super::member;
use super::files::{Files, Stat};

/// Directories deeper than this are recorded, not entered.
const MAX_DEPTH: usize = 256;

#[derive(Clone)]
pub struct LayerPlan {
    /// The tree the directories are in: the live host, or a disk image.
    pub files: Arc<dyn Files>,
    /// The overlay upper directory, an absolute path on this machine.
    pub upper: PathBuf,
    /// The layers beneath, top first.
    pub lowers: Vec<PathBuf>,
    /// Which container, for the index.
    pub container: String,
    /// Where the runtime mounts file systems (the spec's mount
    /// destinations): runc makes the missing ones in the upper directory.
    pub mount_points: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// The path inside the container, from `/`.
    pub path: String,
    /// `A`, `C` or `D`.
    pub change: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub opaque: bool,
    /// A mount destination of the container: when added, most likely made
    /// by the runtime to mount on, not by the container's processes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mount_point: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct Changes<'a> {
    format: &'static str,
    container: &'a str,
    upper: String,
    lowers: Vec<String>,
    added: usize,
    changed: usize,
    deleted: usize,
    changes: &'a [Change],
}

impl std::fmt::Debug for LayerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerPlan")
            .field("live", &self.files.live())
            .field("upper", &self.upper)
            .field("lowers", &self.lowers)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

pub fn start(plan: LayerPlan) -> ChannelReader {
    channel::spawn(move |w| write(&plan, w))
}

fn shown(p: &Path) -> String {
    member::display_name(p.as_os_str().as_bytes()).0
}

fn change(path: &Path, change: &'static str, kind: &'static str) -> Change {
    Change {
        path: shown(&Path::new("/").join(path)),
        change,
        kind,
        size: None,
        mode: None,
        uid: None,
        mtime: None,
        sha256: None,
        member: None,
        target: None,
        opaque: false,
        mount_point: false,
        reason: None,
    }
}

/// Whether the overlay marks `dir` opaque. The attribute is read from the
/// node itself (`lgetxattr`), and `dir` was seen as a directory.
fn opaque_xattr(files: &dyn Files, dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(files.xattr(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Read whole a file whose size says 0: the bundle's bound for such files.
const MAX_UNSIZED: u64 = 64 << 20;

/// Copies one regular file of the layer into the member `bundle_path`, as
/// the host bundle copies a file: its size fixed when the member starts,
/// a file that shrinks padded and said so, what cannot be read recorded.
/// Only errors writing the bundle propagate.
fn copy_file(
    b: &mut Bundle<'_>,
    files: &dyn Files,
    abs: &Path,
    bundle_path: String,
) -> io::Result<()> {
    const CATEGORY: &str = "layer";
    let meta = match files.lstat(abs) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            b.record(CATEGORY, abs, Status::Absent, None);
            return Ok(());
        }
        Err(e) => {
            b.record(CATEGORY, abs, Status::Error, Some(e.to_string()));
            return Ok(());
        }
    };
    if meta.kind != Kind::File {
        b.record(
            CATEGORY,
            abs,
            Status::Skipped,
            Some(format!("{:?}, not a regular file", meta.kind)),
        );
        return Ok(());
    }
    let mut file = match files.open(abs) {
        Ok(f) => f,
        Err(e) => {
            b.record(CATEGORY, abs, Status::Error, Some(e.to_string()));
            return Ok(());
        }
    };
    if meta.size == 0 {
        let mut data = Vec::new();
        return match (&mut file).take(MAX_UNSIZED).read_to_end(&mut data) {
            Ok(_) => b.add_bytes(CATEGORY, abs, &bundle_path, &data),
            Err(e) => {
                b.record(CATEGORY, abs, Status::Error, Some(e.to_string()));
                Ok(())
            }
        };
    }
    let mtime = u64::try_from(meta.mtime).unwrap_or(0);
    b.append_sized(CATEGORY, abs, bundle_path, file, meta.size, mtime)
}

struct Walk<'a, 'w> {
    plan: &'a LayerPlan,
    b: Bundle<'w>,
    changes: Vec<Change>,
    /// Directories entered, by identity: a directory met again (a crafted
    /// image's directory linked into itself) is recorded, not entered.
    entered: std::collections::HashSet<(u64, u64)>,
}

impl Walk<'_, '_> {
    fn in_lower(&self, rel: &Path) -> bool {
        self.plan
            .lowers
            .iter()
            .any(|l| self.plan.files.lstat(&l.join(rel)).is_ok())
    }

    /// An opaque directory hides what the layers beneath held in it: each
    /// such name the container did not write again is deleted, as `docker
    /// diff` says.
    fn hidden(&mut self, rel: &Path) {
        let upper = self.plan.upper.join(rel);
        let mut names = std::collections::BTreeSet::new();
        for l in &self.plan.lowers {
            if let Ok(d) = self.plan.files.list(&l.join(rel)) {
                names.extend(d);
            }
        }
        for name in names {
            if self.plan.files.lstat(&upper.join(&name)).is_err() {
                let mut c = change(&rel.join(&name), "D", "hidden");
                c.reason = Some("hidden by an opaque directory".into());
                self.changes.push(c);
            }
        }
    }

    fn dir(&mut self, rel: &Path, depth: usize) -> io::Result<()> {
        let abs = self.plan.upper.join(rel);
        let mut names: Vec<_> = match self.plan.files.list(&abs) {
            Ok(d) => d,
            Err(e) => {
                let mut c = change(rel, "C", "dir");
                c.reason = Some(format!("cannot list: {e}"));
                self.changes.push(c);
                return Ok(());
            }
        };
        names.sort();
        for name in names {
            self.entry(rel, &name, depth)?;
        }
        Ok(())
    }

    fn entry(&mut self, parent: &Path, name: &OsStr, depth: usize) -> io::Result<()> {
        let raw = name.as_bytes();
        if raw == b".wh..wh..opq" {
            if let Some(c) = self
                .changes
                .iter_mut()
                .rev()
                .find(|c| c.path == shown(&Path::new("/").join(parent)))
            {
                c.opaque = true;
            }
            return Ok(());
        }
        if let Some(hidden) = raw.strip_prefix(b".wh.") {
            let rel = parent.join(OsStr::from_bytes(hidden));
            self.changes.push(change(&rel, "D", "whiteout"));
            return Ok(());
        }
        let rel = parent.join(name);
        let abs = self.plan.upper.join(&rel);
        let meta: Stat = match self.plan.files.lstat(&abs) {
            Ok(m) => m,
            Err(e) => {
                let mut c = change(&rel, "C", "unknown");
                c.reason = Some(format!("cannot stat: {e}"));
                self.changes.push(c);
                return Ok(());
            }
        };
        if meta.kind == Kind::CharDevice && meta.rdev == Some((0, 0)) {
            self.changes.push(change(&rel, "D", "whiteout"));
            return Ok(());
        }
        let kind = match meta.kind {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            _ => "device",
        };
        let mut c = change(&rel, if self.in_lower(&rel) { "C" } else { "A" }, kind);
        c.mode = Some(meta.mode);
        c.mount_point = self.plan.mount_points.contains(&c.path);
        c.uid = Some(meta.uid);
        c.mtime = Some(meta.mtime);
        match kind {
            "file" => {
                let m = format!("upper/{}", member::member_name(rel.as_os_str().as_bytes()));
                let before = self.b.items.len();
                copy_file(&mut self.b, self.plan.files.as_ref(), &abs, m)?;
                if let Some(item) = self.b.items.get(before..).and_then(|i| i.last()) {
                    c.size = item.size;
                    c.sha256.clone_from(&item.sha256);
                    c.member.clone_from(&item.bundle_path);
                    if item.status != Status::Ok {
                        c.reason.clone_from(&item.reason);
                    }
                }
                self.changes.push(c);
            }
            "dir" => {
                c.opaque = opaque_xattr(self.plan.files.as_ref(), &abs);
                let at = self.changes.len();
                self.changes.push(c);
                if depth >= MAX_DEPTH {
                    if let Some(c) = self.changes.get_mut(at) {
                        c.reason = Some(format!("deeper than {MAX_DEPTH} levels; not entered"));
                    }
                } else if !self.entered.insert(meta.id) {
                    if let Some(c) = self.changes.get_mut(at) {
                        c.reason = Some(
                            "the same directory as one already read; not entered again".into(),
                        );
                    }
                } else {
                    self.dir(&rel, depth + 1)?;
                }
                if self
                    .changes
                    .get(at)
                    .is_some_and(|c| c.opaque && c.change == "C")
                {
                    self.hidden(&rel);
                }
            }
            "symlink" => {
                c.target = self.plan.files.read_link(&abs).ok().map(|t| shown(&t));
                self.changes.push(c);
            }
            _ => self.changes.push(c),
        }
        Ok(())
    }
}

fn write(plan: &LayerPlan, w: &mut dyn Write) -> io::Result<SourceEnd> {
    let mut walk = Walk {
        plan,
        b: Bundle::new(Path::new("/"), w)?,
        changes: Vec::new(),
        entered: std::collections::HashSet::new(),
    };
    match plan.files.lstat(&plan.upper) {
        Ok(m) => {
            walk.entered.insert(m.id);
        }
        Err(e) => {
            // The container is gone, or the runtime cleaned up: say so in the
            // artefact rather than record an empty layer as complete.
            return Err(io::Error::new(
                e.kind(),
                format!("writable layer {}: {e}", shown(&plan.upper)),
            ));
        }
    }
    walk.dir(Path::new(""), 0)?;
    let count = |k: &str| walk.changes.iter().filter(|c| c.change == k).count();
    let changes = Changes {
        format: "custody-container-layer/1",
        container: &plan.container,
        upper: shown(&plan.upper),
        lowers: plan.lowers.iter().map(|l| shown(l)).collect(),
        added: count("A"),
        changed: count("C"),
        deleted: count("D"),
        changes: &walk.changes,
    };
    let json = serde_json::to_vec_pretty(&changes).map_err(io::Error::other)?;
    walk.b
        .add_bytes("changes", &plan.upper, "changes.json", &json)?;
    let container = plan.container.clone();
    walk.b.finish("layer files", |items| {
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "custody-container-layer-index/1",
            "container": container,
            "items": items,
        }))
    })
}
