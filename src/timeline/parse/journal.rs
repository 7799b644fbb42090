//! systemd journal files, read in their binary format (systemd's
//! `JOURNAL_FILE_FORMAT`): the header, the global chain of entry arrays, each
//! entry and the DATA objects it lists (`FIELD=value`, binary-safe,
//! compressed with XZ, LZ4 or ZSTD), in the regular and the compact layout.
//!
//! Every offset and size is checked against the file and the object it
//! should point at. A broken chain of entry arrays is read past by walking
//! the objects in file order; a file cut short (a crash, a partial copy)
//! yields every whole entry before the cut and a problem naming the byte.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::io::{self, Read};
use std::rc::Rc;

use custody_disk::bytes::{le32, le64, slice, u8_at};

use super::{Record, Sink, host, problem};
use crate::timeline::Event;

const SOURCE: &str = "journal";
const SIGNATURE: &[u8] = b"LPKSHHRH";
/// The header fields every version has, through `tail_entry_monotonic`.
const MIN_HEADER: u64 = 208;
const OBJECT_HEADER: u64 = 16;

const INCOMPATIBLE_XZ: u32 = 1;
const INCOMPATIBLE_LZ4: u32 = 1 << 1;
const INCOMPATIBLE_KEYED_HASH: u32 = 1 << 2;
const INCOMPATIBLE_ZSTD: u32 = 1 << 3;
const INCOMPATIBLE_COMPACT: u32 = 1 << 4;
const INCOMPATIBLE_KNOWN: u32 = INCOMPATIBLE_XZ
    | INCOMPATIBLE_LZ4
    | INCOMPATIBLE_KEYED_HASH
    | INCOMPATIBLE_ZSTD
    | INCOMPATIBLE_COMPACT;

const OBJECT_DATA: u8 = 1;
const OBJECT_ENTRY: u8 = 3;
const OBJECT_ENTRY_ARRAY: u8 = 6;

const COMPRESSED_XZ: u8 = 1;
const COMPRESSED_LZ4: u8 = 1 << 1;
const COMPRESSED_ZSTD: u8 = 1 << 2;
const COMPRESSED: u8 = COMPRESSED_XZ | COMPRESSED_LZ4 | COMPRESSED_ZSTD;

/// ENTRY: object header, seqnum, realtime, monotonic, boot id, xor hash.
const ENTRY_ITEMS: u64 = 64;
/// DATA: object header and six 64-bit fields; compact files add two 32-bit ones.
const DATA_PAYLOAD: u64 = 64;
const DATA_PAYLOAD_COMPACT: u64 = 72;
/// ENTRY_ARRAY: object header and the next array's offset.
const ARRAY_ITEMS: u64 = 24;

/// journald caps field names at 64 bytes: the `=` is within the first 65.
const NAME_MAX: usize = 65;
/// A compressed field read only for its name still costs its decoder a
/// block's work: charged against the budget as this many bytes, so that a
/// file of many tiny payloads that each expand far cannot take unbounded time.
const PREFIX_COST: u64 = 16 << 10;
/// LZ4 blocks expand at most about 255 times.
const LZ4_MAX_RATIO: u64 = 255;

/// The fields an event keeps, in the order its attributes list them; the
/// message, identifier and uid are read for the event's other fields.
const ATTRIBUTES: [&str; 10] = [
    "_HOSTNAME",
    "_PID",
    "_COMM",
    "_EXE",
    "_CMDLINE",
    "_SYSTEMD_UNIT",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "_BOOT_ID",
    "_TRANSPORT",
];
const COMM: usize = 2;
const IDENTIFIER: usize = 7;
const MESSAGE: usize = ATTRIBUTES.len();
const UID: usize = ATTRIBUTES.len() + 1;
const FIELDS: usize = ATTRIBUTES.len() + 2;

fn field_index(name: &[u8]) -> Option<usize> {
    match name {
        b"MESSAGE" => Some(MESSAGE),
        b"_UID" => Some(UID),
        _ => ATTRIBUTES.iter().position(|a| a.as_bytes() == name),
    }
}

/// Every entry of a journal file: the header's chain of entry arrays, then
/// (where the chain breaks) the entries found walking the objects in file order.
pub fn journal(bytes: &[u8], sink: &mut dyn Sink) {
    let Some(mut j) = Journal::open(bytes, sink) else {
        return;
    };
    let chain = j.chain(sink);
    if j.stopped {
        return;
    }
    let walk_from = match chain {
        Chain::Whole => {
            if j.read < j.n_entries {
                sink.problem(problem(
                    format!("byte {}", j.entry_array_offset),
                    format!(
                        "the chain of entry arrays lists {} entries but the header counts {}; \
                         looking for the others in file order",
                        j.read, j.n_entries
                    ),
                ));
                j.last_end
            } else {
                return;
            }
        }
        Chain::Broken { at, why } => {
            sink.problem(problem(
                format!("byte {at}"),
                format!("the chain of entry arrays is broken: {why}; reading the remaining entries in file order"),
            ));
            j.last_end
        }
    };
    j.walk(walk_from, sink);
}

enum Chain {
    Whole,
    Broken { at: u64, why: String },
}

/// A field the event keeps: its index and its value.
type Kept<'a> = (usize, Cow<'a, [u8]>);

/// Why an object could not be read.
enum Fault {
    /// The file ends inside it.
    Cut,
    Bad(String),
}

/// A compressed DATA object already decoded: its field, and its value when kept.
#[derive(Clone)]
struct Decoded {
    field: Option<usize>,
    value: Option<Rc<[u8]>>,
}

struct Journal<'a> {
    bytes: &'a [u8],
    len: u64,
    header_size: u64,
    compact: bool,
    seqnum_id: String,
    entry_array_offset: u64,
    n_entries: u64,
    /// Bytes still allowed for decompression and for copies into events.
    budget: u64,
    /// The end of the last entry read: entries never overlap, and the walk
    /// in file order resumes from here.
    last_end: u64,
    read: u64,
    /// Set once the budget runs out or the file's end is reached inside an entry.
    stopped: bool,
    decoded: HashMap<u64, Decoded>,
}

impl<'a> Journal<'a> {
    fn open(bytes: &'a [u8], sink: &mut dyn Sink) -> Option<Self> {
        if bytes.get(..SIGNATURE.len()) != Some(SIGNATURE) {
            sink.problem(problem(
                "byte 0",
                "not a journal file: no LPKSHHRH signature",
            ));
            return None;
        }
        let len = bytes.len() as u64;
        let header_size = le64(bytes, 88);
        if header_size < MIN_HEADER || header_size > len || !header_size.is_multiple_of(8) {
            sink.problem(problem(
                "byte 88",
                format!("the header size {header_size} is impossible for a file of {len} bytes"),
            ));
            return None;
        }
        let incompatible = le32(bytes, 12);
        if incompatible & !INCOMPATIBLE_KNOWN != 0 {
            sink.problem(problem(
                "byte 12",
                format!(
                    "unknown incompatible flags {:#x}: a newer journal format, read as far as the known layout allows",
                    incompatible & !INCOMPATIBLE_KNOWN
                ),
            ));
        }
        let arena_end = header_size.saturating_add(le64(bytes, 96));
        if arena_end > len {
            let tail = le64(bytes, 136);
            let lost = if tail >= len {
                format!("its last object, at byte {tail}, lies past the cut")
            } else {
                format!("its last object is at byte {tail}")
            };
            sink.problem(problem(
                format!("byte {len}"),
                format!(
                    "the file ends at byte {len} but its header says it runs to byte {arena_end} \
                     ({lost}): cut short by a crash or a partial copy; reading every whole entry before the cut"
                ),
            ));
        }
        let limits = sink.inflate_limits();
        Some(Self {
            bytes,
            len,
            header_size,
            compact: incompatible & INCOMPATIBLE_COMPACT != 0,
            seqnum_id: hex(slice(bytes, 72, 16)),
            entry_array_offset: le64(bytes, 176),
            n_entries: le64(bytes, 152),
            budget: limits.budget(len),
            last_end: 0,
            read: 0,
            stopped: false,
            decoded: HashMap::new(),
        })
    }

    /// The object of type `kind` at `at`, whole, at least `min` bytes long.
    fn object(&self, at: u64, kind: u8, min: u64) -> Result<(u8, &'a [u8]), Fault> {
        if !at.is_multiple_of(8) {
            return Err(Fault::Bad(format!("byte {at} is not 8-byte aligned")));
        }
        if at < self.header_size {
            return Err(Fault::Bad(format!("byte {at} lies inside the header")));
        }
        if at.saturating_add(OBJECT_HEADER) > self.len {
            return Err(Fault::Cut);
        }
        let start = usize::try_from(at).map_err(|_| Fault::Cut)?;
        let found = u8_at(self.bytes, start);
        if found != kind {
            return Err(Fault::Bad(format!(
                "the object at byte {at} is of type {found}, not {kind}"
            )));
        }
        let size = le64(self.bytes, start + 8);
        if size < min {
            return Err(Fault::Bad(format!(
                "the object at byte {at} is {size} bytes, too small for its type"
            )));
        }
        if at.saturating_add(size) > self.len {
            return Err(Fault::Cut);
        }
        let size = usize::try_from(size).map_err(|_| Fault::Cut)?;
        Ok((u8_at(self.bytes, start + 1), slice(self.bytes, start, size)))
    }

    /// Reads the entries the header's chain of entry arrays lists.
    fn chain(&mut self, sink: &mut dyn Sink) -> Chain {
        let mut at = self.entry_array_offset;
        if at == 0 {
            return if self.n_entries == 0 {
                Chain::Whole
            } else {
                Chain::Broken {
                    at: 176,
                    why: format!(
                        "the header counts {} entries but lists no entry array",
                        self.n_entries
                    ),
                }
            };
        }
        let item = if self.compact { 4 } else { 8 };
        // Arrays are appended as the file grows: each lies past the one
        // before, which also ends any loop.
        let mut previous = 0u64;
        while at != 0 {
            if at <= previous {
                return Chain::Broken {
                    at: previous,
                    why: format!("the entry array at byte {previous} points back to byte {at}"),
                };
            }
            let array = match self.object(at, OBJECT_ENTRY_ARRAY, ARRAY_ITEMS) {
                Ok((_, array)) => array,
                Err(Fault::Cut) => {
                    return Chain::Broken {
                        at,
                        why: format!(
                            "the entry array at byte {at} lies past the end of the file (byte {})",
                            self.len
                        ),
                    };
                }
                Err(Fault::Bad(why)) => return Chain::Broken { at, why },
            };
            let next = le64(array, 16);
            let items = array.get(ARRAY_ITEMS as usize..).unwrap_or_default();
            for (i, raw) in items.chunks_exact(item).enumerate() {
                let entry = if self.compact {
                    u64::from(le32(raw, 0))
                } else {
                    le64(raw, 0)
                };
                // Unused slots of an array not yet full.
                if entry == 0 {
                    continue;
                }
                if entry >= self.len {
                    return Chain::Broken {
                        at,
                        why: format!(
                            "item {i} of the entry array at byte {at} points at byte {entry}, past the end of the file (byte {})",
                            self.len
                        ),
                    };
                }
                if entry < self.last_end {
                    sink.problem(problem(
                        format!("entry at byte {entry}"),
                        format!("item {i} of the entry array at byte {at} points back inside an entry already read; skipped"),
                    ));
                    continue;
                }
                self.entry(entry, sink);
                if self.stopped {
                    return Chain::Whole;
                }
            }
            previous = at;
            at = next;
        }
        Chain::Whole
    }

    /// Walks the objects in file order from `from`, reading every entry.
    fn walk(&mut self, from: u64, sink: &mut dyn Sink) {
        let mut at = from.max(self.header_size).next_multiple_of(8);
        while !self.stopped {
            let Some(start) = usize::try_from(at).ok().filter(|_| at < self.len) else {
                return;
            };
            let rest = slice(self.bytes, start, OBJECT_HEADER as usize);
            if (rest.len() as u64) < OBJECT_HEADER {
                if rest.iter().any(|&b| b != 0) {
                    sink.problem(problem(
                        format!("byte {at}"),
                        format!("the file ends at byte {} inside an object header", self.len),
                    ));
                }
                return;
            }
            let kind = u8_at(self.bytes, start);
            let size = le64(self.bytes, start + 8);
            // Past the last object a file is zeros (its arena is preallocated).
            if kind == 0 && size == 0 {
                return;
            }
            if size < OBJECT_HEADER {
                sink.problem(problem(
                    format!("byte {at}"),
                    format!("the object at byte {at} claims {size} bytes: the objects after it cannot be found"),
                ));
                return;
            }
            let end = at.saturating_add(size);
            if end > self.len {
                sink.problem(problem(
                    format!("byte {at}"),
                    format!(
                        "the file ends at byte {} inside the object at byte {at} (type {kind}, {size} bytes): cut short",
                        self.len
                    ),
                ));
                return;
            }
            if kind == OBJECT_ENTRY {
                self.entry(at, sink);
            }
            at = end.next_multiple_of(8);
        }
    }

    /// Reads the entry at `at` into an event.
    fn entry(&mut self, at: u64, sink: &mut dyn Sink) {
        let locator = format!("entry at byte {at}");
        let entry = match self.object(at, OBJECT_ENTRY, ENTRY_ITEMS) {
            Ok((_, entry)) => entry,
            Err(Fault::Cut) => {
                sink.problem(problem(
                    locator,
                    format!(
                        "the file ends at byte {} inside this entry: cut short",
                        self.len
                    ),
                ));
                self.stopped = true;
                return;
            }
            Err(Fault::Bad(why)) => {
                sink.problem(problem(locator, why));
                return;
            }
        };
        self.last_end = at.saturating_add(entry.len() as u64);
        self.read += 1;
        let seqnum = le64(entry, 16);
        let realtime = le64(entry, 24);
        let boot_id = hex(slice(entry, 40, 16));
        let mut fields: [Option<Cow<'a, [u8]>>; FIELDS] = Default::default();
        let item = if self.compact { 4 } else { 16 };
        let items = entry.get(ENTRY_ITEMS as usize..).unwrap_or_default();
        for (i, raw) in items.chunks_exact(item).enumerate() {
            let data = if self.compact {
                u64::from(le32(raw, 0))
            } else {
                le64(raw, 0)
            };
            if data == 0 {
                continue;
            }
            match self.data(data, &fields) {
                Ok(Some((k, value))) => {
                    if let Some(slot) = fields.get_mut(k) {
                        *slot = Some(value);
                    }
                }
                Ok(None) => {}
                Err(why) => sink.problem(problem(
                    locator.clone(),
                    format!("item {i}, the data object at byte {data}: {why}"),
                )),
            }
            if self.stopped {
                sink.problem(problem(
                    locator,
                    format!(
                        "the decompression budget of this file ({} bytes, decompress.max_ratio and decompress.max_mib in custody.toml) \
                         is spent: no entry from here on is read",
                        sink.inflate_limits().budget(self.len)
                    ),
                ));
                return;
            }
        }
        let Ok(time_us) = i64::try_from(realtime) else {
            sink.problem(problem(
                locator,
                format!("realtime {realtime} µs is past any date"),
            ));
            return;
        };
        let text = |k: usize| {
            fields
                .get(k)
                .and_then(Option::as_ref)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let identifier = text(IDENTIFIER);
        let name = identifier.clone().or_else(|| text(COMM));
        let mut e = Event::new(
            time_us,
            SOURCE,
            format!("{}.log", name.as_deref().unwrap_or("journal")),
        );
        let message = text(MESSAGE).unwrap_or_default();
        match identifier.as_deref() {
            Some("sshd" | "sshd-session") => host::sshd(&mut e, &message),
            Some("sudo") => host::sudo(&mut e, &message),
            Some("su") => host::su(&mut e, &message),
            Some("useradd") => host::useradd(&mut e, &message),
            _ => {}
        }
        e.message = message;
        if e.actor.is_none() {
            e.actor = text(UID)
                .and_then(|u| u.trim().parse::<u64>().ok())
                .map(|u| format!("uid {u}"));
        }
        e.record_id = Some(format!("s={};i={seqnum:x}", self.seqnum_id));
        let recognised = std::mem::take(&mut e.attributes);
        for (k, name) in ATTRIBUTES.iter().enumerate() {
            // The entry's own boot id is the one its timestamps belong to.
            let value = if *name == "_BOOT_ID" {
                Some(boot_id.clone())
            } else {
                text(k)
            };
            if let Some(v) = value {
                e.attributes.push(((*name).to_owned(), v));
            }
        }
        e.attributes.extend(recognised);
        e.locator = locator;
        // The entry object: its sequence number, times, boot id, the hash
        // of its fields and their places.
        sink.record(e, Record::bytes(entry));
    }

    /// The field of the DATA object at `at`, with its value when the event
    /// keeps it and `have` does not hold one yet (the first value wins).
    fn data(
        &mut self,
        at: u64,
        have: &[Option<Cow<'a, [u8]>>; FIELDS],
    ) -> Result<Option<Kept<'a>>, String> {
        let payload_at = if self.compact {
            DATA_PAYLOAD_COMPACT
        } else {
            DATA_PAYLOAD
        };
        let (flags, object) = match self.object(at, OBJECT_DATA, payload_at) {
            Ok(found) => found,
            Err(Fault::Cut) => {
                return Err(format!(
                    "it lies past the end of the file (byte {})",
                    self.len
                ));
            }
            Err(Fault::Bad(why)) => return Err(why),
        };
        let payload = object.get(payload_at as usize..).unwrap_or_default();
        let kept = |k: usize| have.get(k).is_some_and(Option::is_none);
        if flags & COMPRESSED == 0 {
            let Some(k) = field_of(payload).and_then(|(name, _)| field_index(name)) else {
                return check_name(payload).map(|()| None);
            };
            if !kept(k) {
                return Ok(None);
            }
            let value = payload
                .get(name_len(payload).unwrap_or(0) + 1..)
                .unwrap_or_default();
            self.charge(value.len() as u64);
            return Ok(Some((k, Cow::Borrowed(value))));
        }
        let decoded = match self.decoded.entry(at) {
            Slot::Occupied(o) => o.get().clone(),
            Slot::Vacant(_) => {
                let d = self.decode(flags, payload)?;
                self.decoded.insert(at, d.clone());
                d
            }
        };
        match (decoded.field, decoded.value) {
            (Some(k), Some(value)) if kept(k) => {
                self.charge(value.len() as u64);
                let start = name_len(&value).map_or(0, |n| n + 1);
                Ok(Some((
                    k,
                    Cow::Owned(value.get(start..).unwrap_or_default().to_vec()),
                )))
            }
            _ => Ok(None),
        }
    }

    /// A compressed payload's field, decoded whole only when the event keeps it.
    fn decode(&mut self, flags: u8, payload: &[u8]) -> Result<Decoded, String> {
        let (prefix, work) = inflate(flags, payload, NAME_MAX as u64, self.budget)?;
        self.charge(PREFIX_COST.max(work));
        let Some(k) = field_of(&prefix).and_then(|(name, _)| field_index(name)) else {
            check_name(&prefix)?;
            return Ok(Decoded {
                field: None,
                value: None,
            });
        };
        if self.stopped {
            return Ok(Decoded {
                field: Some(k),
                value: None,
            });
        }
        let (whole, work) = inflate(flags, payload, u64::MAX, self.budget)?;
        self.charge(work);
        Ok(Decoded {
            field: Some(k),
            value: (!self.stopped).then(|| Rc::from(whole)),
        })
    }

    fn charge(&mut self, bytes: u64) {
        if bytes > self.budget {
            self.budget = 0;
            self.stopped = true;
        } else {
            self.budget -= bytes;
        }
    }
}

/// The length of a payload's field name: the bytes before its `=`.
fn name_len(payload: &[u8]) -> Option<usize> {
    slice(payload, 0, NAME_MAX).iter().position(|&b| b == b'=')
}

fn field_of(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = name_len(payload)?;
    Some((payload.get(..n)?, payload.get(n + 1..)?))
}

fn check_name(payload: &[u8]) -> Result<(), String> {
    match name_len(payload) {
        Some(n) if n > 0 => Ok(()),
        _ => Err("its payload is not FIELD=value".into()),
    }
}

/// Up to `cap` bytes of a compressed DATA payload, and how many bytes its
/// decoder produced on the way (never more than `budget`).
fn inflate(flags: u8, payload: &[u8], cap: u64, budget: u64) -> Result<(Vec<u8>, u64), String> {
    let cap_usize = usize::try_from(cap).unwrap_or(usize::MAX);
    match flags & COMPRESSED {
        COMPRESSED_ZSTD => {
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| format!("ZSTD: {e}"))?;
            // The decoder works a block (128 KiB at most) at a time, and its
            // window is bounded by the crate's default (128 MiB).
            match decoder
                .take(cap.min(budget.saturating_add(1)))
                .read_to_end(&mut out)
            {
                Ok(_) => {
                    let n = out.len() as u64;
                    Ok((out, n))
                }
                Err(e) => Err(format!("ZSTD payload damaged: {e}")),
            }
        }
        COMPRESSED_XZ => {
            // The XZ decoder holds its whole output until the end: the
            // chunk headers say how large that is before any is decoded.
            let size = xz_size(payload)?;
            if size > budget {
                return Err(format!(
                    "XZ payload expands to {size} bytes, past the limit"
                ));
            }
            let mut out = Capped {
                out: Vec::new(),
                cap: size,
            };
            let mut input = payload;
            lzma_rs::xz_decompress(&mut input, &mut out)
                .map_err(|e| format!("XZ payload damaged: {e}"))?;
            let mut out = out.out;
            out.truncate(cap_usize);
            Ok((out, size))
        }
        COMPRESSED_LZ4 => {
            // systemd's LZ4: the decoded size (64-bit), then one LZ4 block.
            let size = le64(payload, 0);
            let block = payload.get(8..).unwrap_or_default();
            if size > (block.len() as u64).saturating_mul(LZ4_MAX_RATIO) {
                return Err(format!(
                    "LZ4 payload of {} bytes claims to expand to {size}",
                    block.len()
                ));
            }
            if size > budget {
                return Err(format!(
                    "LZ4 payload expands to {size} bytes, past the limit"
                ));
            }
            let mut out = vec![0u8; usize::try_from(size).map_err(|_| "LZ4 size")?];
            let n = lz4_flex::block::decompress_into(block, &mut out)
                .map_err(|e| format!("LZ4 payload damaged: {e}"))?;
            out.truncate(n.min(cap_usize));
            Ok((out, size))
        }
        both => Err(format!("several compression flags at once ({both:#x})")),
    }
}

/// The decoded size of an XZ stream, from its LZMA2 chunk headers (each
/// names its unpacked size), without decoding it.
fn xz_size(xz: &[u8]) -> Result<u64, String> {
    const MAGIC: &[u8] = b"\xfd7zXZ\0";
    let damaged = |what: &str| format!("XZ payload damaged: {what}");
    if xz.get(..MAGIC.len()) != Some(MAGIC) {
        return Err(damaged("no XZ stream header"));
    }
    let check = match u8_at(xz, 7) & 0x0f {
        0 => 0,
        1 => 4,
        4 => 8,
        10 => 32,
        _ => return Err(damaged("unknown check type")),
    };
    let mut at = 12usize;
    let mut total = 0u64;
    // Every step moves forward by at least one byte: the loops end.
    loop {
        let block = at;
        let header = *xz
            .get(at)
            .ok_or_else(|| damaged("it ends before its index"))?;
        if header == 0 {
            // The index: no more blocks.
            return Ok(total);
        }
        at = at.saturating_add((usize::from(header) + 1) * 4);
        loop {
            let control = *xz
                .get(at)
                .ok_or_else(|| damaged("it ends inside a block"))?;
            let be16 =
                |i: usize| u64::from(u8_at(xz, at + i)) << 8 | u64::from(u8_at(xz, at + i + 1));
            match control {
                0 => {
                    at += 1;
                    break;
                }
                1 | 2 => {
                    let n = be16(1) + 1;
                    total = total.saturating_add(n);
                    at = at.saturating_add(3 + usize::try_from(n).unwrap_or(usize::MAX));
                }
                0x80.. => {
                    let unpacked = (u64::from(control & 0x1f) << 16 | be16(1)) + 1;
                    let packed = be16(3) + 1;
                    let props = usize::from(control >= 0xc0);
                    total = total.saturating_add(unpacked);
                    at = at
                        .saturating_add(5 + props + usize::try_from(packed).unwrap_or(usize::MAX));
                }
                _ => return Err(damaged("an invalid LZMA2 chunk")),
            }
        }
        // Block padding to four bytes, then the block's check.
        at = (block + (at - block).next_multiple_of(4)).saturating_add(check);
    }
}

/// A writer that takes `cap` bytes and then refuses more.
struct Capped {
    out: Vec<u8>,
    cap: u64,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.out.len() as u64);
        if room == 0 {
            return Err(io::Error::other("decompression limit reached"));
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.out.extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::timeline::parse::{Collect, Format, parse_file};

    const JOURNAL_REMOTE: [&str; 2] = [
        "/usr/lib/systemd/systemd-journal-remote",
        "/lib/systemd/systemd-journal-remote",
    ];

    fn journal_remote() -> &'static str {
        JOURNAL_REMOTE
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "systemd-journal-remote is needed (Debian package systemd-journal-remote; \
                     scripts/emulators.sh installs it)"
                )
            })
    }

    /// One field of the export format: text, or length-prefixed binary.
    fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.extend_from_slice(name.as_bytes());
        if value.contains(&b'\n') || value.iter().any(|&b| b < 0x20 && b != b'\t') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }

    const T0: u64 = 1_717_228_800_000_000; // 2024-06-01T08:00:00Z
    const BIG: &str = "big-message-";

    /// Export-format input for journal-remote: every shape of field the
    /// parser meets, large values (compressed where compression is on) and
    /// enough entries that the entry arrays chain.
    fn export(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            field(
                &mut out,
                "__REALTIME_TIMESTAMP",
                (T0 + i as u64 * 1_000_003).to_string().as_bytes(),
            );
            field(
                &mut out,
                "__MONOTONIC_TIMESTAMP",
                (5_000 + i).to_string().as_bytes(),
            );
            let boot = if i < n / 2 {
                "0123456789abcdef0123456789abcdef"
            } else {
                "fedcba9876543210fedcba9876543210"
            };
            field(&mut out, "_BOOT_ID", boot.as_bytes());
            field(&mut out, "_HOSTNAME", b"web01");
            field(&mut out, "_TRANSPORT", b"syslog");
            field(&mut out, "PRIORITY", (i % 8).to_string().as_bytes());
            field(&mut out, "_PID", (1000 + i).to_string().as_bytes());
            let (ident, message): (Option<&str>, Vec<u8>) = match i % 7 {
                0 => (
                    Some("sshd"),
                    b"Accepted publickey for alice from 203.0.113.5 port 22 ssh2".to_vec(),
                ),
                1 => (
                    Some("sudo"),
                    b"  alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id"
                        .to_vec(),
                ),
                2 => (
                    Some("cron"),
                    format!("line one\nline two \x1b[31mred\x1b[0m\r\n\x07 #{i}").into_bytes(),
                ),
                3 => (None, format!("no identifier, only _COMM #{i}").into_bytes()),
                4 => (
                    Some("app"),
                    format!("{BIG}{i} {}", "0123456789abcdef".repeat(64)).into_bytes(),
                ),
                5 => (Some("bin"), vec![0, 1, 2, 0xff, 0xfe, b'\n', b'x']),
                _ => (
                    Some("sshd"),
                    format!(
                        "Failed password for invalid user admin from 198.51.100.{} port 4242 ssh2",
                        i % 250
                    )
                    .into_bytes(),
                ),
            };
            if let Some(ident) = ident {
                field(&mut out, "SYSLOG_IDENTIFIER", ident.as_bytes());
            }
            field(&mut out, "MESSAGE", &message);
            if i % 11 != 10 {
                field(&mut out, "_COMM", ident.unwrap_or("worker").as_bytes());
                field(&mut out, "_UID", (i % 3 * 500).to_string().as_bytes());
                field(&mut out, "_EXE", b"/usr/sbin/sshd");
                field(&mut out, "_SYSTEMD_UNIT", b"ssh.service");
            }
            if i % 13 == 0 {
                // A long command line: compressed where compression is on.
                field(
                    &mut out,
                    "_CMDLINE",
                    format!("/usr/bin/worker --id={i} {}", "--flag ".repeat(120)).as_bytes(),
                );
            }
            // A second value of the same field: the first one wins.
            if i % 17 == 0 {
                field(&mut out, "_HOSTNAME", b"second-value");
            }
            field(&mut out, "CUSTOM_FIELD", format!("{i}").as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn make_journal(dir: &Path, name: &str, n: usize, compact: bool, compress: bool) -> PathBuf {
        let input = dir.join(format!("{name}.export"));
        std::fs::write(&input, export(n)).unwrap();
        let path = dir.join(format!("{name}.journal"));
        let out = Command::new(journal_remote())
            .env("SYSTEMD_JOURNAL_COMPACT", if compact { "1" } else { "0" })
            .arg(format!(
                "--compress={}",
                if compress { "yes" } else { "no" }
            ))
            .arg(format!("--output={}", path.display()))
            .arg(&input)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            le32(&std::fs::read(&path).unwrap(), 12) & INCOMPATIBLE_COMPACT != 0,
            compact
        );
        path
    }

    type Fields = Vec<(String, Vec<u8>)>;

    /// journalctl's export of a file, each entry's fields in order.
    fn journalctl(path: &Path) -> Vec<Fields> {
        let out = Command::new("journalctl")
            .arg("--file")
            .arg(path)
            .args(["-o", "export", "--no-pager"])
            .output()
            .unwrap_or_else(|e| {
                panic!("journalctl is needed (Debian package systemd; scripts/emulators.sh): {e}")
            });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_export(&out.stdout)
    }

    fn parse_export(mut b: &[u8]) -> Vec<Fields> {
        let mut entries = vec![];
        let mut cur = vec![];
        while !b.is_empty() {
            let nl = b.iter().position(|&c| c == b'\n').unwrap();
            let line = &b[..nl];
            b = &b[nl + 1..];
            if line.is_empty() {
                entries.push(std::mem::take(&mut cur));
                continue;
            }
            if let Some(eq) = line.iter().position(|&c| c == b'=') {
                cur.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
            } else {
                let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                cur.push((
                    String::from_utf8(line.to_vec()).unwrap(),
                    b[8..8 + n].to_vec(),
                ));
                assert_eq!(b[8 + n], b'\n');
                b = &b[9 + n..];
            }
        }
        if !cur.is_empty() {
            entries.push(cur);
        }
        entries
    }

    fn first<'f>(fields: &'f Fields, name: &str) -> Option<&'f [u8]> {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    fn lossy(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    /// Every event against journalctl's entry: time, seqnum (the cursor),
    /// message, every kept field, and the recognised ssh/sudo lines.
    fn compare(events: &[Event], oracle: &[Fields]) {
        assert_eq!(events.len(), oracle.len());
        for (e, o) in events.iter().zip(oracle) {
            let t: i64 = lossy(first(o, "__REALTIME_TIMESTAMP").unwrap())
                .parse()
                .unwrap();
            assert_eq!(e.time_us, t);
            assert_eq!(e.source, "journal");
            let cursor = lossy(first(o, "__CURSOR").unwrap());
            let id = e.record_id.as_deref().unwrap();
            assert!(cursor.starts_with(&format!("{id};")), "{id} vs {cursor}");
            assert_eq!(e.message, lossy(first(o, "MESSAGE").unwrap_or_default()));
            let kept: Vec<(String, String)> = ATTRIBUTES
                .iter()
                .filter_map(|a| first(o, a).map(|v| ((*a).to_owned(), lossy(v))))
                .collect();
            assert_eq!(&e.attributes[..kept.len()], &kept[..], "{}", e.locator);
            assert!(
                e.attributes[kept.len()..]
                    .iter()
                    .all(|(k, _)| !ATTRIBUTES.contains(&k.as_str()))
            );
            let ident = first(o, "SYSLOG_IDENTIFIER")
                .or(first(o, "_COMM"))
                .map(lossy);
            let uid = first(o, "_UID").map(|u| format!("uid {}", lossy(u)));
            match (ident.as_deref(), e.message.as_str()) {
                (Some("sshd"), m)
                    if m.starts_with("Accepted publickey for alice from 203.0.113.5 port 22") =>
                {
                    assert_eq!(e.action, "sshd.accepted");
                    assert_eq!(e.outcome.as_deref(), Some("success"));
                    assert_eq!(e.actor.as_deref(), Some("alice"));
                    assert_eq!(e.ip, "203.0.113.5".parse().ok());
                    assert_eq!(e.attribute("port"), Some("22"));
                }
                (Some("sshd"), m) if m.starts_with("Failed password for invalid user admin") => {
                    assert_eq!(e.action, "sshd.failed");
                    assert_eq!(e.outcome.as_deref(), Some("failure"));
                    assert_eq!(e.actor.as_deref(), Some("admin"));
                    assert_eq!(
                        e.ip.map(|ip| ip.to_string().starts_with("198.51.100.")),
                        Some(true)
                    );
                }
                (Some("sudo"), _) => {
                    assert_eq!(e.action, "sudo");
                    assert_eq!(e.actor.as_deref(), Some("alice"));
                    assert_eq!(e.target.as_deref(), Some("/usr/bin/id"));
                }
                (name, _) => {
                    assert_eq!(e.action, format!("{}.log", name.unwrap_or("journal")));
                    assert_eq!(e.actor, uid);
                }
            }
        }
    }

    fn parse(bytes: &[u8]) -> Collect {
        let mut c = Collect::default();
        parse_file(Format::Journal, "", bytes, 2024, &mut c);
        c
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    const N: usize = 300;

    #[test]
    fn every_layout_matches_journalctl() {
        let dir = tempdir();
        for (compact, compress) in [(true, true), (false, true), (true, false), (false, false)] {
            let name = format!("c{}z{}", u8::from(compact), u8::from(compress));
            let path = make_journal(dir.path(), &name, N, compact, compress);
            let bytes = std::fs::read(&path).unwrap();
            // Compression on: the large messages are not in the file as text.
            let big = format!("MESSAGE={BIG}4 {}", "0123456789abcdef".repeat(64));
            let big_plain = memchr::memmem::find(&bytes, big.as_bytes()).is_some();
            assert_eq!(big_plain, !compress, "{name}");
            let oracle = journalctl(&path);
            assert_eq!(oracle.len(), N);
            let c = parse(&bytes);
            assert_eq!(c.problems, vec![], "{name}");
            compare(&c.events, &oracle);
            for e in &c.events {
                assert!(e.locator.starts_with("entry at byte "));
            }
            // A control-byte message is kept as data.
            assert!(
                c.events[2].message.contains("\x1b[31mred"),
                "{:?}",
                c.events[2].message
            );
            assert!(c.events[2].message.contains('\n'));
        }
    }

    /// The file cut down to its last object, with the header saying so:
    /// small, and whole.
    fn shrink(mut bytes: Vec<u8>) -> Vec<u8> {
        let tail = le64(&bytes, 136) as usize;
        let end = (tail + le64(&bytes, tail + 8) as usize).next_multiple_of(8);
        bytes.truncate(end);
        let arena = (end as u64 - le64(&bytes, 88)).to_le_bytes();
        bytes[96..104].copy_from_slice(&arena);
        bytes
    }

    fn small_journal() -> &'static [u8] {
        static FILE: OnceLock<Vec<u8>> = OnceLock::new();
        FILE.get_or_init(|| {
            let dir = tempdir();
            let path = make_journal(dir.path(), "small", 40, true, true);
            shrink(std::fs::read(path).unwrap())
        })
    }

    #[test]
    fn a_shrunk_file_reads_whole() {
        let dir = tempdir();
        let path = dir.path().join("s.journal");
        std::fs::write(&path, small_journal()).unwrap();
        let c = parse(small_journal());
        assert_eq!(c.problems, vec![]);
        compare(&c.events, &journalctl(&path));
    }

    /// Where each entry object lies, found by its seqnum and realtime (not
    /// by the parser's walk): (offset, end).
    fn entry_spans(bytes: &[u8], n: usize) -> Vec<(usize, usize)> {
        (0..n)
            .map(|i| {
                let mut key = (i as u64 + 1).to_le_bytes().to_vec();
                key.extend_from_slice(&(T0 + i as u64 * 1_000_003).to_le_bytes());
                let at = memchr::memmem::find_iter(bytes, &key)
                    .map(|p| p - 16)
                    .find(|&p| p % 8 == 0 && bytes[p] == OBJECT_ENTRY)
                    .unwrap();
                (at, at + le64(bytes, at + 8) as usize)
            })
            .collect()
    }

    #[test]
    fn a_torn_file_yields_every_whole_entry_before_the_cut() {
        let dir = tempdir();
        let path = make_journal(dir.path(), "torn", N, true, true);
        let bytes = std::fs::read(&path).unwrap();
        let oracle = journalctl(&path);
        let spans = entry_spans(&bytes, N);
        let mut cuts = vec![];
        for i in [0, 1, 5, 37, 100, 150, 201, 299] {
            let (at, end) = spans[i];
            cuts.push(at + (end - at) / 2); // inside the entry
            cuts.push(at); // right before it: inside or after its data
            cuts.push(at - 8); // inside its last data object
            cuts.push(end); // right after it
        }
        for cut in cuts {
            let whole = spans.iter().filter(|&&(_, end)| end <= cut).count();
            let c = parse(&bytes[..cut]);
            compare(&c.events, &oracle[..whole]);
            assert!(!c.problems.is_empty(), "cut at {cut}");
            for p in &c.problems {
                assert!(
                    p.locator.starts_with("byte ") || p.locator.starts_with("entry at byte "),
                    "{p:?}"
                );
            }
            assert!(
                c.problems
                    .iter()
                    .any(|p| p.locator == format!("byte {cut}")),
                "cut at {cut}: {:?}",
                c.problems
            );
        }
        // journalctl refuses a file shorter than its header says (ENODATA),
        // so the oracle here is its export of the whole file, up to the cut.
        let cut_path = dir.path().join("cut.journal");
        std::fs::write(&cut_path, &bytes[..spans[100].0]).unwrap();
        let status = Command::new("journalctl")
            .arg("--file")
            .arg(&cut_path)
            .arg("-q")
            .output()
            .unwrap();
        assert!(!status.status.success() || status.stdout.is_empty());
    }

    #[test]
    fn a_broken_chain_is_read_in_file_order() {
        let whole = parse(small_journal()).events;
        assert_eq!(whole.len(), 40);
        // No chain at all.
        let mut b = small_journal().to_vec();
        b[176..184].fill(0);
        let c = parse(&b);
        assert_eq!(c.events, whole);
        assert_eq!(c.problems.len(), 1);
        assert!(
            c.problems[0].message.contains("in file order"),
            "{:?}",
            c.problems
        );
        // A chain that loops: its first array points at itself.
        let mut b = small_journal().to_vec();
        let first = le64(&b, 176) as usize;
        let own = (first as u64).to_le_bytes();
        b[first + 16..first + 24].copy_from_slice(&own);
        let c = parse(&b);
        assert_eq!(c.events, whole);
        assert!(
            c.problems[0].message.contains("points back"),
            "{:?}",
            c.problems
        );
        // A chain into the header.
        let mut b = small_journal().to_vec();
        b[176..184].copy_from_slice(&16u64.to_le_bytes());
        let c = parse(&b);
        assert_eq!(c.events, whole);
        assert_eq!(c.problems[0].locator, "byte 16");
    }

    #[test]
    fn not_a_journal() {
        let c = parse(b"hello");
        assert_eq!(c.events, vec![]);
        assert_eq!(
            c.problems,
            vec![problem(
                "byte 0",
                "not a journal file: no LPKSHHRH signature"
            )]
        );
        let mut b = small_journal().to_vec();
        b[88..96].copy_from_slice(&u64::MAX.to_le_bytes());
        let c = parse(&b);
        assert_eq!(c.events, vec![]);
        assert_eq!(c.problems[0].locator, "byte 88");
    }

    /// Rewrites the uncompressed DATA object holding `marker` as compressed
    /// with `flag`, and sets the header's matching flag.
    fn recompress(
        bytes: &mut [u8],
        compact: bool,
        marker: &str,
        flag: u8,
        compress: impl Fn(&[u8]) -> Vec<u8>,
    ) {
        let payload_at =
            memchr::memmem::find(bytes, format!("MESSAGE={marker}").as_bytes()).unwrap();
        let at = payload_at - if compact { 72 } else { 64 };
        assert_eq!(bytes[at], OBJECT_DATA);
        let size = le64(bytes, at + 8) as usize;
        let payload = bytes[payload_at..at + size].to_vec();
        let packed = compress(&payload);
        assert!(packed.len() < payload.len());
        bytes[at + 1] = flag;
        let new_size = (payload_at - at + packed.len()) as u64;
        bytes[at + 8..at + 16].copy_from_slice(&new_size.to_le_bytes());
        bytes[payload_at..payload_at + packed.len()].copy_from_slice(&packed);
        bytes[payload_at + packed.len()..at + size].fill(0);
        let header_flag = match flag {
            COMPRESSED_XZ => INCOMPATIBLE_XZ,
            _ => INCOMPATIBLE_LZ4,
        };
        let flags = le32(bytes, 12) | header_flag;
        bytes[12..16].copy_from_slice(&flags.to_le_bytes());
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Command::new("xz")
            .args(["--format=xz", "--check=none", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("xz is needed (Debian package xz-utils; scripts/emulators.sh): {e}")
            });
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u64).to_le_bytes().to_vec();
        out.extend(lz4_flex::block::compress(data));
        out
    }

    /// XZ and LZ4 payloads (journal-remote here writes only ZSTD): written
    /// into an uncompressed file, checked by journalctl reading them back.
    #[test]
    fn xz_and_lz4_payloads() {
        let dir = tempdir();
        for compact in [true, false] {
            let path = make_journal(dir.path(), &format!("x{compact}"), 30, compact, false);
            let mut bytes = std::fs::read(&path).unwrap();
            recompress(&mut bytes, compact, &format!("{BIG}4 "), COMPRESSED_XZ, xz);
            recompress(
                &mut bytes,
                compact,
                &format!("{BIG}11 "),
                COMPRESSED_LZ4,
                lz4,
            );
            let patched = dir.path().join(format!("p{compact}.journal"));
            std::fs::write(&patched, &bytes).unwrap();
            let oracle = journalctl(&patched);
            let c = parse(&bytes);
            assert_eq!(c.problems, vec![]);
            compare(&c.events, &oracle);
            assert!(c.events[4].message.starts_with(&format!("{BIG}4 0123")));
            assert!(c.events[11].message.starts_with(&format!("{BIG}11 0123")));
        }
    }

    #[test]
    fn the_budget_bounds_what_is_decompressed_and_copied() {
        let mut c = Collect {
            limits: crate::timeline::parse::InflateLimits {
                max_bytes: 2000,
                max_ratio: 1,
            },
            ..Collect::default()
        };
        parse_file(Format::Journal, "", small_journal(), 2024, &mut c);
        assert!(c.events.len() < 40);
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].message.contains("budget"), "{:?}", c.problems);
    }

    #[test]
    fn xz_sizes_come_from_chunk_headers() {
        for n in [0usize, 1, 100, 70_000, 3 << 20] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            assert_eq!(xz_size(&xz(&data)), Ok(n as u64));
        }
        assert!(xz_size(b"\xfd7zXZ\0\0\0").is_err());
    }

    #[test]
    fn field_table() {
        assert_eq!(ATTRIBUTES[COMM], "_COMM");
        assert_eq!(ATTRIBUTES[IDENTIFIER], "SYSLOG_IDENTIFIER");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Any damage to a real file: no panic, and quickly.
        #[test]
        fn mutated_files_never_panic(
            cut in 0usize..=4096,
            edits in prop::collection::vec((0usize..65536, any::<u8>()), 1..24),
            widen in any::<bool>(),
        ) {
            let mut b = small_journal().to_vec();
            let len = b.len();
            for (at, v) in edits {
                // Half the edits land in the header and first objects.
                let at = if widen { at % len } else { at % 1024.min(len) };
                b[at] = v;
            }
            b.truncate(len - cut.min(len));
            let started = std::time::Instant::now();
            let _ = parse(&b);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
    }
}
