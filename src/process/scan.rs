//! Reading one disk image: its volumes, each volume's file system, the
//! files of the catalogue found in it, and (full profile) every name as a
//! bodyfile line. Synchronous: it runs on a blocking thread, reading the
//! image through [`ReadAt`] (a stored artefact read in place).

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use custody_disk::fs::{self, FileSystem, Kind, walk};
use custody_disk::volume::{self, Content, Scheme};
use custody_disk::{ReadAt, Window};
use serde::Serialize;

use super::catalogue;
use crate::collect::container::offline::Offline;
use crate::timeline::parse::Format;

/// How much of an image `process` reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The catalogue's files only, found by looking where they can be.
    Quick,
    /// Also every name of every file system, as a bodyfile and `fs` rows.
    #[default]
    Full,
}

/// A catalogue file to extract, with where its bytes are in the image.
#[derive(Debug, Clone)]
pub struct Found {
    pub volume: String,
    pub fs: &'static str,
    pub path: String,
    pub inode: u64,
    pub size: u64,
    pub modified_us: Option<i64>,
    /// `(file offset, image offset or a hole, length)`, covering `0..size`.
    pub extents: Vec<(u64, Option<u64>, u64)>,
    pub format: Option<Format>,
}

/// What was found on one volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeScan {
    /// `whole`, `p1`...
    pub name: String,
    pub start: u64,
    pub length: u64,
    pub content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<&'static str>,
    /// Names listed (full profile) or directories looked in (quick).
    pub entries: u64,
    pub found: usize,
    /// Why nothing was read (encrypted, no reader), where that is so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub problems: Vec<String>,
    /// A node's container runtime state (containerd's, Docker's) in its
    /// file system, to be read after the scan.
    #[serde(skip)]
    pub containers: Option<Offline>,
}

/// What one image holds.
#[derive(Debug, Serialize)]
pub struct Scan {
    pub scheme: Scheme,
    pub volumes: Vec<VolumeScan>,
    #[serde(skip)]
    pub found: Vec<Found>,
    /// Lines written to the bodyfile (full profile).
    pub bodyfile_lines: u64,
    pub problems: Vec<String>,
}

/// Files larger than this are listed, not extracted (a log this large is
/// rare; a file of the attacker's choosing this large is a denial of service).
pub const MAX_EXTRACT: u64 = 4 << 30;

/// The name of the one volume of an image with no partition table.
pub const WHOLE: &str = "whole";

/// Reads `img`: volumes, file systems, catalogue files and, with `bodyfile`,
/// every name. Stops between files when `cancel` is set.
pub fn scan(
    img: Arc<dyn ReadAt>,
    profile: Profile,
    bodyfile: Option<&mut dyn Write>,
    cancel: &AtomicBool,
) -> io::Result<Scan> {
    let layout = volume::layout(img.as_ref())?;
    let mut out = Scan {
        scheme: layout.scheme,
        volumes: Vec::new(),
        found: Vec::new(),
        bodyfile_lines: 0,
        problems: layout
            .problems
            .iter()
            .map(|p| format!("byte {}: {}", p.at, p.what))
            .collect(),
    };
    let mut body = bodyfile.map(|w| BufWriter::with_capacity(1 << 20, w));
    let prefixed = layout.scheme != Scheme::None;
    for v in &layout.volumes {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let name = if prefixed {
            format!("p{}", v.index)
        } else {
            WHOLE.to_owned()
        };
        let mut vs = VolumeScan {
            name: name.clone(),
            start: v.start,
            length: v.length,
            content: v.content,
            fs: None,
            entries: 0,
            found: 0,
            note: None,
            problems: Vec::new(),
            containers: None,
        };
        if v.content.encrypted() {
            vs.note = Some(format!(
                "encrypted ({:?}): detected and not opened; nothing inside it is read",
                v.content
            ));
            out.volumes.push(vs);
            continue;
        }
        let window: Arc<dyn ReadAt> = Arc::new(Window::new(img.clone(), v.start, v.length));
        if v.content == Content::LvmPhysical {
            out.volumes.push(vs);
            let lvs = lvm_volumes(window, &name, v.start, prefixed, &mut out.volumes);
            for (lv, reader, map) in lvs {
                let mut lv_scan = lv;
                let content = match volume::probe(reader.as_ref(), 0) {
                    Ok(c) => c,
                    Err(e) => {
                        lv_scan
                            .problems
                            .push(format!("reading the logical volume: {e}"));
                        out.volumes.push(lv_scan);
                        continue;
                    }
                };
                lv_scan.content = content;
                let lv_name = lv_scan.name.clone();
                let walk = Walk {
                    body: body.as_mut(),
                    profile,
                    lines: &mut out.bodyfile_lines,
                    cancel,
                };
                read_volume(
                    reader,
                    content,
                    &lv_name,
                    true,
                    map,
                    &mut lv_scan,
                    &mut out.found,
                    walk,
                )?;
                out.volumes.push(lv_scan);
            }
            continue;
        }
        let walk = Walk {
            body: body.as_mut(),
            profile,
            lines: &mut out.bodyfile_lines,
            cancel,
        };
        read_volume(
            window,
            v.content,
            &name,
            prefixed,
            Map::Offset(v.start),
            &mut vs,
            &mut out.found,
            walk,
        )?;
        out.volumes.push(vs);
    }
    if let Some(w) = body {
        w.into_inner().map_err(|e| e.into_error())?.flush()?;
    }
    Ok(out)
}

/// How a volume's byte offsets become the image's.
#[derive(Debug, Clone)]
enum Map {
    /// A partition, or the whole image: add its start.
    Offset(u64),
    /// An LVM logical volume: `(volume offset, length, image offset)` per
    /// segment, in order.
    Segments(Vec<(u64, u64, u64)>),
}

impl Map {
    /// The image ranges that `len` bytes at volume offset `at` occupy.
    fn ranges(&self, at: u64, len: u64) -> Vec<(u64, u64)> {
        match self {
            Self::Offset(start) => vec![(start.saturating_add(at), len)],
            Self::Segments(segs) => {
                let mut out = Vec::new();
                let end = at.saturating_add(len);
                for &(off, n, img) in segs {
                    let from = at.max(off);
                    let to = end.min(off.saturating_add(n));
                    if from < to {
                        out.push((img.saturating_add(from - off), to - from));
                    }
                }
                out
            }
        }
    }
}

/// Where the walk's output goes.
struct Walk<'a, 'b> {
    body: Option<&'a mut BufWriter<&'b mut dyn Write>>,
    profile: Profile,
    lines: &'a mut u64,
    cancel: &'a AtomicBool,
}

/// The logical volumes of an LVM2 physical volume that can be read, each
/// with its reader and map; the others are listed with why not.
fn lvm_volumes(
    pv: Arc<dyn ReadAt>,
    part: &str,
    pv_start: u64,
    prefixed: bool,
    listed: &mut Vec<VolumeScan>,
) -> Vec<(VolumeScan, Arc<dyn ReadAt>, Map)> {
    let vg = match custody_disk::lvm::read(pv.clone()) {
        Ok(vg) => vg,
        Err(e) => {
            if let Some(v) = listed.last_mut() {
                v.problems.push(format!("LVM2: {e}"));
            }
            return Vec::new();
        }
    };
    if let Some(v) = listed.last_mut() {
        v.problems.extend(
            vg.problems
                .iter()
                .map(|p| format!("LVM2 {}: {}", p.at, p.what)),
        );
        v.note = Some(format!(
            "LVM2 physical volume of volume group {} ({} logical volumes, listed after it)",
            vg.name,
            vg.logical_volumes.len()
        ));
    }
    let mut out = Vec::new();
    for lv in &vg.logical_volumes {
        let name = if prefixed {
            format!("{part}/{}/{}", vg.name, lv.name)
        } else {
            format!("{}/{}", vg.name, lv.name)
        };
        let mut vs = VolumeScan {
            name,
            start: pv_start,
            length: lv.size,
            content: Content::Unknown,
            fs: None,
            entries: 0,
            found: 0,
            note: None,
            problems: Vec::new(),
            containers: None,
        };
        match lv.open(pv.clone()) {
            Ok(reader) => {
                let segs = lv
                    .segments
                    .iter()
                    .filter_map(|s| Some((s.offset, s.len, pv_start.saturating_add(s.pv_offset?))))
                    .collect();
                out.push((vs, reader, Map::Segments(segs)));
            }
            Err(e) => {
                vs.note = Some(format!("not read: {e}"));
                listed.push(vs);
            }
        }
    }
    out
}

/// Opens the file system on one volume and reads it as the profile says.
#[allow(clippy::too_many_arguments)]
fn read_volume(
    reader: Arc<dyn ReadAt>,
    content: Content,
    name: &str,
    prefixed: bool,
    map: Map,
    vs: &mut VolumeScan,
    found: &mut Vec<Found>,
    walk: Walk<'_, '_>,
) -> io::Result<()> {
    let Some(opened) = fs::open(reader, content) else {
        vs.note = Some(format!("{content:?}: no file system custody reads"));
        return Ok(());
    };
    let fsys: Arc<dyn FileSystem> = match opened {
        Ok(f) => Arc::from(f),
        Err(e) => {
            vs.problems.push(e.to_string());
            return Ok(());
        }
    };
    vs.fs = Some(fsys.kind());
    // A few names looked up: whether the volume is a node's root, /var or
    // /var/lib with a container runtime's state.
    vs.containers = Offline::detect(fsys.clone());
    let prefix = if prefixed {
        format!("{name}:")
    } else {
        String::new()
    };
    let ctx = VolumeCtx {
        fs: fsys.as_ref(),
        name,
        map,
        fold: matches!(fsys.kind(), "ntfs" | "fat"),
    };
    match (walk.body, walk.profile) {
        (Some(w), Profile::Full) => full(&ctx, &prefix, w, vs, found, walk.lines, walk.cancel),
        _ => {
            quick(&ctx, vs, found, walk.cancel);
            Ok(())
        }
    }
}

struct VolumeCtx<'a> {
    fs: &'a dyn FileSystem,
    name: &'a str,
    map: Map,
    fold: bool,
}

impl VolumeCtx<'_> {
    /// The catalogue file at `path`, if it is one, with its image extents.
    fn found(&self, path: &[u8], node: &fs::Node, vs: &mut VolumeScan) -> Option<Found> {
        if node.kind != Kind::File || !node.allocated {
            return None;
        }
        let item = catalogue::item_for(path, self.fold)?;
        let shown = String::from_utf8_lossy(path).into_owned();
        if node.size > MAX_EXTRACT {
            vs.problems.push(format!(
                "{shown}: {} bytes, more than the {} extracted at most; listed, not extracted",
                node.size, MAX_EXTRACT
            ));
            return None;
        }
        let extents = match self.fs.extents(node.id) {
            Ok(x) => x,
            Err(e) => {
                vs.problems.push(format!("{shown}: {e}"));
                return None;
            }
        };
        Some(Found {
            volume: self.name.to_owned(),
            fs: self.fs.kind(),
            path: shown,
            inode: node.id,
            size: node.size,
            modified_us: node.times.modified.map(fs::Time::micros),
            extents: clip(&extents, node.size, &self.map),
            format: item.format,
        })
    }
}

/// The extents as image offsets, cut to `0..size`, with any part of the
/// file no extent covers as a hole.
fn clip(extents: &[fs::Extent], size: u64, map: &Map) -> Vec<(u64, Option<u64>, u64)> {
    let mut out = Vec::with_capacity(extents.len());
    let mut at = 0u64;
    let mut sorted: Vec<&fs::Extent> = extents.iter().collect();
    sorted.sort_by_key(|x| x.logical);
    for x in sorted {
        let from = x.logical.max(at);
        let to = x.logical.saturating_add(x.len).min(size);
        if from >= to {
            continue;
        }
        if from > at {
            out.push((at, None, from - at));
        }
        match x.physical {
            None => out.push((from, None, to - from)),
            Some(p) => {
                let mut logical = from;
                for (img, n) in map.ranges(p.saturating_add(from - x.logical), to - from) {
                    out.push((logical, Some(img), n));
                    logical += n;
                }
                // What no segment holds reads as nothing: a hole, said so.
                if logical < to {
                    out.push((logical, None, to - logical));
                }
            }
        }
        at = to;
    }
    if at < size {
        out.push((at, None, size - at));
    }
    out
}

/// Every name (bodyfile lines), and the catalogue files among them.
fn full(
    ctx: &VolumeCtx<'_>,
    prefix: &str,
    body: &mut BufWriter<&mut dyn Write>,
    vs: &mut VolumeScan,
    found: &mut Vec<Found>,
    lines: &mut u64,
    cancel: &AtomicBool,
) -> io::Result<()> {
    let mut write_err = None;
    let mut stopped = false;
    let problems = walk::walk(ctx.fs, &mut |mut r: walk::Record| {
        if stopped || write_err.is_some() {
            return;
        }
        if cancel.load(Ordering::Relaxed) {
            stopped = true;
            return;
        }
        vs.entries += 1;
        if !r.deleted
            && let Some(node) = &r.node
            && let Some(f) = ctx.found(&r.path, node, vs)
        {
            found.push(f);
            vs.found += 1;
        }
        if !prefix.is_empty() {
            let mut p = prefix.as_bytes().to_vec();
            p.extend_from_slice(&r.path);
            r.path = p;
        }
        for line in fs::bodyfile::lines(&r) {
            *lines += 1;
            if let Err(e) = body
                .write_all(line.as_bytes())
                .and_then(|()| body.write_all(b"\n"))
            {
                write_err = Some(e);
                return;
            }
        }
    });
    if let Some(e) = write_err {
        return Err(e);
    }
    vs.problems
        .extend(problems.iter().map(|p| format!("{}: {}", p.at, p.what)));
    Ok(())
}

/// Directories looked in at most by the quick profile: a hostile image
/// with millions of home directories cannot make it walk them all.
const QUICK_DIRS: u64 = 100_000;

/// Only the directories on the way to a catalogue pattern.
fn quick(ctx: &VolumeCtx<'_>, vs: &mut VolumeScan, found: &mut Vec<Found>, cancel: &AtomicBool) {
    let mut seen = std::collections::HashSet::from([ctx.fs.root()]);
    let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), ctx.fs.root())];
    while let Some((dir, id)) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        vs.entries += 1;
        if vs.entries > QUICK_DIRS {
            vs.problems.push(format!(
                "more than {QUICK_DIRS} directories on the way to the catalogue; stopped"
            ));
            return;
        }
        let (entries, wrong) = ctx.fs.read_dir_partial(id);
        vs.problems.extend(wrong.iter().map(ToString::to_string));
        for e in entries.into_iter().filter(|e| !e.deleted) {
            let mut path = dir.clone();
            path.push(b'/');
            path.extend_from_slice(&e.name);
            let is_dir = e.kind == Some(Kind::Dir);
            let could_be_file = catalogue::item_for(&path, ctx.fold).is_some();
            let could_hold = catalogue::may_hold(&path, ctx.fold);
            if !could_be_file && !could_hold {
                continue;
            }
            let node = match ctx.fs.node(e.id) {
                Ok(n) => n,
                Err(err) => {
                    vs.problems.push(err.to_string());
                    continue;
                }
            };
            if (is_dir || node.kind == Kind::Dir) && could_hold {
                if seen.insert(e.id) {
                    stack.push((path, e.id));
                }
            } else if let Some(f) = ctx.found(&path, &node, vs) {
                found.push(f);
                vs.found += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_cut_to_the_size_and_gaps_are_holes() {
        let x = |logical, physical, len| fs::Extent {
            logical,
            physical,
            len,
        };
        let got = clip(
            &[x(4096, Some(100), 4096), x(0, Some(0), 1000)],
            6000,
            &Map::Offset(1 << 20),
        );
        assert_eq!(
            got,
            [
                (0, Some(1 << 20), 1000),
                (1000, None, 3096),
                (4096, Some((1 << 20) + 100), 1904),
            ]
        );
    }

    #[test]
    fn a_logical_volume_extent_splits_at_its_segments() {
        let map = Map::Segments(vec![(0, 100, 5000), (100, 100, 9000)]);
        assert_eq!(map.ranges(50, 100), [(5050, 50), (9000, 50)]);
        let x = fs::Extent {
            logical: 0,
            physical: Some(90),
            len: 20,
        };
        assert_eq!(
            clip(&[x], 20, &map),
            [(0, Some(5090), 10), (10, Some(9000), 10)]
        );
    }
}
