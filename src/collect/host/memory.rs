//! A process's memory: every readable mapping of `/proc/PID/maps`, read
//! through `/proc/PID/mem`, written in the LiME format (a 32-byte header per
//! range, then its bytes) that Volatility and other tools read.
//!
//! A range that cannot be read at all is left out; a chunk inside a range
//! that fails is written as zeros. Both are noted in the artefact.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::super::SourceEnd;
use super::super::channel::{self, ChannelReader};
use super::rootfs::HostFs;

/// "EMiL" read as a little-endian u32: the LiME header magic.
const LIME_MAGIC: u32 = 0x4C69_4D45;
const LIME_VERSION: u32 = 1;
/// Read mappings 1 MiB at a time: a failing page costs at most this much as zeros.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub name: String,
}

/// Parses `/proc/PID/maps` lines: `start-end perms offset dev inode [name]`.
pub fn parse_maps(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (start, end) = parts.next()?.split_once('-')?;
            let perms = parts.next()?.to_owned();
            let name = parts.nth(3).map(str::to_owned).unwrap_or_default();
            Some(Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms,
                name,
            })
        })
        .collect()
}

#[derive(Debug)]
pub struct ProcessMemory {
    pid: u32,
    comm: String,
    mem: File,
    regions: Vec<Region>,
}

impl ProcessMemory {
    pub fn open(root: &Path, pid: u32) -> io::Result<Self> {
        // Under an image root, as in triage, nothing outside the root is read.
        let fs = HostFs::new(root)?;
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let with = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{}/{what}: {e}", root.join(format!("proc/{pid}")).display()),
            )
        };
        let maps = fs
            .read(&proc_dir.join("maps"))
            .map_err(|e| with("maps", e))?;
        let maps = String::from_utf8_lossy(&maps);
        let comm = fs
            .read(&proc_dir.join("comm"))
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        let mem = fs
            .open(&proc_dir.join("mem"), true)
            .map_err(|e| with("mem", e))?;
        let regions: Vec<Region> = parse_maps(&maps)
            .into_iter()
            // vvar has no backing pages a reader may touch; [vsyscall] is not in the address space.
            .filter(|r| {
                r.perms.starts_with('r') && !r.name.starts_with("[vvar") && r.name != "[vsyscall]"
            })
            .collect();
        if regions.is_empty() {
            return Err(io::Error::other(format!(
                "process {pid} has no readable memory regions"
            )));
        }
        Ok(Self {
            pid,
            comm,
            mem,
            regions,
        })
    }

    pub fn command(&self) -> &str {
        &self.comm
    }

    pub fn readable_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.end - r.start).sum::<u64>() + 32 * self.regions.len() as u64
    }

    pub fn into_reader(self) -> ChannelReader {
        channel::spawn(move |w| self.write_lime(w))
    }

    fn write_lime(mut self, w: &mut dyn Write) -> io::Result<SourceEnd> {
        let mut notes = Vec::new();
        let mut buf = vec![0u8; CHUNK as usize];
        let regions = std::mem::take(&mut self.regions);
        for r in &regions {
            // Probe the first chunk before writing a header: a range the kernel
            // will not give at all is left out rather than written as zeros.
            let first = (r.end - r.start).min(CHUNK) as usize;
            let head = buf.get_mut(..first).unwrap_or_default();
            if let Err(e) = self.read_at(r.start, head) {
                notes.push(format!(
                    "pid {} region {:x}-{:x} {} {}: not read: {e}",
                    self.pid, r.start, r.end, r.perms, r.name
                ));
                continue;
            }
            w.write_all(&lime_header(r.start, r.end - 1))?;
            w.write_all(buf.get(..first).unwrap_or_default())?;
            let mut at = r.start + first as u64;
            while at < r.end {
                let n = (r.end - at).min(CHUNK) as usize;
                let chunk = buf.get_mut(..n).unwrap_or_default();
                if let Err(e) = self.read_at(at, chunk) {
                    chunk.fill(0);
                    notes.push(format!(
                        "pid {} {:x}-{:x} ({}): written as zeros: {e}",
                        self.pid,
                        at,
                        at + n as u64,
                        r.name
                    ));
                }
                w.write_all(chunk)?;
                at += n as u64;
            }
        }
        Ok(SourceEnd {
            changed: None,
            notes,
            ..SourceEnd::default()
        })
    }

    fn read_at(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mem.seek(SeekFrom::Start(addr))?;
        self.mem.read_exact(buf)
    }
}

/// A LiME range header: magic, version, first and last address (inclusive), 8 reserved bytes.
fn lime_header(start: u64, last: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    let fields = [
        (0, u64::from(LIME_MAGIC) | (u64::from(LIME_VERSION) << 32)),
        (8, start),
        (16, last),
    ];
    for (at, v) in fields {
        if let Some(s) = h.get_mut(at..at + 8) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let text = "55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234 /usr/bin/cat\n\
                    7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]\n\
                    7f0000000000-7f0000001000 ---p 00000000 00:00 0\n";
        let r = parse_maps(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, 0x55d0_c0a0_0000);
        assert_eq!(r[0].name, "/usr/bin/cat");
        assert_eq!(r[1].name, "[stack]");
        assert_eq!(r[2].name, "");
    }

    #[test]
    fn lime_header_layout() {
        let h = lime_header(0x1000, 0x1fff);
        assert_eq!(&h[0..4], &0x4C69_4D45u32.to_le_bytes());
        assert_eq!(&h[4..8], &1u32.to_le_bytes());
        assert_eq!(&h[8..16], &0x1000u64.to_le_bytes());
        assert_eq!(&h[16..24], &0x1fffu64.to_le_bytes());
    }

    #[test]
    fn dumps_a_process_with_a_known_marker() {
        // The environment of a process lives in its stack mapping: a marker there must be in the dump.
        let marker = format!("custody-memory-marker-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("CUSTODY_MARKER", &marker)
            .spawn()
            .expect("spawn sleep");
        let pm = ProcessMemory::open(Path::new("/"), child.id()).expect("open child");
        let mut dump = Vec::new();
        pm.into_reader().read_to_end(&mut dump).expect("read");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            &dump[0..4],
            &LIME_MAGIC.to_le_bytes(),
            "starts with a LiME header"
        );
        assert!(
            dump.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "marker not in the dump"
        );
    }

    #[test]
    fn a_missing_process_is_a_clear_error() {
        let err = ProcessMemory::open(Path::new("/"), u32::MAX - 1).expect_err("no such pid");
        assert!(err.to_string().contains("maps"), "{err}");
    }
}
