//! Every name in a file system, from its root, then the orphans: what the
//! bodyfile and the `fs` timeline rows list. A directory already walked is
//! not walked again (a loop in a corrupt or hostile image is reported, not
//! followed), depth is bounded, and a directory or node that cannot be
//! read is a problem with its place while the walk goes on.

use std::collections::HashSet;

use super::{Entry, FileSystem, Kind, Node, Problem};

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

/// Walks `fs`, calling `visit` for each name (the root itself excluded,
/// as TSK lists it), then each orphan. Returns what went wrong, in order.
pub fn walk(fs: &dyn FileSystem, visit: &mut dyn FnMut(Record)) -> Vec<Problem> {
    let mut problems = fs.problems();
    let root = fs.root();
    let mut walked: HashSet<u64> = HashSet::from([root]);
    // Depth-first in directory order, as `fls -r` lists.
    let mut stack: Vec<(Vec<u8>, std::vec::IntoIter<Entry>, usize)> = Vec::new();
    match fs.read_dir(root) {
        Ok(entries) => stack.push((Vec::new(), entries.into_iter(), 0)),
        Err(e) => problems.push(Problem::from(&e)),
    }
    while let Some((dir, entries, depth)) = stack.last_mut() {
        let Some(entry) = entries.next() else {
            stack.pop();
            continue;
        };
        let depth = *depth;
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
        match fs.read_dir(entry.id) {
            Ok(children) => stack.push((path, children.into_iter(), depth + 1)),
            Err(e) => problems.push(Problem::from(&e)),
        }
    }
    match fs.orphans() {
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
