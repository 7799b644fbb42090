//! The volumes of a disk image: its partition table (GPT, MBR with its
//! extended partitions, or none: a file system written to the whole disk,
//! common on secondary EBS volumes) and what each volume holds, told by its
//! signature. An encrypted volume (LUKS, BitLocker) is named and left
//! alone; an LVM2 physical volume is named. Every field read from the image
//! is attacker-controlled: a table that points past the image's end, an
//! extended partition chain that loops, a GPT whose checksums do not match
//! are reported as problems with their place, and what can be read still is.

use std::collections::BTreeSet;
use std::io;

use serde::Serialize;

use crate::bytes::{le16 as u16_at, le32 as u32_at, le64 as u64_at, slice as bytes_at};
use crate::image::ReadAt;

/// The sector size partition tables count in.
pub const SECTOR: u64 = 512;
/// Logical partitions followed in an extended partition at most.
const MAX_LOGICAL: usize = 128;
/// GPT partition entries read at most (the specification's minimum array
/// holds 128; tools write 128).
const MAX_GPT_ENTRIES: u32 = 1024;

/// What a volume holds, by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Ext,
    Xfs,
    Ntfs,
    Fat,
    /// A LUKS container: encrypted, not opened.
    Luks,
    /// A BitLocker volume: encrypted, not opened.
    BitLocker,
    /// An LVM2 physical volume.
    LvmPhysical,
    Swap,
    Unknown,
}

impl Content {
    /// Whether the volume is encrypted: reported, never guessed at.
    pub fn encrypted(self) -> bool {
        matches!(self, Self::Luks | Self::BitLocker)
    }
}

/// One volume of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// 1-based, in table order; 0 for a whole disk with no table.
    pub index: usize,
    /// Byte offset and length in the image.
    pub start: u64,
    pub length: u64,
    /// The partition type: a GPT type GUID, or an MBR type byte (`0x83`).
    pub type_id: String,
    /// The GPT partition name, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub content: Content,
}

/// Something in the image's layout that is not as it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Byte offset in the image.
    pub at: u64,
    pub what: String,
}

/// The partition scheme found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    Gpt,
    Mbr,
    /// No partition table: the whole image is one volume.
    None,
}

/// The image's volumes.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub scheme: Scheme,
    pub volumes: Vec<Volume>,
    pub problems: Vec<Problem>,
}

/// Reads up to `len` bytes at `offset`: what the image holds of them.
fn read(img: &dyn ReadAt, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = img.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// What the bytes at `start` of a volume hold.
pub fn probe(img: &dyn ReadAt, start: u64) -> io::Result<Content> {
    let head = read(img, start, 4096)?;
    let ext = read(img, start + 1024, 64)?;
    Ok(if bytes_at(&head, 0, 6) == b"LUKS\xba\xbe" {
        Content::Luks
    } else if bytes_at(&head, 3, 8) == b"-FVE-FS-" {
        Content::BitLocker
    } else if bytes_at(&head, 0, 4) == b"XFSB" {
        Content::Xfs
    } else if bytes_at(&head, 3, 8) == b"NTFS    " {
        Content::Ntfs
    } else if u16_at(&ext, 56) == 0xEF53 {
        Content::Ext
    } else if is_fat(&head) {
        Content::Fat
    } else if (0..4).any(|s| {
        bytes_at(&head, s * 512, 8) == b"LABELONE"
            && bytes_at(&head, s * 512 + 24, 8) == b"LVM2 001"
    }) {
        Content::LvmPhysical
    } else if bytes_at(&head, 4086, 10) == b"SWAPSPACE2" {
        Content::Swap
    } else {
        Content::Unknown
    })
}

/// A FAT boot sector: its signature, a file system type string, and a
/// sector size a FAT can have.
fn is_fat(b: &[u8]) -> bool {
    let bytes_per_sector = u16_at(b, 11);
    let typed = bytes_at(b, 82, 5) == b"FAT32" || bytes_at(b, 54, 3) == b"FAT";
    bytes_at(b, 510, 2) == b"\x55\xaa"
        && typed
        && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
}

/// A GPT type GUID as text (its first three fields are little-endian).
fn guid(b: &[u8]) -> String {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g(3),
        g(2),
        g(1),
        g(0),
        g(5),
        g(4),
        g(7),
        g(6),
        g(8),
        g(9),
        g(10),
        g(11),
        g(12),
        g(13),
        g(14),
        g(15)
    )
}

struct Found {
    volumes: Vec<Volume>,
    problems: Vec<Problem>,
}

impl Found {
    fn problem(&mut self, at: u64, what: String) {
        self.problems.push(Problem { at, what });
    }

    /// Adds a partition of `sectors` from `first`, checked against the
    /// image's end: one that starts past it is left out, one that ends past
    /// it is kept to what the image holds. Both are reported.
    fn add(
        &mut self,
        img: &dyn ReadAt,
        index: usize,
        (first, sectors): (u64, u64),
        type_id: String,
        name: Option<String>,
        table_at: u64,
    ) -> io::Result<()> {
        let size = img.size();
        let start = first.saturating_mul(SECTOR);
        let length = sectors.saturating_mul(SECTOR);
        if sectors == 0 || start >= size {
            self.problem(
                table_at,
                format!(
                    "partition {index} starts at byte {start}, past the image's end ({size} bytes)"
                ),
            );
            return Ok(());
        }
        let length = if start.saturating_add(length) > size {
            self.problem(
                table_at,
                format!(
                    "partition {index} ends at byte {}, past the image's end ({size} bytes): read up to the end",
                    start.saturating_add(length)
                ),
            );
            size - start
        } else {
            length
        };
        self.volumes.push(Volume {
            index,
            start,
            length,
            type_id,
            name,
            content: probe(img, start)?,
        });
        Ok(())
    }
}

/// The image's volumes.
pub fn layout(img: &dyn ReadAt) -> io::Result<Layout> {
    let mbr = read(img, 0, 512)?;
    let mut found = Found {
        volumes: Vec::new(),
        problems: Vec::new(),
    };
    let whole = probe(img, 0)?;
    // A boot sector with 55 AA is also a FAT or NTFS volume's first sector:
    // a recognised file system at offset 0 is not a partition table.
    let has_mbr = bytes_at(&mbr, 510, 2) == b"\x55\xaa"
        && !matches!(whole, Content::Fat | Content::Ntfs | Content::BitLocker);
    let entries: Vec<&[u8]> = (0..4).map(|i| bytes_at(&mbr, 446 + i * 16, 16)).collect();
    let scheme = if has_mbr && entries.iter().any(|e| e.get(4) == Some(&0xEE)) {
        gpt(img, &mut found)?;
        Scheme::Gpt
    } else if has_mbr && entries.iter().any(|e| e.get(4).is_some_and(|&t| t != 0)) {
        mbr_partitions(img, &entries, &mut found)?;
        Scheme::Mbr
    } else {
        found.volumes.push(Volume {
            index: 0,
            start: 0,
            length: img.size(),
            type_id: String::new(),
            name: None,
            content: whole,
        });
        Scheme::None
    };
    Ok(Layout {
        scheme,
        volumes: found.volumes,
        problems: found.problems,
    })
}

fn is_extended(t: u8) -> bool {
    matches!(t, 0x05 | 0x0F | 0x85)
}

fn mbr_partitions(img: &dyn ReadAt, entries: &[&[u8]], found: &mut Found) -> io::Result<()> {
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        let t = e.get(4).copied().unwrap_or(0);
        let first = u64::from(u32_at(e, 8));
        let sectors = u64::from(u32_at(e, 12));
        if t == 0 {
            continue;
        }
        if is_extended(t) {
            extended = Some(first);
            continue;
        }
        found.add(
            img,
            i + 1,
            (first, sectors),
            format!("0x{t:02x}"),
            None,
            446 + i as u64 * 16,
        )?;
    }
    if let Some(ext_start) = extended {
        logical_partitions(img, ext_start, found)?;
    }
    Ok(())
}

/// Follows the chain of extended boot records from `ext_start` (sectors);
/// logical partitions are numbered from 5, as Linux numbers them.
fn logical_partitions(img: &dyn ReadAt, ext_start: u64, found: &mut Found) -> io::Result<()> {
    let mut seen = BTreeSet::new();
    let mut ebr = ext_start;
    for n in 0..MAX_LOGICAL {
        let at = ebr.saturating_mul(SECTOR);
        if !seen.insert(ebr) {
            found.problem(
                at,
                format!("the extended partition chain loops back to sector {ebr}"),
            );
            return Ok(());
        }
        let b = read(img, at, 512)?;
        if bytes_at(&b, 510, 2) != b"\x55\xaa" {
            found.problem(at, format!("no extended boot record at sector {ebr}"));
            return Ok(());
        }
        let this = bytes_at(&b, 446, 16);
        let next = bytes_at(&b, 462, 16);
        let t = this.get(4).copied().unwrap_or(0);
        if t != 0 {
            let first = ebr.saturating_add(u64::from(u32_at(this, 8)));
            let sectors = u64::from(u32_at(this, 12));
            found.add(
                img,
                5 + n,
                (first, sectors),
                format!("0x{t:02x}"),
                None,
                at + 446,
            )?;
        }
        if next.get(4).is_none_or(|&t| t == 0) {
            return Ok(());
        }
        ebr = ext_start.saturating_add(u64::from(u32_at(next, 8)));
    }
    found.problem(
        ext_start.saturating_mul(SECTOR),
        format!("more than {MAX_LOGICAL} logical partitions: the rest are not read"),
    );
    Ok(())
}

/// A GPT header at `lba` whose own checksum and whose entries' checksum hold,
/// with its entries; or why not.
fn gpt_header(img: &dyn ReadAt, lba: u64) -> io::Result<Result<Vec<u8>, String>> {
    let at = lba.saturating_mul(SECTOR);
    let h = read(img, at, 512)?;
    if bytes_at(&h, 0, 8) != b"EFI PART" {
        return Ok(Err(format!("no GPT header at sector {lba}")));
    }
    let header_size = usize::try_from(u32_at(&h, 12)).unwrap_or(0);
    if !(92..=512).contains(&header_size) {
        return Ok(Err(format!(
            "the GPT header at sector {lba} gives a size of {header_size} bytes"
        )));
    }
    let mut zeroed = bytes_at(&h, 0, header_size).to_vec();
    if let Some(crc) = zeroed.get_mut(16..20) {
        crc.fill(0);
    }
    if crc32fast::hash(&zeroed) != u32_at(&h, 16) {
        return Ok(Err(format!(
            "the GPT header at sector {lba} fails its checksum"
        )));
    }
    let count = u32_at(&h, 80);
    let entry_size = u32_at(&h, 84);
    if count > MAX_GPT_ENTRIES
        || !(128..=4096).contains(&entry_size)
        || !entry_size.is_multiple_of(8)
    {
        return Ok(Err(format!(
            "the GPT header at sector {lba} gives {count} entries of {entry_size} bytes"
        )));
    }
    let len = usize::try_from(u64::from(count) * u64::from(entry_size)).unwrap_or(0);
    let entries = read(img, u64_at(&h, 72).saturating_mul(SECTOR), len)?;
    if entries.len() != len || crc32fast::hash(&entries) != u32_at(&h, 88) {
        return Ok(Err(format!(
            "the GPT partition entries of the header at sector {lba} are cut or fail their checksum"
        )));
    }
    let mut out = h;
    out.truncate(header_size);
    out.extend_from_slice(&entries);
    Ok(Ok(out))
}

fn gpt(img: &dyn ReadAt, found: &mut Found) -> io::Result<()> {
    let last_lba = (img.size() / SECTOR).saturating_sub(1);
    let header = match gpt_header(img, 1)? {
        Ok(h) => h,
        Err(why) => {
            found.problem(SECTOR, why);
            // The backup header, at the disk's last sector.
            match gpt_header(img, last_lba)? {
                Ok(h) => {
                    found.problem(
                        last_lba * SECTOR,
                        "read the backup GPT header instead".into(),
                    );
                    h
                }
                Err(why) => {
                    found.problem(last_lba * SECTOR, why);
                    return Ok(());
                }
            }
        }
    };
    let header_size = usize::try_from(u32_at(&header, 12)).unwrap_or(92);
    let entry_size = usize::try_from(u32_at(&header, 84)).unwrap_or(128);
    let table_at = u64_at(&header, 72).saturating_mul(SECTOR);
    let entries = header.get(header_size..).unwrap_or_default();
    for (i, e) in entries.chunks(entry_size).enumerate() {
        let type_guid = bytes_at(e, 0, 16);
        if type_guid.iter().all(|&b| b == 0) {
            continue;
        }
        let first = u64_at(e, 32);
        let last = u64_at(e, 40);
        let entry_at = table_at + (i * entry_size) as u64;
        if last < first {
            found.problem(
                entry_at,
                format!("partition {} ends before it starts", i + 1),
            );
            continue;
        }
        let name: Vec<u16> = bytes_at(e, 56, 72)
            .chunks_exact(2)
            .map(|c| u16_at(c, 0))
            .take_while(|&c| c != 0)
            .collect();
        let name = String::from_utf16_lossy(&name);
        found.add(
            img,
            i + 1,
            (first, last - first + 1),
            guid(type_guid),
            (!name.is_empty()).then_some(name),
            entry_at,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image in memory.
    struct Mem(Vec<u8>);

    impl ReadAt for Mem {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let from = usize::try_from(offset).unwrap().min(self.0.len());
            let n = buf.len().min(self.0.len() - from);
            buf[..n].copy_from_slice(&self.0[from..from + n]);
            Ok(n)
        }
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
    }

    fn entry(b: &mut [u8], at: usize, t: u8, first: u32, sectors: u32) {
        b[at + 4] = t;
        b[at + 8..at + 12].copy_from_slice(&first.to_le_bytes());
        b[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    fn ext_signature(b: &mut [u8], start: usize) {
        b[start + 1024 + 56..start + 1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    }

    #[test]
    fn a_whole_disk_file_system_is_one_volume() {
        let mut img = vec![0u8; 64 << 10];
        ext_signature(&mut img, 0);
        let l = layout(&Mem(img)).unwrap();
        assert_eq!(l.scheme, Scheme::None);
        assert_eq!(l.volumes.len(), 1);
        assert_eq!(
            (l.volumes[0].index, l.volumes[0].content),
            (0, Content::Ext)
        );
    }

    #[test]
    fn mbr_partitions_are_read_and_one_past_the_end_is_reported_not_followed() {
        let mut img = vec![0u8; 4 << 20];
        img[510] = 0x55;
        img[511] = 0xaa;
        entry(&mut img, 446, 0x83, 2048, 100);
        entry(&mut img, 462, 0x83, 1_000_000, 100);
        entry(&mut img, 478, 0x83, 1000, 10_000);
        ext_signature(&mut img, 2048 * 512);
        img[1000 * 512..1000 * 512 + 6].copy_from_slice(b"LUKS\xba\xbe");
        let l = layout(&Mem(img)).unwrap();
        assert_eq!(l.scheme, Scheme::Mbr);
        let got: Vec<_> = l
            .volumes
            .iter()
            .map(|v| (v.index, v.start, v.content))
            .collect();
        assert_eq!(
            got,
            [
                (1, 2048 * 512, Content::Ext),
                (3, 1000 * 512, Content::Luks)
            ]
        );
        assert!(l.volumes[1].content.encrypted());
        assert_eq!(
            l.volumes[1].length,
            (4 << 20) - 1000 * 512,
            "kept to the image"
        );
        assert_eq!(l.problems.len(), 2, "{:?}", l.problems);
        assert!(
            l.problems[0]
                .what
                .contains("partition 2 starts at byte 512000000")
        );
    }

    #[test]
    fn a_looping_extended_chain_is_reported_and_ends() {
        let mut img = vec![0u8; 1 << 20];
        img[510] = 0x55;
        img[511] = 0xaa;
        entry(&mut img, 446, 0x05, 100, 1000);
        // The EBR at sector 100: one logical partition, and a "next" that
        // points back at itself.
        let ebr = 100 * 512;
        img[ebr + 510] = 0x55;
        img[ebr + 511] = 0xaa;
        entry(&mut img, ebr + 446, 0x83, 10, 50);
        entry(&mut img, ebr + 462, 0x05, 0, 200);
        let l = layout(&Mem(img)).unwrap();
        assert_eq!(l.volumes.iter().map(|v| v.index).collect::<Vec<_>>(), [5]);
        assert!(
            l.problems.iter().any(|p| p.what.contains("loops back")),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn a_fat_boot_sector_is_a_file_system_not_a_table() {
        let mut img = vec![0u8; 64 << 10];
        img[11..13].copy_from_slice(&512u16.to_le_bytes());
        img[82..87].copy_from_slice(b"FAT32");
        img[510] = 0x55;
        img[511] = 0xaa;
        // Boot code bytes where an MBR's entries would be.
        img[446 + 4] = 0x0c;
        let l = layout(&Mem(img)).unwrap();
        assert_eq!(l.scheme, Scheme::None);
        assert_eq!(l.volumes[0].content, Content::Fat);
    }

    #[test]
    fn a_gpt_with_a_broken_primary_header_is_read_from_its_backup() {
        // The real layout is tested on sgdisk's images; here the primary
        // header is garbage and there is no backup either.
        let mut img = vec![0u8; 1 << 20];
        img[510] = 0x55;
        img[511] = 0xaa;
        entry(&mut img, 446, 0xEE, 1, 2047);
        img[512..520].copy_from_slice(b"EFI PART");
        let l = layout(&Mem(img)).unwrap();
        assert_eq!(l.scheme, Scheme::Gpt);
        assert!(l.volumes.is_empty());
        assert!(
            l.problems[0].what.contains("gives a size of 0 bytes"),
            "{:?}",
            l.problems
        );
        assert!(
            l.problems[1].what.contains("no GPT header"),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn guids_read_as_tools_print_them() {
        // The Linux file system type, as stored on disk.
        let raw = [
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ];
        assert_eq!(guid(&raw), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    }
}
