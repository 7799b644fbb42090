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
use crate::timeline::parse::Format;

/// How much of an image `process` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
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
            "whole".to_owned()
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
        let Some(opened) = fs::open(window, v.content) else {
            vs.note = Some(format!("{:?}: no file system custody reads", v.content));
            out.volumes.push(vs);
            continue;
        };
        let fsys = match opened {
            Ok(f) => f,
            Err(e) => {
                vs.problems.push(e.to_string());
                out.volumes.push(vs);
                continue;
            }
        };
        vs.fs = Some(fsys.kind());
        let prefix = if prefixed { format!("{name}:") } else { String::new() };
        let ctx = VolumeCtx {
            fs: fsys.as_ref(),
            name: &name,
            start: v.start,
            fold: matches!(fsys.kind(), "ntfs" | "fat"),
        };
        match (&mut body, profile) {
            (Some(w), Profile::Full) => {
                full(&ctx, &prefix, w, &mut vs, &mut out.found, &mut out.bodyfile_lines, cancel)?;
            }
            _ => quick(&ctx, &mut vs, &mut out.found, cancel),
        }
        out.volumes.push(vs);
    }
    if let Some(w) = body {
        w.into_inner().map_err(|e| e.into_error())?.flush()?;
    }
    Ok(out)
}

struct VolumeCtx<'a> {
    fs: &'a dyn FileSystem,
    name: &'a str,
    start: u64,
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
            extents: clip(&extents, node.size, self.start),
            format: item.format,
        })
    }
}

/// The extents as image offsets, cut to `0..size`, with any part of the
/// file no extent covers as a hole.
fn clip(extents: &[fs::Extent], size: u64, start: u64) -> Vec<(u64, Option<u64>, u64)> {
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
        let phys = x
            .physical
            .map(|p| start.saturating_add(p).saturating_add(from - x.logical));
        out.push((from, phys, to - from));
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
            vs.problems
                .push(format!("more than {QUICK_DIRS} directories on the way to the catalogue; stopped"));
            return;
        }
        let entries = match ctx.fs.read_dir(id) {
            Ok(e) => e,
            Err(e) => {
                vs.problems.push(e.to_string());
                continue;
            }
        };
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

/// A derived file's bytes, read from the image through its extents.
pub struct ExtentReader {
    img: Arc<dyn ReadAt>,
    extents: Vec<(u64, Option<u64>, u64)>,
    size: u64,
    pos: u64,
}

impl ExtentReader {
    pub fn new(img: Arc<dyn ReadAt>, extents: Vec<(u64, Option<u64>, u64)>, size: u64) -> Self {
        Self {
            img,
            extents,
            size,
            pos: 0,
        }
    }
}

impl io::Read for ExtentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let extents: Vec<fs::Extent> = self
            .extents
            .iter()
            .filter(|(l, _, n)| l.saturating_add(*n) > self.pos)
            .take(4)
            .map(|&(logical, physical, len)| fs::Extent {
                logical,
                physical,
                len,
            })
            .collect();
        let want = buf.len().min(1 << 20);
        let n = fs::read_data(
            self.img.as_ref(),
            &extents,
            self.size,
            self.pos,
            buf.get_mut(..want).unwrap_or_default(),
        )
        .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl crate::evidence::pipeline::SourceReader for ExtentReader {}

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
        let got = clip(&[x(4096, Some(100), 4096), x(0, Some(0), 1000)], 6000, 1 << 20);
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
    fn the_reader_reads_across_extents_and_holes() {
        use std::io::Read as _;
        let img: Arc<dyn ReadAt> = Arc::new((0..=255u8).collect::<Vec<u8>>());
        let mut r = ExtentReader::new(img, vec![(0, Some(10), 3), (3, None, 2), (5, Some(200), 3)], 8);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, [10, 11, 12, 0, 0, 200, 201, 202]);
    }
}
