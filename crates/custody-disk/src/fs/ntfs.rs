//! NTFS, read from the volume itself: the boot sector, the `$MFT` through
//! its own data runs (and its `$ATTRIBUTE_LIST`, for a large MFT), every
//! record's update-sequence fixups, the attributes (`$STANDARD_INFORMATION`,
//! `$FILE_NAME`, `$DATA`, `$ATTRIBUTE_LIST`, `$INDEX_ROOT`,
//! `$INDEX_ALLOCATION`) and the `$I30` directory index.
//!
//! What it lists follows The Sleuth Kit (`fls -r -m /`), so that the
//! bodyfile compares line for line: a directory lists its index entries
//! (deleted ones found in index slack included, with TSK's sanity checks),
//! then every MFT record whose `$FILE_NAME` names it as parent at its
//! current sequence number (TSK's parent map), which is how deleted files
//! reappear under their directory; unallocated records no directory names
//! are orphans. Node ids are MFT record numbers.
//!
//! Where it parts from TSK on purpose: index blocks are looked for every
//! index-record size, not every cluster (TSK misses blocks that do not
//! start a cluster when clusters are larger than index records); a broken
//! index block is skipped and reported, not the whole directory.
//!
//! Extents point into the volume: non-resident runs at their clusters,
//! resident data at its bytes inside the MFT record, split so that the two
//! bytes at each 512-byte stride end, which the update sequence replaced on
//! disk, are read from their true copy in the update sequence array.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Entry, Extent, FileSystem, FsError, Kind, Node, Problem, Time, Times};
use crate::bytes::{le16, le32, le64, slice, u8_at};
use crate::image::ReadAt;

/// The update sequence protects every 512 bytes of a record, whatever the
/// sector size.
const STRIDE: usize = 512;
/// Records read at once while scanning the MFT.
const SCAN_BATCH: u64 = 256;
/// Caps on what a size field may make us read or keep.
const MAX_RECORDS: u64 = 1 << 28;
const MAX_RUNS: usize = 1 << 20;
const MAX_INDEX_BYTES: u64 = 256 << 20;
const MAX_ATTR_LIST_BYTES: u64 = 4 << 20;
const MAX_EXTENSION_RECORDS: usize = 512;
const MAX_DIR_ENTRIES: usize = 1 << 22;

const ATTR_SI: u32 = 0x10;
const ATTR_LIST: u32 = 0x20;
const ATTR_FILE_NAME: u32 = 0x30;
const ATTR_DATA: u32 = 0x80;
const ATTR_INDEX_ROOT: u32 = 0x90;
const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
const ATTR_END: u32 = 0xFFFF_FFFF;

const RECORD_IN_USE: u16 = 0x01;
const RECORD_DIR: u16 = 0x02;

const FLAG_COMPRESSED: u16 = 0x0001;
const FLAG_ENCRYPTED: u16 = 0x4000;

const NS_DOS: u8 = 2;
const FN_FLAG_DIR: u32 = 0x1000_0000;

const SI_READ_ONLY: u32 = 0x01;
const SI_HIDDEN: u32 = 0x02;

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const NT_EPOCH_DIFF: u64 = 116_444_736_000_000_000;

/// The volume's shape, from the boot sector.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    cluster: u64,
    record: usize,
    index_record: usize,
}

/// A run of clusters: `len` clusters from `vcn`, at `lcn` or sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    vcn: u64,
    len: u64,
    lcn: Option<u64>,
}

/// One MFT record, fixed up, with where its bytes lie in the volume.
#[derive(Debug, Clone)]
struct Record {
    id: u64,
    buf: Vec<u8>,
    /// `(offset in record, offset in volume, length)`, in record order.
    phys: Vec<(usize, u64, usize)>,
    usa_off: usize,
    usa_count: usize,
}

impl Record {
    fn seq(&self) -> u16 {
        le16(&self.buf, 16)
    }
    fn links(&self) -> u16 {
        le16(&self.buf, 18)
    }
    fn flags(&self) -> u16 {
        le16(&self.buf, 22)
    }
    fn base_ref(&self) -> u64 {
        le64(&self.buf, 32) & 0xFFFF_FFFF_FFFF
    }
}

#[derive(Debug, Clone)]
enum Body {
    /// The value at `off..off + len` of record `rec` (an index into the
    /// loaded file's records).
    Resident { rec: usize, off: usize, len: usize },
    NonResident {
        start_vcn: u64,
        runs: Vec<Run>,
        alloc_size: u64,
        data_size: u64,
        init_size: u64,
    },
}

#[derive(Debug, Clone)]
struct Attr {
    ty: u32,
    name: Vec<u16>,
    flags: u16,
    body: Body,
}

/// A `$FILE_NAME` value.
#[derive(Debug, Clone)]
struct FileName {
    parent: u64,
    parent_seq: u16,
    times: Times,
    namespace: u8,
    name: Vec<u8>,
}

/// An MFT record with its extension records and their attributes.
#[derive(Debug, Clone)]
struct File {
    id: u64,
    records: Vec<Record>,
    attrs: Vec<Attr>,
}

impl File {
    fn base(&self) -> Option<&Record> {
        self.records.first()
    }
    fn allocated(&self) -> bool {
        self.base().is_some_and(|r| r.flags() & RECORD_IN_USE != 0)
    }
    fn is_dir(&self) -> bool {
        self.base().is_some_and(|r| r.flags() & RECORD_DIR != 0)
    }
    fn seq(&self) -> u16 {
        self.base().map_or(0, Record::seq)
    }

    fn value(&self, a: &Attr) -> &[u8] {
        match a.body {
            Body::Resident { rec, off, len } => self
                .records
                .get(rec)
                .map_or(&[][..], |r| slice(&r.buf, off, len)),
            Body::NonResident { .. } => &[],
        }
    }

    /// The non-DOS `$FILE_NAME`s, in attribute order, as TSK keeps them.
    fn names(&self) -> Vec<FileName> {
        self.attrs
            .iter()
            .filter(|a| a.ty == ATTR_FILE_NAME)
            .filter_map(|a| parse_file_name(self.value(a)))
            .filter(|f| f.namespace != NS_DOS)
            .collect()
    }

    fn find(&self, ty: u32, name: &[u16]) -> impl Iterator<Item = &Attr> {
        self.attrs
            .iter()
            .filter(move |a| a.ty == ty && a.name == name)
    }
}

fn i30() -> Vec<u16> {
    "$I30".encode_utf16().collect()
}

/// A time as TSK converts it: unsigned arithmetic truncated to 32 bits,
/// so that a zero time prints as TSK prints it (2076).
fn nt_time(t: u64) -> Time {
    let d = t.wrapping_sub(NT_EPOCH_DIFF);
    let secs = (d / 10_000_000) as u32;
    let nanos = ((t % 10_000_000) * 100) as u32;
    Time::new(i64::from(secs), nanos)
}

fn parse_file_name(v: &[u8]) -> Option<FileName> {
    if v.len() < 66 {
        return None;
    }
    let nlen = usize::from(u8_at(v, 64));
    let raw = slice(v, 66, nlen * 2);
    if raw.len() < nlen * 2 {
        return None;
    }
    Some(FileName {
        parent: le64(v, 0) & 0xFFFF_FFFF_FFFF,
        parent_seq: le16(v, 6),
        times: Times {
            born: Some(nt_time(le64(v, 8))),
            modified: Some(nt_time(le64(v, 16))),
            changed: Some(nt_time(le64(v, 24))),
            accessed: Some(nt_time(le64(v, 32))),
            deleted: None,
        },
        namespace: u8_at(v, 65),
        name: utf16_name(raw),
    })
}

fn utf16_name(raw: &[u8]) -> Vec<u8> {
    let units = raw.chunks_exact(2).map(|c| le16(c, 0));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

/// Decodes a mapping pairs array (a runlist) starting at `start_vcn`.
fn decode_runs(b: &[u8], start_vcn: u64, at: &str) -> Result<Vec<Run>, FsError> {
    let mut runs = Vec::new();
    let mut pos = 0usize;
    let mut vcn = start_vcn;
    let mut lcn: i64 = 0;
    loop {
        let header = u8_at(b, pos);
        if header == 0 || pos >= b.len() {
            break;
        }
        let len_bytes = usize::from(header & 0x0F);
        let off_bytes = usize::from(header >> 4);
        if len_bytes == 0 || len_bytes > 8 || off_bytes > 8 {
            return Err(FsError::corrupt(
                at,
                format!("a data run header 0x{header:02x} at run byte {pos} is invalid"),
            ));
        }
        let field = slice(b, pos + 1, len_bytes + off_bytes);
        if field.len() < len_bytes + off_bytes {
            return Err(FsError::corrupt(at, "a data run runs past its attribute"));
        }
        let mut len = 0u64;
        for (i, &x) in field.iter().take(len_bytes).enumerate() {
            len |= u64::from(x) << (8 * i);
        }
        let target =
            if off_bytes == 0 {
                None
            } else {
                let mut delta = 0i64;
                for (i, &x) in field.iter().skip(len_bytes).enumerate() {
                    delta |= i64::from(x) << (8 * i);
                }
                // Sign-extend the delta from its width.
                let shift = 64 - 8 * off_bytes as u32;
                delta = if shift >= 64 {
                    delta
                } else {
                    (delta << shift) >> shift
                };
                lcn = lcn
                    .checked_add(delta)
                    .ok_or_else(|| FsError::corrupt(at, "a data run's cluster number overflows"))?;
                Some(u64::try_from(lcn).map_err(|_| {
                    FsError::corrupt(at, format!("a data run starts at cluster {lcn}"))
                })?)
            };
        if len == 0 {
            return Err(FsError::corrupt(at, "a data run of length zero"));
        }
        runs.push(Run {
            vcn,
            len,
            lcn: target,
        });
        if runs.len() > MAX_RUNS {
            return Err(FsError::corrupt(
                at,
                "more data runs than any real attribute has",
            ));
        }
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| FsError::corrupt(at, "data runs overflow"))?;
        pos += 1 + len_bytes + off_bytes;
    }
    Ok(runs)
}

/// Applies the update sequence to a multi-sector record (`FILE` or
/// `INDX`): the last two bytes of every 512 bytes must hold the update
/// sequence number and are replaced by their saved copy.
fn fixup(buf: &mut [u8], at: &str) -> Result<(usize, usize), FsError> {
    let usa_off = usize::from(le16(buf, 4));
    let usa_count = usize::from(le16(buf, 6));
    if usa_count < 2 || usa_off < 8 || usa_off + 2 * usa_count > buf.len() {
        return Err(FsError::corrupt(
            at,
            format!(
                "the update sequence array ({usa_count} entries at byte {usa_off}) does not fit"
            ),
        ));
    }
    if (usa_count - 1) * STRIDE > buf.len() {
        return Err(FsError::corrupt(
            at,
            format!(
                "the update sequence array has {usa_count} entries, more than the record's {} bytes hold",
                buf.len()
            ),
        ));
    }
    let usn = le16(buf, usa_off);
    for k in 1..usa_count {
        let end = k * STRIDE - 2;
        let found = le16(buf, end);
        if found != usn {
            return Err(FsError::corrupt(
                at,
                format!(
                    "update sequence mismatch at byte {end} (0x{found:04x}, expected 0x{usn:04x})"
                ),
            ));
        }
        let saved = le16(buf, usa_off + 2 * k).to_le_bytes();
        if let Some(dst) = buf.get_mut(end..end + 2) {
            dst.copy_from_slice(&saved);
        }
    }
    Ok((usa_off, usa_count))
}

/// Parses the attributes of one record, as TSK walks them: from the first
/// attribute offset to the end marker or a zero length.
fn parse_attrs(rec: &Record, rec_index: usize, at: &str) -> Result<Vec<Attr>, FsError> {
    let b = &rec.buf;
    let mut off = usize::from(le16(b, 20));
    let mut out = Vec::new();
    if off >= b.len() {
        return Err(FsError::corrupt(
            at,
            format!("the first attribute offset {off} is past the record"),
        ));
    }
    while off + 16 <= b.len() {
        let ty = le32(b, off);
        let len = le32(b, off + 4) as usize;
        if ty == ATTR_END || len == 0 {
            break;
        }
        if len < 16 || off + len > b.len() {
            return Err(FsError::corrupt(
                at,
                format!("the attribute at byte {off} has length {len}, past the record's end"),
            ));
        }
        let a = slice(b, off, len);
        let non_resident = u8_at(a, 8) != 0;
        let nlen = usize::from(u8_at(a, 9));
        let noff = usize::from(le16(a, 10));
        let name_raw = slice(a, noff, nlen * 2);
        let name: Vec<u16> = name_raw.chunks_exact(2).map(|c| le16(c, 0)).collect();
        let flags = le16(a, 12);
        let body = if non_resident {
            if len < 64 {
                return Err(FsError::corrupt(
                    at,
                    format!("the non-resident attribute at byte {off} is too short"),
                ));
            }
            let start_vcn = le64(a, 16);
            let runs_off = usize::from(le16(a, 32));
            let runs = if runs_off >= len {
                Vec::new()
            } else {
                decode_runs(
                    slice(a, runs_off, len - runs_off),
                    start_vcn,
                    &format!("{at} attribute at byte {off}"),
                )?
            };
            Body::NonResident {
                start_vcn,
                runs,
                alloc_size: le64(a, 40),
                data_size: le64(a, 48),
                init_size: le64(a, 56),
            }
        } else {
            let vlen = le32(a, 16) as usize;
            let voff = usize::from(le16(a, 20));
            if voff > len || vlen > len - voff {
                return Err(FsError::corrupt(
                    at,
                    format!("the resident value of the attribute at byte {off} lies past it"),
                ));
            }
            Body::Resident {
                rec: rec_index,
                off: off + voff,
                len: vlen,
            }
        };
        out.push(Attr {
            ty,
            name,
            flags,
            body,
        });
        off += len;
    }
    Ok(out)
}

/// Reads an attribute's bytes (all of them up to `cap`), resident or not.
fn read_attr(
    vol: &dyn ReadAt,
    geo: Geometry,
    file: &File,
    parts: &[&Attr],
    cap: u64,
    at: &str,
) -> Result<Vec<u8>, FsError> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    if let Body::Resident { .. } = first.body {
        return Ok(file.value(first).to_vec());
    }
    let (runs, size) = merged_runs(parts);
    // Past its last cluster on the volume the value is zeros: the buffer
    // stops there, so a size field claiming far more than the runs back
    // costs nothing (a fuzzed index once asked for 256 MiB on a 1 MiB image).
    let backed = runs
        .iter()
        .filter(|r| r.lcn.is_some())
        .map(|r| r.vcn.saturating_add(r.len).saturating_mul(geo.cluster))
        .max()
        .unwrap_or(0);
    let want = size.min(cap).min(backed);
    if want > vol.size() {
        return Err(FsError::corrupt(
            at,
            format!(
                "the attribute's runs place {want} bytes, more than the volume holds ({})",
                vol.size()
            ),
        ));
    }
    let mut out = vec![0u8; usize::try_from(want).unwrap_or(0)];
    for r in runs {
        let Some(lcn) = r.lcn else { continue };
        let start = r.vcn.saturating_mul(geo.cluster);
        if start >= want {
            continue;
        }
        let len = r.len.saturating_mul(geo.cluster).min(want - start);
        let phys = lcn.saturating_mul(geo.cluster);
        let s = usize::try_from(start).unwrap_or(usize::MAX);
        let l = usize::try_from(len).unwrap_or(0);
        if let Some(dst) = out.get_mut(s..s.saturating_add(l)) {
            let got = vol
                .read_at(phys, dst)
                .map_err(|e| FsError::io(format!("{at} byte {phys}"), e))?;
            if got < l {
                return Err(FsError::corrupt(
                    format!("{at} byte {phys}"),
                    "the attribute's clusters lie past the volume's end",
                ));
            }
        }
    }
    Ok(out)
}

/// The runs of a non-resident attribute spread over several records, in
/// VCN order, and its size (allocated size, all of it read with slack).
fn merged_runs(parts: &[&Attr]) -> (Vec<Run>, u64) {
    let mut segs: Vec<(u64, &Vec<Run>)> = Vec::new();
    let mut size = 0;
    for a in parts {
        if let Body::NonResident {
            start_vcn,
            runs,
            alloc_size,
            ..
        } = &a.body
        {
            if *start_vcn == 0 {
                size = *alloc_size;
            }
            segs.push((*start_vcn, runs));
        }
    }
    segs.sort_by_key(|s| s.0);
    (
        segs.into_iter().flat_map(|s| s.1.iter().copied()).collect(),
        size,
    )
}

/// What the open-time scan keeps of each record.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    readable: bool,
    allocated: bool,
    /// Has attributes (TSK's "used").
    used: bool,
    dir: bool,
    extension: bool,
}

/// A name a record's `$FILE_NAME` gives it in a directory.
#[derive(Debug, Clone)]
struct Child {
    id: u64,
    name: Vec<u8>,
    allocated: bool,
}

struct Ntfs {
    volume: Arc<dyn ReadAt>,
    geo: Geometry,
    mft_runs: Vec<Run>,
    records: u64,
    states: Vec<State>,
    /// `(parent record, parent sequence)` → children, from every record's
    /// `$FILE_NAME`s, in record order.
    parent_map: HashMap<(u64, u16), Vec<Child>>,
    problems: Vec<Problem>,
    /// Problems found after opening (an index block that would not read);
    /// `problems()` returns them too.
    late: Mutex<Vec<Problem>>,
    orphans: OnceLock<Vec<u64>>,
}

/// Opens the ntfs file system on `volume`.
pub fn open(volume: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    Ok(Box::new(Ntfs::open(volume)?))
}

impl Ntfs {
    fn open(volume: Arc<dyn ReadAt>) -> Result<Self, FsError> {
        let boot = volume
            .read_exact_at(0, 512)
            .map_err(|e| FsError::io("byte 0", e))?;
        if slice(&boot, 3, 8) != b"NTFS    " {
            return Err(FsError::corrupt(
                "byte 3",
                "no NTFS signature in the boot sector",
            ));
        }
        let bps = u64::from(le16(&boot, 11));
        if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
            return Err(FsError::corrupt(
                "byte 11",
                format!("{bps} bytes per sector is not a valid sector size"),
            ));
        }
        let spc_raw = u8_at(&boot, 13);
        let spc: u64 = if spc_raw > 0x80 {
            let shift = 256 - u32::from(spc_raw);
            if shift > 20 {
                return Err(FsError::corrupt("byte 13", "the cluster size is absurd"));
            }
            1 << shift
        } else {
            u64::from(spc_raw)
        };
        if spc == 0 || !spc.is_power_of_two() {
            return Err(FsError::corrupt(
                "byte 13",
                format!("{spc_raw} sectors per cluster is not a power of two"),
            ));
        }
        let cluster = bps * spc;
        if cluster > 2 << 20 {
            return Err(FsError::corrupt("byte 13", "clusters larger than 2 MiB"));
        }
        let size_of = |raw: u8, at: &str| -> Result<usize, FsError> {
            let v = raw as i8;
            let bytes: u64 = if v > 0 {
                u64::from(v.unsigned_abs()) * cluster
            } else {
                let shift = u32::from(v.unsigned_abs());
                if shift > 20 {
                    return Err(FsError::corrupt(at, "the record size is absurd"));
                }
                1 << shift
            };
            if !(STRIDE as u64..=(64 << 10)).contains(&bytes) || !bytes.is_power_of_two() {
                return Err(FsError::corrupt(
                    at,
                    format!("a record of {bytes} bytes is not a valid NTFS record size"),
                ));
            }
            Ok(bytes as usize)
        };
        let record = size_of(u8_at(&boot, 0x40), "byte 64")?;
        let index_record = size_of(u8_at(&boot, 0x44), "byte 68")?;
        let geo = Geometry {
            cluster,
            record,
            index_record,
        };
        let mft_lcn = le64(&boot, 0x30);
        let mft_at = mft_lcn
            .checked_mul(cluster)
            .filter(|&p| p < volume.size())
            .ok_or_else(|| {
                FsError::corrupt(
                    "byte 48",
                    format!("the MFT's cluster {mft_lcn} lies past the volume's end"),
                )
            })?;

        // Record 0 describes the MFT; read it where the boot sector says.
        let mut buf = volume
            .read_exact_at(mft_at, record)
            .map_err(|e| FsError::io("MFT record 0", e))?;
        if slice(&buf, 0, 4) != b"FILE" {
            return Err(FsError::corrupt("MFT record 0", "no FILE signature"));
        }
        let (usa_off, usa_count) = fixup(&mut buf, "MFT record 0")?;
        let rec0 = Record {
            id: 0,
            buf,
            phys: vec![(0, mft_at, record)],
            usa_off,
            usa_count,
        };
        let attrs = parse_attrs(&rec0, 0, "MFT record 0")?;
        let mut fs = Self {
            volume,
            geo,
            mft_runs: Vec::new(),
            records: 0,
            states: Vec::new(),
            parent_map: HashMap::new(),
            problems: Vec::new(),
            late: Mutex::new(Vec::new()),
            orphans: OnceLock::new(),
        };
        let mut file = File {
            id: 0,
            records: vec![rec0],
            attrs,
        };
        let data: Vec<&Attr> = file.find(ATTR_DATA, &[]).collect();
        fs.mft_runs = merged_runs(&data).0;
        if fs.mft_runs.is_empty() {
            return Err(FsError::corrupt(
                "MFT record 0",
                "the $MFT has no non-resident $DATA",
            ));
        }
        // A large MFT lists the rest of its runs in extension records,
        // which the runs known so far reach.
        if file.find(ATTR_LIST, &[]).next().is_some() {
            let mut problems = Vec::new();
            fs.load_extensions(&mut file, &mut problems);
            fs.problems.extend(problems);
            let data: Vec<&Attr> = file.find(ATTR_DATA, &[]).collect();
            fs.mft_runs = merged_runs(&data).0;
        }
        let data_size = file
            .find(ATTR_DATA, &[])
            .find_map(|a| match a.body {
                Body::NonResident {
                    start_vcn: 0,
                    data_size,
                    ..
                } => Some(data_size),
                _ => None,
            })
            .unwrap_or(0);
        // Runs may overlap in a hostile image; a real MFT fits the volume.
        let mut records = data_size.min(fs.volume.size()) / record as u64;
        if records > MAX_RECORDS {
            fs.problems.push(Problem {
                at: "MFT record 0".into(),
                what: format!(
                    "the MFT claims {records} records; only the first {MAX_RECORDS} are read"
                ),
            });
            records = MAX_RECORDS;
        }
        fs.records = records;
        fs.scan();
        Ok(fs)
    }

    /// Reads `buf.len()` bytes of the MFT from `logical` through its runs;
    /// returns how many could be read, and fills `phys` with where they lie.
    fn read_mft(
        &self,
        logical: u64,
        buf: &mut [u8],
        phys: &mut Vec<(usize, u64, usize)>,
    ) -> Result<usize, FsError> {
        let cl = self.geo.cluster;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = logical.saturating_add(done as u64);
            let vcn = pos / cl;
            let Some(run) = self
                .mft_runs
                .iter()
                .find(|r| vcn >= r.vcn && vcn - r.vcn < r.len)
            else {
                break;
            };
            let Some(lcn) = run.lcn else { break };
            let run_end = run.vcn.saturating_add(run.len).saturating_mul(cl);
            let n = usize::try_from(run_end.saturating_sub(pos))
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let at = lcn
                .saturating_add(vcn - run.vcn)
                .saturating_mul(cl)
                .saturating_add(pos % cl);
            let Some(dst) = buf.get_mut(done..done + n) else {
                break;
            };
            let got = self
                .volume
                .read_at(at, dst)
                .map_err(|e| FsError::io(format!("byte {at}"), e))?;
            phys.push((done, at, got));
            done += got;
            if got < n {
                break;
            }
        }
        Ok(done)
    }

    fn record_from(
        &self,
        id: u64,
        mut buf: Vec<u8>,
        phys: Vec<(usize, u64, usize)>,
    ) -> Result<Record, FsError> {
        let at = format!("MFT record {id}");
        let magic = slice(&buf, 0, 4);
        if magic != b"FILE" {
            return Err(FsError::corrupt(
                at,
                if magic == b"BAAD" {
                    "marked BAAD (a multi-sector transfer failed)".to_string()
                } else {
                    "no FILE signature".to_string()
                },
            ));
        }
        let (usa_off, usa_count) = fixup(&mut buf, &at)?;
        Ok(Record {
            id,
            buf,
            phys,
            usa_off,
            usa_count,
        })
    }

    fn read_record(&self, id: u64) -> Result<Record, FsError> {
        if id >= self.records {
            return Err(FsError::corrupt(
                format!("MFT record {id}"),
                format!("past the MFT's {} records", self.records),
            ));
        }
        let rs = self.geo.record;
        let mut buf = vec![0u8; rs];
        let mut phys = Vec::new();
        let got = self.read_mft(id.saturating_mul(rs as u64), &mut buf, &mut phys)?;
        if got < rs {
            return Err(FsError::corrupt(
                format!("MFT record {id}"),
                "the record lies past the volume's end or outside the MFT's runs",
            ));
        }
        self.record_from(id, buf, phys)
    }

    /// Loads a record with its attributes and those of its extension
    /// records.
    fn load(&self, id: u64) -> Result<File, FsError> {
        let rec = self.read_record(id)?;
        self.load_from(rec)
    }

    fn load_from(&self, rec: Record) -> Result<File, FsError> {
        let id = rec.id;
        let at = format!("MFT record {id}");
        let attrs = parse_attrs(&rec, 0, &at)?;
        let mut file = File {
            id,
            records: vec![rec],
            attrs,
        };
        if file.find(ATTR_LIST, &[]).next().is_some() {
            let mut problems = Vec::new();
            self.load_extensions(&mut file, &mut problems);
            if let Ok(mut late) = self.late.lock() {
                late.extend(problems);
            }
        }
        Ok(file)
    }

    /// Reads the records an `$ATTRIBUTE_LIST` names and adds their
    /// attributes to `file`.
    fn load_extensions(&self, file: &mut File, problems: &mut Vec<Problem>) {
        let at = format!("MFT record {}", file.id);
        let parts: Vec<&Attr> = file.find(ATTR_LIST, &[]).collect();
        let list = match read_attr(
            self.volume.as_ref(),
            self.geo,
            file,
            &parts,
            MAX_ATTR_LIST_BYTES,
            &at,
        ) {
            Ok(l) => l,
            Err(e) => {
                problems.push(Problem::from(&e));
                return;
            }
        };
        let mut todo: Vec<u64> = Vec::new();
        let mut pos = 0usize;
        while pos + 26 <= list.len() {
            let len = usize::from(le16(&list, pos + 4));
            if len < 26 {
                break;
            }
            let r = le64(&list, pos + 16) & 0xFFFF_FFFF_FFFF;
            if r != file.id && !todo.contains(&r) && todo.len() < MAX_EXTENSION_RECORDS {
                todo.push(r);
            }
            pos += len;
        }
        for r in todo {
            let rec = match self.read_record(r) {
                Ok(rec) => rec,
                Err(e) => {
                    problems.push(Problem::from(&e));
                    continue;
                }
            };
            // A record that is no longer this file's extension was reused;
            // it is skipped (an error only for a file still in use).
            if rec.base_ref() != file.id {
                if file.allocated() && rec.flags() & RECORD_IN_USE != 0 {
                    problems.push(Problem {
                        at: format!("MFT record {r}"),
                        what: format!(
                            "listed in record {}'s attribute list but belongs to record {}",
                            file.id,
                            rec.base_ref()
                        ),
                    });
                }
                continue;
            }
            let idx = file.records.len();
            match parse_attrs(&rec, idx, &format!("MFT record {r}")) {
                Ok(attrs) => {
                    file.records.push(rec);
                    file.attrs.extend(attrs);
                }
                Err(e) => problems.push(Problem::from(&e)),
            }
        }
    }

    /// Reads every record once: what is allocated and used, and who names
    /// whom as parent.
    fn scan(&mut self) {
        let rs = self.geo.record;
        let mut states =
            Vec::with_capacity(usize::try_from(self.records.min(1 << 20)).unwrap_or(0));
        let mut problems = Vec::new();
        let mut parent_map: HashMap<(u64, u16), Vec<Child>> = HashMap::new();
        let mut first = 0u64;
        let mut cut = false;
        while first < self.records && !cut {
            let n = SCAN_BATCH.min(self.records - first);
            let mut buf = vec![0u8; rs * n as usize];
            let mut phys = Vec::new();
            let got = match self.read_mft(first * rs as u64, &mut buf, &mut phys) {
                Ok(g) => g,
                Err(e) => {
                    problems.push(Problem::from(&e));
                    0
                }
            };
            for i in 0..n {
                let id = first + i;
                let start = i as usize * rs;
                if start + rs > got {
                    problems.push(Problem {
                        at: format!("MFT record {id}"),
                        what: format!(
                            "records {id} to {} lie past the volume's end or outside the MFT's runs",
                            self.records - 1
                        ),
                    });
                    cut = true;
                    break;
                }
                let rbuf = slice(&buf, start, rs).to_vec();
                let mut state = State::default();
                if slice(&rbuf, 0, 4) == [0, 0, 0, 0] {
                    // Never written: nothing to read, nothing wrong.
                    states.push(state);
                    continue;
                }
                let rphys: Vec<(usize, u64, usize)> = phys
                    .iter()
                    .filter_map(|&(o, p, l)| {
                        let (s, e) = (o.max(start), (o + l).min(start + rs));
                        (s < e).then(|| (s - start, p + (s - o) as u64, e - s))
                    })
                    .collect();
                let file = self
                    .record_from(id, rbuf, rphys)
                    .and_then(|rec| self.load_from(rec));
                match file {
                    Ok(f) => {
                        state.readable = true;
                        state.allocated = f.allocated();
                        state.used = !f.attrs.is_empty();
                        state.dir = f.is_dir();
                        state.extension = f.base().is_some_and(|r| r.base_ref() != 0);
                        if !state.extension {
                            for name in f.names() {
                                parent_map
                                    .entry((name.parent, name.parent_seq))
                                    .or_default()
                                    .push(Child {
                                        id,
                                        name: name.name,
                                        allocated: state.allocated,
                                    });
                            }
                        }
                    }
                    Err(e) => problems.push(Problem::from(&e)),
                }
                states.push(state);
            }
            first += n;
        }
        self.states = states;
        self.parent_map = parent_map;
        self.problems.extend(problems);
    }

    fn state(&self, id: u64) -> State {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.states.get(i))
            .copied()
            .unwrap_or_default()
    }

    fn node_of(&self, f: &File) -> Node {
        let mut times = Times::default();
        let mut mode = 0;
        let mut uid = 0;
        if let Some(a) = f.find(ATTR_SI, &[]).next()
            && let Body::Resident { rec, off, len } = a.body
            && len >= 48
            && let Some(r) = f.records.get(rec)
        {
            let v = slice(&r.buf, off, len);
            times = Times {
                born: Some(nt_time(le64(v, 0))),
                modified: Some(nt_time(le64(v, 8))),
                changed: Some(nt_time(le64(v, 16))),
                accessed: Some(nt_time(le64(v, 24))),
                deleted: None,
            };
            let dos = le32(v, 32);
            mode = 0o111;
            if dos & SI_READ_ONLY == 0 {
                mode |= 0o444;
            }
            if dos & SI_HIDDEN == 0 {
                mode |= 0o222;
            }
            // TSK reads the owner id at byte 48 of the value even when the
            // value is the 48-byte NTFS 1.2 form, so it reads what follows
            // in the record; done alike, so the bodyfiles agree.
            uid = le32(&r.buf, off + 48);
        }
        // TSK prints the times of the last name it read.
        let name_times = f.names().pop().map(|n| n.times);
        Node {
            id: f.id,
            kind: if f.is_dir() { Kind::Dir } else { Kind::File },
            mode,
            uid,
            gid: 0,
            size: self.listed_size(f),
            links: u32::from(f.base().map_or(0, Record::links)),
            allocated: f.allocated(),
            times,
            name_times,
        }
    }

    /// The size TSK prints: the unnamed `$DATA`'s, else the `$I30` index
    /// root's, else 0.
    fn listed_size(&self, f: &File) -> u64 {
        let data: Vec<&Attr> = f.find(ATTR_DATA, &[]).collect();
        if let Some(a) = data
            .iter()
            .find(|a| !matches!(a.body, Body::NonResident { start_vcn, .. } if start_vcn != 0))
        {
            return match a.body {
                Body::Resident { len, .. } => len as u64,
                Body::NonResident { data_size, .. } => data_size,
            };
        }
        if let Some(a) = f.find(ATTR_INDEX_ROOT, &i30()).next() {
            return f.value(a).len() as u64;
        }
        0
    }

    fn late_problem(&self, p: Problem) {
        if let Ok(mut late) = self.late.lock() {
            late.push(p);
        }
    }

    /// A directory's names, as TSK lists them.
    fn list(&self, dir: u64) -> Result<Vec<Entry>, FsError> {
        let f = self.load(dir)?;
        let at = format!("directory MFT record {dir}");
        if !f.is_dir() {
            return Err(FsError::corrupt(at, "not a directory"));
        }
        let mut out = DirList::default();
        let deleted_dir = !f.allocated();
        let i30 = i30();
        let root = f
            .find(ATTR_INDEX_ROOT, &i30)
            .next()
            .ok_or_else(|| FsError::corrupt(&at, "no $INDEX_ROOT"))?;
        let v = f.value(root);
        if v.len() < 32 {
            return Err(FsError::corrupt(&at, "the $INDEX_ROOT is too short"));
        }
        if le32(v, 0) != ATTR_FILE_NAME {
            return Err(FsError::corrupt(
                &at,
                format!(
                    "the index is sorted by attribute type 0x{:x}, not $FILE_NAME",
                    le32(v, 0)
                ),
            ));
        }
        let begin = le32(v, 16) as usize;
        let used = le32(v, 20) as usize;
        let alloc = le32(v, 24) as usize;
        if used < begin || alloc < used || 16usize.saturating_add(alloc) > v.len() {
            return Err(FsError::corrupt(
                &at,
                "the $INDEX_ROOT's entry offsets are invalid",
            ));
        }
        let list = slice(v, 16 + begin, alloc - begin);
        self.entries(&mut out, list, used - begin, deleted_dir);

        let parts: Vec<&Attr> = f.find(ATTR_INDEX_ALLOCATION, &i30).collect();
        if !parts.is_empty() {
            match read_attr(
                self.volume.as_ref(),
                self.geo,
                &f,
                &parts,
                MAX_INDEX_BYTES,
                &at,
            ) {
                Ok(mut buf) => self.index_blocks(&mut out, &mut buf, deleted_dir, &at),
                Err(e) => self.late_problem(Problem::from(&e)),
            }
        }

        // Every record whose $FILE_NAME names this directory at its
        // sequence number (the one before, for a deleted directory, since
        // NTFS bumps it on delete).
        let seq = if deleted_dir {
            f.seq().saturating_sub(1)
        } else {
            f.seq()
        };
        if let Some(children) = self.parent_map.get(&(dir, seq)) {
            for c in children {
                out.add(Entry {
                    name: c.name.clone(),
                    id: c.id,
                    kind: Some(Kind::Unknown),
                    deleted: !c.allocated,
                });
            }
        }
        Ok(out
            .entries
            .into_iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .collect())
    }

    /// Scans an `$INDEX_ALLOCATION` for index blocks, slack included, as
    /// TSK does (so names deleted from the tree are found).
    fn index_blocks(&self, out: &mut DirList, buf: &mut [u8], deleted_dir: bool, at: &str) {
        let step = usize::try_from(self.geo.cluster)
            .unwrap_or(usize::MAX)
            .min(self.geo.index_record)
            .max(STRIDE);
        let starts: Vec<usize> = (0..buf.len())
            .step_by(step)
            .filter(|&o| slice(buf, o, 4) == b"INDX")
            .collect();
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(buf.len());
            let Some(block) = buf.get_mut(start..end) else {
                continue;
            };
            let vcn_at = format!("{at} index block at byte {start}");
            // The update sequence covers only the index record itself.
            let rec_len = block.len().min(self.geo.index_record);
            let Some(rec) = block.get_mut(..rec_len) else {
                continue;
            };
            if let Err(e) = fixup(rec, &vcn_at) {
                self.late_problem(Problem::from(&e));
                continue;
            }
            let begin = le32(block, 24) as usize;
            let used = le32(block, 28) as usize;
            let list_at = 24usize.saturating_add(begin);
            if list_at > block.len() || used < begin || 24usize.saturating_add(used) > block.len() {
                self.late_problem(Problem {
                    at: vcn_at,
                    what: "the index block's entry offsets are invalid".into(),
                });
                continue;
            }
            let list = slice(block, list_at, block.len() - list_at);
            self.entries(out, list, used - begin, deleted_dir);
        }
    }

    /// Index entries from a node's list, past its used length too (TSK's
    /// checks decide which slack bytes are a deleted entry).
    fn entries(&self, out: &mut DirList, list: &[u8], used: usize, deleted_dir: bool) {
        let mut pos = 0usize;
        let last = self.records;
        // Each step moves on by at least 4 bytes.
        while pos + 16 + 68 < list.len() {
            let e = slice(list, pos, list.len() - pos);
            let file_ref = le64(e, 0) & 0xFFFF_FFFF_FFFF;
            let idxlen = usize::from(le16(e, 8));
            let strlen = usize::from(le16(e, 10));
            if file_ref > last || idxlen <= strlen || idxlen % 4 != 0 || idxlen > list.len() {
                pos += 4;
                continue;
            }
            let fname = slice(e, 16, e.len() - 16);
            let nspace = u8_at(fname, 65);
            let nlen = usize::from(u8_at(fname, 64));
            let past_used = pos + idxlen > used;
            if strlen == 0 || past_used {
                let plausible = nspace <= 3
                    && le64(fname, 40) >= le64(fname, 48)
                    && nlen != 0
                    && u8_at(fname, 66) != 0
                    && is_time(le64(fname, 8))
                    && is_time(le64(fname, 32))
                    && is_time(le64(fname, 16));
                if !plausible {
                    pos += 4;
                    continue;
                }
            }
            if nspace != NS_DOS && out.entries.len() < MAX_DIR_ENTRIES {
                let raw = slice(fname, 66, nlen * 2);
                out.add(Entry {
                    name: utf16_name(raw),
                    id: file_ref,
                    kind: Some(if le32(fname, 56) & FN_FLAG_DIR != 0 {
                        Kind::Dir
                    } else {
                        Kind::File
                    }),
                    deleted: deleted_dir || strlen == 0 || past_used,
                });
            }
            pos = if strlen == 0 {
                (pos + 16 + 66 + 2 * nlen).div_ceil(4) * 4
            } else {
                pos + idxlen
            };
        }
    }

    fn extents_of(&self, f: &File) -> Result<Vec<Extent>, FsError> {
        let at = format!("MFT record {}", f.id);
        let parts: Vec<&Attr> = f.find(ATTR_DATA, &[]).collect();
        let Some(first) = parts.first() else {
            return Ok(Vec::new());
        };
        if first.flags & FLAG_ENCRYPTED != 0 {
            return Err(FsError::Unsupported {
                at,
                what: "encrypted data".into(),
            });
        }
        match first.body {
            Body::Resident { rec, off, len } => {
                let r = f.records.get(rec).ok_or_else(|| {
                    FsError::corrupt(&at, "the record of a resident value is gone")
                })?;
                resident_extents(r, off, len)
            }
            Body::NonResident { .. } => {
                let base = parts
                    .iter()
                    .find_map(|a| match a.body {
                        Body::NonResident {
                            start_vcn: 0,
                            data_size,
                            init_size,
                            ..
                        } => Some((data_size, init_size, a.flags)),
                        _ => None,
                    })
                    .ok_or_else(|| FsError::corrupt(&at, "the $DATA has no first segment"))?;
                let (size, init, flags) = base;
                // The flag says compressed, not the compression unit, which
                // ntfs-3g gives sparse files too.
                if flags & FLAG_COMPRESSED != 0 {
                    return Err(FsError::Unsupported {
                        at,
                        what: "compressed data".into(),
                    });
                }
                let (runs, _) = merged_runs(&parts);
                self.run_extents(&runs, size, init.min(size), &at)
            }
        }
    }

    fn run_extents(
        &self,
        runs: &[Run],
        size: u64,
        init: u64,
        at: &str,
    ) -> Result<Vec<Extent>, FsError> {
        let cl = self.geo.cluster;
        let vol = self.volume.size();
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |x: Extent| {
            if x.len == 0 {
                return;
            }
            if let Some(last) = out.last_mut()
                && last.logical + last.len == x.logical
            {
                match (last.physical, x.physical) {
                    (None, None) => {
                        last.len += x.len;
                        return;
                    }
                    (Some(a), Some(b)) if a + last.len == b => {
                        last.len += x.len;
                        return;
                    }
                    _ => {}
                }
            }
            out.push(x);
        };
        let mut covered = 0u64;
        for r in runs {
            let start = r.vcn.saturating_mul(cl);
            if start >= size {
                break;
            }
            if start != covered {
                return Err(FsError::corrupt(
                    at,
                    format!("the data runs skip or overlap at byte {covered} of the file"),
                ));
            }
            let len = r.len.saturating_mul(cl).min(size - start);
            covered = start + len;
            match r.lcn {
                None => push(Extent {
                    logical: start,
                    physical: None,
                    len,
                }),
                Some(lcn) => {
                    let phys = lcn.saturating_mul(cl);
                    if phys.saturating_add(len) > vol {
                        return Err(FsError::corrupt(
                            at,
                            format!("a data run at cluster {lcn} lies past the volume's end"),
                        ));
                    }
                    // Past the initialized size the file reads as zeros.
                    let real = len.min(init.saturating_sub(start));
                    push(Extent {
                        logical: start,
                        physical: Some(phys),
                        len: real,
                    });
                    push(Extent {
                        logical: start + real,
                        physical: None,
                        len: len - real,
                    });
                }
            }
        }
        if covered < size {
            return Err(FsError::corrupt(
                at,
                format!("the data runs end at byte {covered} of a {size}-byte file"),
            ));
        }
        Ok(out)
    }

    /// Unallocated records with readable metadata that no walked directory
    /// names, as TSK finds them.
    fn find_orphans(&self) -> Vec<u64> {
        // Every unallocated record a name reaches, walking as the walk does.
        let mut named: HashSet<u64> = HashSet::new();
        let mut walked: HashSet<u64> = HashSet::from([5]);
        let mut todo = vec![5u64];
        let mut steps = 0usize;
        while let Some(d) = todo.pop() {
            steps += 1;
            if steps > self.states.len() + 16 {
                break;
            }
            let Ok(entries) = self.list(d) else { continue };
            for e in entries {
                let st = self.state(e.id);
                if st.readable && !st.allocated {
                    named.insert(e.id);
                }
                if self.is_dir_record(e.id) && (!e.deleted || !st.allocated) && walked.insert(e.id)
                {
                    todo.push(e.id);
                }
            }
        }
        let mut orphans = Vec::new();
        let mut under_orphan: HashSet<u64> = HashSet::new();
        for (i, st) in self.states.iter().enumerate() {
            let id = i as u64;
            if !st.readable
                || st.allocated
                || !st.used
                || named.contains(&id)
                || under_orphan.contains(&id)
            {
                continue;
            }
            orphans.push(id);
            if self.is_dir_record(id) {
                // What an orphaned directory still lists is reached through
                // it, not listed again at the top.
                let mut stack = vec![id];
                let mut seen = HashSet::from([id]);
                while let Some(d) = stack.pop() {
                    let Ok(entries) = self.list(d) else { continue };
                    for e in entries {
                        let st = self.state(e.id);
                        if st.allocated || !e.deleted {
                            continue;
                        }
                        under_orphan.insert(e.id);
                        if self.is_dir_record(e.id) && seen.insert(e.id) {
                            stack.push(e.id);
                        }
                    }
                }
            }
        }
        orphans.retain(|id| !under_orphan.contains(id));
        orphans
    }

    fn is_dir_record(&self, id: u64) -> bool {
        let st = self.state(id);
        st.readable && st.dir
    }
}

/// TSK's plausibility check of a time in a deleted index entry: after 1970
/// and before 2020 (its bound, kept so the listings agree).
fn is_time(t: u64) -> bool {
    const SEC_1601_1970_DIV100: u64 = (369 * 365 + 89) * 24 * 36;
    const SEC_1601_2020_DIV100: u64 = SEC_1601_1970_DIV100 + (50 * 365 + 6) * 24 * 36;
    let t = t / 1_000_000_000;
    t != 0 && (SEC_1601_1970_DIV100..=SEC_1601_2020_DIV100).contains(&t)
}

/// A directory's names without duplicates: a name already listed for the
/// same record is kept, unless the new one is allocated and it was not.
#[derive(Default)]
struct DirList {
    entries: Vec<Entry>,
}

impl DirList {
    fn add(&mut self, e: Entry) {
        if let Some(old) = self
            .entries
            .iter_mut()
            .find(|o| o.id == e.id && o.name == e.name)
        {
            if old.deleted && !e.deleted {
                *old = e;
            }
            return;
        }
        self.entries.push(e);
    }
}

/// The bytes `off..off + len` of a record in the volume, with the two
/// bytes at each stride end read from the update sequence array, where
/// the fixup keeps their true value.
fn resident_extents(r: &Record, off: usize, len: usize) -> Result<Vec<Extent>, FsError> {
    let at = format!("MFT record {}", r.id);
    let mut out: Vec<Extent> = Vec::new();
    let end = off.saturating_add(len);
    let mut o = off;
    while o < end {
        // The stretch up to the next fixed-up pair, or the pair itself.
        let k = o / STRIDE + 1;
        let pair = k * STRIDE - 2;
        let (src, n) = if k < r.usa_count && o >= pair {
            (r.usa_off + 2 * k + (o - pair), (pair + 2 - o).min(end - o))
        } else if k < r.usa_count {
            (o, pair.min(end) - o)
        } else {
            (o, end - o)
        };
        // Split again where the record's bytes change place in the volume.
        let mut done = 0;
        while done < n {
            let s = src + done;
            let (phys, room) = r
                .phys
                .iter()
                .find_map(|&(ro, p, l)| {
                    (s >= ro && s < ro + l).then(|| (p + (s - ro) as u64, ro + l - s))
                })
                .ok_or_else(|| FsError::corrupt(&at, "a resident value lies outside the record"))?;
            let m = room.min(n - done);
            let logical = (o + done - off) as u64;
            if let Some(last) = out.last_mut()
                && last.logical + last.len == logical
                && last.physical.map(|p| p + last.len) == Some(phys)
            {
                last.len += m as u64;
            } else {
                out.push(Extent {
                    logical,
                    physical: Some(phys),
                    len: m as u64,
                });
            }
            done += m;
        }
        o += n;
    }
    Ok(out)
}

impl FileSystem for Ntfs {
    fn kind(&self) -> &'static str {
        "ntfs"
    }

    fn root(&self) -> u64 {
        5
    }

    fn node(&self, id: u64) -> Result<Node, FsError> {
        let f = self.load(id)?;
        Ok(self.node_of(&f))
    }

    fn read_dir(&self, dir: u64) -> Result<Vec<Entry>, FsError> {
        self.list(dir)
    }

    fn extents(&self, id: u64) -> Result<Vec<Extent>, FsError> {
        let f = self.load(id)?;
        self.extents_of(&f)
    }

    fn orphans(&self, _named: &HashSet<u64>) -> Result<Vec<u64>, FsError> {
        // Unallocated MFT records are told by their own flags, not by names.
        Ok(self.orphans.get_or_init(|| self.find_orphans()).clone())
    }

    fn problems(&self) -> Vec<Problem> {
        let mut p = self.problems.clone();
        if let Ok(late) = self.late.lock() {
            p.extend(late.iter().cloned());
        }
        p
    }

    fn volume(&self) -> &Arc<dyn ReadAt> {
        &self.volume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_decode_with_negative_and_sparse_deltas() {
        // 0x21: 1-byte length, 2-byte offset; 0x01: sparse; 0x11 negative.
        let b = [0x21, 0x10, 0x00, 0x01, 0x01, 0x08, 0x11, 0x04, 0xF0, 0x00];
        let runs = decode_runs(&b, 0, "t").unwrap();
        assert_eq!(
            runs,
            [
                Run {
                    vcn: 0,
                    len: 16,
                    lcn: Some(256)
                },
                Run {
                    vcn: 16,
                    len: 8,
                    lcn: None
                },
                Run {
                    vcn: 24,
                    len: 4,
                    lcn: Some(240)
                },
            ]
        );
        assert!(decode_runs(&[0x90, 0, 0], 0, "t").is_err());
    }

    #[test]
    fn resident_data_across_a_stride_end_points_at_the_saved_bytes() {
        let mut buf = vec![0u8; 1024];
        buf[4] = 48; // usa at 48
        buf[6] = 3; // usn + 2 entries
        let r = Record {
            id: 7,
            buf,
            phys: vec![(0, 10_000, 1024)],
            usa_off: 48,
            usa_count: 3,
        };
        let x = resident_extents(&r, 500, 20).unwrap();
        assert_eq!(
            x,
            [
                Extent {
                    logical: 0,
                    physical: Some(10_500),
                    len: 10
                },
                Extent {
                    logical: 10,
                    physical: Some(10_050),
                    len: 2
                },
                Extent {
                    logical: 12,
                    physical: Some(10_512),
                    len: 8
                },
            ]
        );
    }

    #[test]
    fn zero_times_convert_as_tsk_does() {
        assert_eq!(nt_time(0).secs, 3_373_865_674);
        assert_eq!(nt_time(NT_EPOCH_DIFF + 10_000_000).secs, 1);
    }
}
