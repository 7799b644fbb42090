//! LVM2 physical volumes and their linear logical volumes, read from the
//! physical volume's own bytes: the label (`LABELONE` in one of the first
//! four sectors), the PV header, the first metadata area's header and the
//! committed text metadata it points at (in a circular buffer, checksums
//! checked), parsed into the volume group, its logical volumes and their
//! segments. A linear segment (`striped`, one stripe) on this PV maps to a
//! byte range of it; any other segment (on another PV, striped, mirrored,
//! thin, a snapshot) is named as not readable, never guessed at.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use serde::Serialize;

use crate::bytes::{le32, le64, slice};
use crate::image::{ReadAt, Window};

const SECTOR: u64 = 512;
const MDA_HEADER: u64 = 512;
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// LVM's CRC-32 starts from this value and is not inverted.
const CRC_INITIAL: u32 = 0xf597_a6cf;
/// Text metadata read at most: LVM's own default area is 1 MiB.
const MAX_TEXT: u64 = 64 << 20;
/// Data and metadata area descriptors read at most per list.
const MAX_AREAS: usize = 16;
/// Sections nest this deep at most.
const MAX_DEPTH: usize = 64;
/// Segments read per logical volume at most.
const MAX_SEGMENTS: usize = 65_536;

/// Why a physical volume could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LvmError {
    #[error("{at}: reading the physical volume: {source}")]
    Io {
        at: String,
        #[source]
        source: io::Error,
    },
    #[error("no LVM2 label (LABELONE) in the first four sectors")]
    NoLabel,
    #[error("{at}: {what}")]
    Corrupt { at: String, what: String },
    #[error("metadata line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("logical volume {lv}: {what}")]
    NotReadable { lv: String, what: String },
}

fn corrupt(at: impl Into<String>, what: impl Into<String>) -> LvmError {
    LvmError::Corrupt {
        at: at.into(),
        what: what.into(),
    }
}

/// Something wrong found while reading, with its place; reading went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: String,
    pub what: String,
}

/// A volume group as this physical volume's metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeGroup {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// Extent size in 512-byte sectors.
    pub extent_size: u64,
    /// This PV's name in the metadata (`pv0`) and uuid.
    pub pv_name: String,
    pub pv_id: String,
    pub logical_volumes: Vec<LogicalVolume>,
    pub problems: Vec<Problem>,
}

/// A logical volume.
#[derive(Debug, Clone, Serialize)]
pub struct LogicalVolume {
    pub name: String,
    pub id: String,
    /// Bytes: the extents its segments cover.
    pub size: u64,
    pub segments: Vec<Segment>,
}

/// One segment of a logical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// `striped`, `mirror`, `raid1`, `thin`, `snapshot`...
    pub kind: String,
    pub stripe_count: u64,
    /// Where the segment starts in the logical volume, and its length, in
    /// bytes.
    pub offset: u64,
    pub len: u64,
    /// For a linear segment: the PV it lies on and its first extent there.
    pub pv: Option<String>,
    pub pv_start_extent: Option<u64>,
    /// The byte of this PV where the segment starts, when it is readable
    /// from this PV; why not otherwise.
    pub pv_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// Reads a physical volume's label and metadata.
pub fn read(pv: Arc<dyn ReadAt>) -> Result<VolumeGroup, LvmError> {
    let mut problems = Vec::new();
    let head = read_at(pv.as_ref(), 0, 4 * SECTOR as usize, "sector 0")?;
    let label_sector = (0..4u64)
        .find(|&s| {
            let b = slice(&head, (s * SECTOR) as usize, SECTOR as usize);
            slice(b, 0, 8) == b"LABELONE" && slice(b, 24, 8) == b"LVM2 001"
        })
        .ok_or(LvmError::NoLabel)?;
    let label = slice(&head, (label_sector * SECTOR) as usize, SECTOR as usize);
    let at_label = format!("label at sector {label_sector}");
    if lvm_crc(slice(label, 20, 492)) != le32(label, 16) {
        problems.push(Problem {
            at: at_label.clone(),
            what: "the label fails its checksum".into(),
        });
    }
    let pvh_off = le32(label, 20) as usize;
    if !(32..=SECTOR as usize - 40).contains(&pvh_off) {
        return Err(corrupt(
            at_label,
            format!("the PV header is said to be at byte {pvh_off} of the label sector"),
        ));
    }
    let pvh = slice(label, pvh_off, SECTOR as usize);
    let pv_uuid = String::from_utf8_lossy(slice(pvh, 0, 32)).into_owned();
    // Two lists of (offset, size), each ended by a zero entry: data areas,
    // then metadata areas.
    let mut lists: Vec<Vec<(u64, u64)>> = vec![Vec::new(), Vec::new()];
    let mut at = 40usize;
    for list in &mut lists {
        loop {
            let (off, size) = (le64(pvh, at), le64(pvh, at + 8));
            if at + 16 > pvh.len() {
                return Err(corrupt(
                    format!(
                        "PV header (byte {})",
                        label_sector * SECTOR + pvh_off as u64
                    ),
                    "its area lists run past the label sector",
                ));
            }
            at += 16;
            if off == 0 {
                break;
            }
            if list.len() >= MAX_AREAS {
                return Err(corrupt(
                    format!(
                        "PV header (byte {})",
                        label_sector * SECTOR + pvh_off as u64
                    ),
                    format!("more than {MAX_AREAS} areas in a list"),
                ));
            }
            list.push((off, size));
        }
    }
    let mdas = lists.pop().unwrap_or_default();
    let Some(&(mda_start, mda_size)) = mdas.first() else {
        return Err(corrupt(
            "PV header",
            "no metadata area: this PV carries no copy of the metadata",
        ));
    };
    let text = metadata_text(pv.as_ref(), mda_start, mda_size, &mut problems)?;
    let root = parse(&text)?;
    build(&root, &pv_uuid, &mut problems)
}

fn read_at(pv: &dyn ReadAt, offset: u64, len: usize, at: &str) -> Result<Vec<u8>, LvmError> {
    pv.read_exact_at(offset, len).map_err(|e| LvmError::Io {
        at: at.to_string(),
        source: e,
    })
}

/// LVM's CRC-32: the reflected polynomial of zlib, from [`CRC_INITIAL`],
/// with neither end inverted.
fn lvm_crc(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!CRC_INITIAL);
    h.update(b);
    !h.finalize()
}

/// The committed metadata the area's header points at.
fn metadata_text(
    pv: &dyn ReadAt,
    mda_start: u64,
    mda_size: u64,
    problems: &mut Vec<Problem>,
) -> Result<Vec<u8>, LvmError> {
    let at = format!("metadata area header at byte {mda_start}");
    let h = read_at(pv, mda_start, MDA_HEADER as usize, &at)?;
    if slice(&h, 4, 16) != MDA_MAGIC {
        return Err(corrupt(at, "no metadata area magic"));
    }
    if lvm_crc(slice(&h, 4, 508)) != le32(&h, 0) {
        problems.push(Problem {
            at: at.clone(),
            what: "the metadata area header fails its checksum".into(),
        });
    }
    let start = le64(&h, 24);
    let size = le64(&h, 32);
    if start != mda_start || size != mda_size {
        problems.push(Problem {
            at: at.clone(),
            what: format!(
                "the header gives the area as {size} bytes at {start}, the PV header as {mda_size} at {mda_start}"
            ),
        });
    }
    let (off, len, crc, flags) = (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60));
    if off == 0 || len == 0 {
        return Err(corrupt(at, "the area holds no committed metadata"));
    }
    if flags & 1 != 0 {
        problems.push(Problem {
            at: at.clone(),
            what: "the metadata area is marked ignored".into(),
        });
    }
    if len > MAX_TEXT || len > mda_size.saturating_sub(MDA_HEADER) || off >= mda_size {
        return Err(corrupt(
            at,
            format!("metadata of {len} bytes at byte {off} of an area of {mda_size}"),
        ));
    }
    // A circular buffer after the header: text running past the area's end
    // goes on right after the header.
    let first = len.min(mda_size - off);
    let text_at = mda_start.saturating_add(off);
    let mut text = read_at(
        pv,
        text_at,
        first as usize,
        &format!("metadata at byte {text_at}"),
    )?;
    if first < len {
        let wrap_at = mda_start + MDA_HEADER;
        text.extend(read_at(
            pv,
            wrap_at,
            (len - first) as usize,
            &format!("metadata at byte {wrap_at}"),
        )?);
    }
    if lvm_crc(&text) != crc {
        problems.push(Problem {
            at: format!("metadata at byte {text_at}"),
            what: "the metadata text fails its checksum: read anyway".into(),
        });
    }
    // The text ends at its first NUL.
    if let Some(end) = text.iter().position(|&b| b == 0) {
        text.truncate(end);
    }
    Ok(text)
}

/// A value in LVM's text metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(i64),
    /// A number with a fraction, kept as written.
    Real(String),
    List(Vec<Value>),
}

/// A `name { ... }` section: its values and sections, in order.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub line: usize,
    pub values: Vec<(String, Value, usize)>,
    pub sections: Vec<(String, Section)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<(&Value, usize)> {
        self.values
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (v, *l))
    }
    fn num(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            (Value::Num(n), _) => u64::try_from(*n).ok(),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            (Value::Str(s), _) => Some(s),
            _ => None,
        }
    }
    fn section(&self, key: &str) -> Option<&Section> {
        self.sections.iter().find(|(k, _)| k == key).map(|(_, s)| s)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Open,
    Close,
    Eq,
    LBracket,
    RBracket,
    Comma,
}

fn lex(text: &[u8]) -> Result<Vec<(Tok, usize)>, LvmError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    let at = |i: usize| text.get(i).copied();
    while let Some(c) = at(i) {
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while at(i).is_some_and(|c| c != b'\n') {
                    i += 1;
                }
            }
            b'{' | b'}' | b'=' | b'[' | b']' | b',' => {
                out.push((
                    match c {
                        b'{' => Tok::Open,
                        b'}' => Tok::Close,
                        b'=' => Tok::Eq,
                        b'[' => Tok::LBracket,
                        b']' => Tok::RBracket,
                        _ => Tok::Comma,
                    },
                    line,
                ));
                i += 1;
            }
            b'"' => {
                let start_line = line;
                let mut s = Vec::new();
                i += 1;
                loop {
                    match at(i) {
                        None => {
                            return Err(LvmError::Syntax {
                                line: start_line,
                                what: "a string that never ends".into(),
                            });
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            if let Some(n) = at(i + 1) {
                                s.push(n);
                            }
                            i += 2;
                        }
                        Some(b) => {
                            if b == b'\n' {
                                line += 1;
                            }
                            s.push(b);
                            i += 1;
                        }
                    }
                }
                out.push((
                    Tok::Str(String::from_utf8_lossy(&s).into_owned()),
                    start_line,
                ));
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let start = i;
                while at(i).is_some_and(|c| {
                    c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    i += 1;
                }
                let s = String::from_utf8_lossy(slice(text, start, i - start)).into_owned();
                out.push((Tok::Num(s), line));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while at(i).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'+')
                }) {
                    i += 1;
                }
                let s = String::from_utf8_lossy(slice(text, start, i - start)).into_owned();
                out.push((Tok::Ident(s), line));
            }
            other => {
                return Err(LvmError::Syntax {
                    line,
                    what: format!("unexpected byte 0x{other:02x}"),
                });
            }
        }
    }
    Ok(out)
}

/// Parses LVM's text metadata: `key = value` and `name { ... }`, values
/// being strings, numbers, or lists of them.
pub fn parse(text: &[u8]) -> Result<Section, LvmError> {
    let toks = lex(text)?;
    let mut p = Parser { toks, i: 0 };
    let root = p.section(1, 0)?;
    if let Some((t, line)) = p.toks.get(p.i) {
        return Err(LvmError::Syntax {
            line: *line,
            what: format!("unexpected {t:?} at the top level"),
        });
    }
    Ok(root)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
}

impl Parser {
    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn last_line(&self) -> usize {
        self.toks.last().map_or(1, |(_, l)| *l)
    }

    /// The items of a section until its `}` (or the text's end at depth 0).
    fn section(&mut self, line: usize, depth: usize) -> Result<Section, LvmError> {
        if depth > MAX_DEPTH {
            return Err(LvmError::Syntax {
                line,
                what: format!("sections nested deeper than {MAX_DEPTH}"),
            });
        }
        let mut s = Section {
            line,
            ..Section::default()
        };
        loop {
            let Some((tok, line)) = self.next() else {
                if depth == 0 {
                    return Ok(s);
                }
                return Err(LvmError::Syntax {
                    line: self.last_line(),
                    what: format!("the section opened at line {} never ends", s.line),
                });
            };
            match tok {
                Tok::Close if depth > 0 => return Ok(s),
                Tok::Ident(name) => match self.next() {
                    Some((Tok::Eq, _)) => {
                        let v = self.value(line)?;
                        s.values.push((name, v, line));
                    }
                    Some((Tok::Open, _)) => {
                        let child = self.section(line, depth + 1)?;
                        s.sections.push((name, child));
                    }
                    other => {
                        return Err(LvmError::Syntax {
                            line: other.map_or(line, |(_, l)| l),
                            what: format!("`{name}` is followed by neither `=` nor `{{`"),
                        });
                    }
                },
                other => {
                    return Err(LvmError::Syntax {
                        line,
                        what: format!("expected a name, found {other:?}"),
                    });
                }
            }
        }
    }

    fn scalar(tok: Tok, line: usize) -> Result<Value, LvmError> {
        match tok {
            Tok::Str(s) => Ok(Value::Str(s)),
            Tok::Num(n) => match n.parse::<i64>() {
                Ok(v) => Ok(Value::Num(v)),
                Err(_) if n.parse::<f64>().is_ok() => Ok(Value::Real(n)),
                Err(_) => Err(LvmError::Syntax {
                    line,
                    what: format!("`{n}` is not a number"),
                }),
            },
            other => Err(LvmError::Syntax {
                line,
                what: format!("expected a value, found {other:?}"),
            }),
        }
    }

    fn value(&mut self, line: usize) -> Result<Value, LvmError> {
        let Some((tok, line)) = self.next() else {
            return Err(LvmError::Syntax {
                line,
                what: "a value is missing at the end".into(),
            });
        };
        if tok != Tok::LBracket {
            return Self::scalar(tok, line);
        }
        let mut items = Vec::new();
        loop {
            match self.next() {
                Some((Tok::RBracket, _)) => return Ok(Value::List(items)),
                Some((Tok::Comma, _)) if !items.is_empty() => {}
                Some((tok, l)) => items.push(Self::scalar(tok, l)?),
                None => {
                    return Err(LvmError::Syntax {
                        line,
                        what: "a list that never ends".into(),
                    });
                }
            }
        }
    }
}

fn strip_dashes(s: &str) -> String {
    s.chars().filter(|&c| c != '-').collect()
}

/// The volume group from the parsed text.
fn build(
    root: &Section,
    pv_uuid: &str,
    problems: &mut Vec<Problem>,
) -> Result<VolumeGroup, LvmError> {
    // The VG is the one top-level section; the rest are `key = value`.
    let (vg_name, vg) = match root.sections.as_slice() {
        [one] => (one.0.clone(), &one.1),
        _ => {
            return Err(LvmError::Syntax {
                line: 1,
                what: format!(
                    "{} top-level sections: one volume group was expected",
                    root.sections.len()
                ),
            });
        }
    };
    let need = |s: &Section, key: &str, what: &str| {
        s.num(key).ok_or_else(|| LvmError::Syntax {
            line: s.get(key).map_or(s.line, |(_, l)| l),
            what: format!("{what} has no number `{key}`"),
        })
    };
    let extent_size = need(vg, "extent_size", &format!("volume group {vg_name}"))?;
    if extent_size == 0 {
        return Err(LvmError::Syntax {
            line: vg.get("extent_size").map_or(vg.line, |(_, l)| l),
            what: "an extent size of 0".into(),
        });
    }
    let extent_bytes = extent_size.saturating_mul(SECTOR);
    let want = strip_dashes(pv_uuid);
    let mut this_pv: Option<(String, String, u64)> = None;
    let mut pv_names: HashMap<String, String> = HashMap::new();
    if let Some(pvs) = vg.section("physical_volumes") {
        for (name, pv) in &pvs.sections {
            let id = pv.str("id").unwrap_or_default().to_string();
            pv_names.insert(name.clone(), id.clone());
            if strip_dashes(&id) == want {
                let pe_start = need(pv, "pe_start", &format!("physical volume {name}"))?;
                this_pv = Some((name.clone(), id, pe_start));
            }
        }
    }
    let Some((pv_name, pv_id, pe_start)) = this_pv else {
        return Err(LvmError::Syntax {
            line: vg.line,
            what: format!(
                "no physical volume of volume group {vg_name} has this PV's uuid {pv_uuid}"
            ),
        });
    };
    let mut lvs = Vec::new();
    for (lv_name, lv) in vg
        .section("logical_volumes")
        .map(|s| s.sections.as_slice())
        .unwrap_or_default()
    {
        let mut segments = Vec::new();
        let mut size = 0u64;
        for (seg_name, seg) in lv
            .sections
            .iter()
            .filter(|(n, _)| n.starts_with("segment"))
            .take(MAX_SEGMENTS)
        {
            let whose = format!("logical volume {lv_name} {seg_name}");
            let start_extent = need(seg, "start_extent", &whose)?;
            let extent_count = need(seg, "extent_count", &whose)?;
            let kind = seg.str("type").unwrap_or_default().to_string();
            let stripe_count = seg.num("stripe_count").unwrap_or(0);
            let offset = start_extent.saturating_mul(extent_bytes);
            let len = extent_count.saturating_mul(extent_bytes);
            size = size.max(offset.saturating_add(len));
            let stripes = match seg.get("stripes") {
                Some((Value::List(v), _)) => v.clone(),
                _ => Vec::new(),
            };
            let (pv, pv_start_extent) = match stripes.as_slice() {
                [Value::Str(pv), Value::Num(at)] if stripe_count == 1 => {
                    (Some(pv.clone()), u64::try_from(*at).ok())
                }
                _ => (None, None),
            };
            let unreadable = if kind != "striped" {
                Some(format!("a {kind} segment is not read"))
            } else if stripe_count != 1 || pv.is_none() || pv_start_extent.is_none() {
                Some(format!(
                    "a segment striped over {stripe_count} areas is not read"
                ))
            } else if pv.as_deref() != Some(pv_name.as_str()) {
                let other = pv.clone().unwrap_or_default();
                Some(format!(
                    "the segment lies on {other} ({}), another physical volume",
                    pv_names
                        .get(&other)
                        .map_or("not in the metadata", String::as_str)
                ))
            } else {
                None
            };
            let pv_offset = match (&unreadable, pv_start_extent) {
                (None, Some(e)) => pe_start
                    .saturating_mul(SECTOR)
                    .checked_add(e.saturating_mul(extent_bytes)),
                _ => None,
            };
            if let Some(why) = &unreadable {
                problems.push(Problem {
                    at: whose.clone(),
                    what: why.clone(),
                });
            }
            segments.push(Segment {
                start_extent,
                extent_count,
                kind,
                stripe_count,
                offset,
                len,
                pv,
                pv_start_extent,
                pv_offset,
                unreadable,
            });
        }
        segments.sort_by_key(|s| s.start_extent);
        lvs.push(LogicalVolume {
            name: lv_name.clone(),
            id: lv.str("id").unwrap_or_default().to_string(),
            size,
            segments,
        });
    }
    Ok(VolumeGroup {
        name: vg_name,
        id: vg.str("id").unwrap_or_default().to_string(),
        seqno: vg.num("seqno").unwrap_or(0),
        extent_size,
        pv_name,
        pv_id,
        logical_volumes: lvs,
        problems: std::mem::take(problems),
    })
}

impl LogicalVolume {
    /// The logical volume's bytes, read from `pv`: a window for one
    /// segment, the segments one after another for several. A segment that
    /// is not readable from this PV, or a gap between segments, is an
    /// error naming it.
    pub fn open(&self, pv: Arc<dyn ReadAt>) -> Result<Arc<dyn ReadAt>, LvmError> {
        let mut parts = Vec::new();
        let mut next = 0u64;
        for (i, s) in self.segments.iter().enumerate() {
            let not = |what: String| LvmError::NotReadable {
                lv: self.name.clone(),
                what: format!("segment {}: {what}", i + 1),
            };
            if let Some(why) = &s.unreadable {
                return Err(not(why.clone()));
            }
            if s.offset != next {
                return Err(not(format!(
                    "starts at byte {} of the volume, where byte {next} was expected",
                    s.offset
                )));
            }
            let Some(at) = s.pv_offset else {
                return Err(not("no place on the physical volume".into()));
            };
            parts.push((s.offset, Window::new(pv.clone(), at, s.len)));
            next = s.offset.saturating_add(s.len);
        }
        Ok(match parts.as_slice() {
            [(_, w)] => Arc::new(w.clone()),
            _ => Arc::new(Concat { parts, size: next }),
        })
    }
}

/// Windows one after another, read as one image.
struct Concat {
    /// Each part with where it starts in the whole.
    parts: Vec<(u64, Window)>,
    size: u64,
}

impl ReadAt for Concat {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset.saturating_add(done as u64);
            let Some((start, w)) = self
                .parts
                .iter()
                .find(|(start, w)| at >= *start && at < start.saturating_add(w.size()))
            else {
                break;
            };
            let n = w.read_at(at - start, buf.get_mut(done..).unwrap_or_default())?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn will_need(&self, offset: u64, len: u64) {
        if let Some((start, w)) = self
            .parts
            .iter()
            .find(|(start, w)| offset >= *start && offset < start.saturating_add(w.size()))
        {
            w.will_need(offset - start, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_metadata_parses_with_lines_named_in_errors() {
        let t = b"vg {\n id = \"x-y\"\n extent_size = 8192 # 4M\n l = [\"a\", 1]\n sub {\n k = 1.5\n }\n}\ncontents = \"Text\"\n";
        let root = parse(t).unwrap();
        let vg = root.section("vg").unwrap();
        assert_eq!(vg.num("extent_size"), Some(8192));
        assert_eq!(
            vg.get("l").unwrap().0,
            &Value::List(vec![Value::Str("a".into()), Value::Num(1)])
        );
        assert_eq!(
            vg.section("sub").unwrap().get("k").unwrap().0,
            &Value::Real("1.5".into())
        );
        let e = parse(b"vg {\n a = 1\n b c\n}\n").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = parse(b"vg {\n a = 1\n").unwrap_err().to_string();
        assert!(e.contains("never ends"), "{e}");
    }

    #[test]
    fn a_concatenation_reads_across_its_parts() {
        let raw: Arc<dyn ReadAt> = Arc::new((0..100u8).collect::<Vec<u8>>());
        let c = Concat {
            parts: vec![
                (0, Window::new(raw.clone(), 50, 10)),
                (10, Window::new(raw, 0, 10)),
            ],
            size: 20,
        };
        let got = c.read_exact_at(5, 10).unwrap();
        assert_eq!(got, [55, 56, 57, 58, 59, 0, 1, 2, 3, 4]);
    }
}
