//! Every name in a file system, from its root, then the orphans: what the
//! bodyfile and the `fs` timeline rows list. A directory already walked is
//! not walked again (a loop in a corrupt or hostile image is reported, not
//! followed), depth is bounded, and a directory or node that cannot be
//! read is a problem with its place while the walk goes on.

use std::collections::{BTreeMap, HashSet};

use super::{FileSystem, Kind, Node, Problem};

/// Deeper than any real tree; a deeper one is a loop by another name.
pub const MAX_DEPTH: usize = 512;

/// One name found, with its node.
#[derive(Debug, Clone)]
pub struct Record {
    /// From the root, `/`-separated, as stored (bytes).
    pub path: Vec<u8>,
    pub id: u64,
    /// The type the directory entry gives, where it gives one.
    pub entry_kind: Option<Kind>,
    /// `None` when the node could not be read (its problem is reported).
    pub node: Option<Node>,
    /// A deleted name, or a freed node no name leads to.
    pub deleted: bool,
    /// Listed under `/$OrphanFiles`: no directory names it.
    pub orphan: bool,
    /// A symlink's target, as stored (at most [`MAX_LINK`] bytes).
    pub link: Option<Vec<u8>>,
}

/// Longest symlink target read (Linux's `PATH_MAX`).
pub const MAX_LINK: u64 = 4096;

/// A symlink's target through its extents, or `None` (with a problem) when
/// it cannot be read.
fn link_target(fs: &dyn FileSystem, node: &Node, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    if node.kind != Kind::Symlink {
        return None;
    }
    let read = || -> Result<Vec<u8>, super::FsError> {
        let extents = fs.extents(node.id)?;
        let size = node.size.min(MAX_LINK);
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        let n = super::read_data(fs.volume().as_ref(), &extents, size, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    };
    match read() {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(Problem::from(&e));
            None
        }
    }
}

/// A directory found and not read yet.
struct Pending {
    path: Vec<u8>,
    id: u64,
    depth: usize,
    /// Where its entries lie on the volume: (byte, length).
    extents: Vec<(u64, u64)>,
}

/// Bytes of the directory about to be read that the walk hints to the
/// volume at most, and of the directories after it.
const CURRENT_BYTES: u64 = 32 << 20;
const AHEAD_BYTES: u64 = 8 << 20;
/// Directories ahead of the walk it hints to the volume at most.
const AHEAD: usize = 16;

/// Where a directory's entries lie on the volume; empty when they cannot
/// be placed (inline in its node, or extents that do not read: `read_dir`
/// reports that problem). The walk's order is by the lowest.
fn placed(fs: &dyn FileSystem, id: u64) -> Vec<(u64, u64)> {
    fs.extents(id)
        .map(|e| {
            e.iter()
                .filter_map(|x| x.physical.map(|at| (at, x.len)))
                .collect()
        })
        .unwrap_or_default()
}

/// Tells the volume which directories the walk reads next, so an image
/// read in place can fetch and decode them on other threads while this
/// one reads nodes.
fn hint(fs: &dyn FileSystem, pending: &BTreeMap<(u64, u64), Pending>, head: u64) {
    let mut next = pending
        .range((head, 0)..)
        .chain(pending.range(..(head, 0)))
        .map(|(_, p)| p)
        .take(AHEAD);
    let hint_up_to = |p: &Pending, mut budget: u64| {
        for &(at, len) in &p.extents {
            if budget == 0 {
                return;
            }
            let len = len.min(budget);
            fs.volume().will_need(at, len);
            budget -= len;
        }
    };
    if let Some(current) = next.next() {
        hint_up_to(current, CURRENT_BYTES);
    }
    for p in next {
        hint_up_to(p, AHEAD_BYTES / AHEAD as u64);
    }
}

/// Walks `fs`, calling `visit` for each name (the root itself excluded,
/// as TSK lists it), then each orphan. Returns what went wrong, in order.
///
/// Directories are read in the order of where their entries lie on the
/// volume, sweeping up from the last one read and starting over at the
/// bottom, not depth first: an image read in place decodes each stored
/// frame about once rather than once per visit (the bodyfile is a set of
/// lines; `fls` sorts nothing either). Names within a directory keep
/// their order.
pub fn walk(fs: &dyn FileSystem, visit: &mut dyn FnMut(Record)) -> Vec<Problem> {
    let mut problems = fs.problems();
    let root = fs.root();
    let mut walked: HashSet<u64> = HashSet::from([root]);
    // Every id a name leads to: what tells an orphan.
    let mut named: HashSet<u64> = HashSet::new();
    // (position, sequence) -> the directory: the sequence keeps directories
    // that share a position (none, or a hostile image's) apart.
    let mut pending: BTreeMap<(u64, u64), Pending> = BTreeMap::new();
    let mut seq = 0u64;
    pending.insert(
        (0, seq),
        Pending {
            path: Vec::new(),
            id: root,
            depth: 0,
            extents: placed(fs, root),
        },
    );
    let mut head = 0u64;
    loop {
        let next = pending
            .range((head, 0)..)
            .next()
            .or_else(|| pending.iter().next())
            .map(|(k, _)| *k);
        let Some(key) = next else { break };
        head = key.0;
        // This directory and the next ones, before reading it.
        hint(fs, &pending, head);
        let Some(Pending {
            path: dir,
            id: dir_id,
            depth,
            ..
        }) = pending.remove(&key)
        else {
            break;
        };
        // What of the directory could be read is walked; what could not is
        // a problem each.
        let (entries, wrong) = fs.read_dir_partial(dir_id);
        problems.extend(wrong.iter().map(Problem::from));
        for entry in entries {
            named.insert(entry.id);
            let mut path = dir.clone();
            path.push(b'/');
            path.extend_from_slice(&entry.name);
            let node = match fs.node(entry.id) {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(Problem::from(&e));
                    None
                }
            };
            let is_dir = node.as_ref().is_some_and(|n| n.kind == Kind::Dir);
            // A deleted name is followed only to a node still free: a reused
            // node is someone else's now, and is walked under its own name.
            let follow = is_dir && (!entry.deleted || node.as_ref().is_some_and(|n| !n.allocated));
            let link = node
                .as_ref()
                .and_then(|n| link_target(fs, n, &mut problems));
            let record = Record {
                path: path.clone(),
                id: entry.id,
                entry_kind: entry.kind,
                node,
                deleted: entry.deleted,
                orphan: false,
                link,
            };
            visit(record);
            if !follow {
                continue;
            }
            if !walked.insert(entry.id) {
                if !entry.deleted {
                    problems.push(Problem {
                        at: format!(
                            "directory {} at {}",
                            entry.id,
                            String::from_utf8_lossy(&path)
                        ),
                        what: "a directory loop: this directory is already on the walk".into(),
                    });
                }
                continue;
            }
            if depth + 1 >= MAX_DEPTH {
                problems.push(Problem {
                    at: format!(
                        "directory {} at {}",
                        entry.id,
                        String::from_utf8_lossy(&path)
                    ),
                    what: format!("deeper than {MAX_DEPTH} directories; not walked further"),
                });
                continue;
            }
            seq += 1;
            let extents = placed(fs, entry.id);
            let at = extents.iter().map(|&(at, _)| at).min().unwrap_or(0);
            pending.insert(
                (at, seq),
                Pending {
                    path,
                    id: entry.id,
                    depth: depth + 1,
                    extents,
                },
            );
        }
    }
    match fs.orphans(&named) {
        Ok(ids) => {
            for id in ids {
                let node = match fs.node(id) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        problems.push(Problem::from(&e));
                        None
                    }
                };
                let name = fs
                    .orphan_name(id)
                    .unwrap_or_else(|| format!("OrphanFile-{id}").into_bytes());
                let mut path = b"/$OrphanFiles/".to_vec();
                path.extend_from_slice(&name);
                let link = node
                    .as_ref()
                    .and_then(|n| link_target(fs, n, &mut problems));
                // An orphan's name is made up: its type is unknown (`-`).
                visit(Record {
                    path,
                    id,
                    entry_kind: Some(Kind::Unknown),
                    node,
                    deleted: true,
                    orphan: true,
                    link,
                });
            }
        }
        Err(e) => problems.push(Problem::from(&e)),
    }
    // What the reader found during the walk (a broken chain inside a
    // file's extents) that it could not return with its answer.
    for p in fs.problems() {
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    problems
}
