//! The journal of a resumable upload: which upload it is and which parts the
//! store has confirmed, so that an interrupted acquisition continues where it
//! stopped instead of sending every byte again.
//!
//! One file of JSON lines: a header naming the store, the object key, the
//! upload id and the settings that make the uploaded bytes reproducible
//! (compression level, frame size, part sizes), then one line per confirmed
//! part with its size, SHA-256 and ETag. Each line is flushed to disk before
//! the next part is counted as confirmed; a torn last line (a crash while
//! writing it) is ignored, which only costs that part being sent again.
//!
//! The journal is a local hint, never trusted alone: a part counts as done
//! only if the store lists it with the same ETag and size, and the part
//! produced on the rerun has the same SHA-256. Anything else is sent again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// What identifies an upload and the bytes it must receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub v: u32,
    /// The store's location (no credentials).
    pub location: String,
    /// The object key within the store.
    pub key: String,
    pub upload_id: String,
    /// Everything the stored bytes depend on besides the source.
    pub settings: String,
}

/// A part the store confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub part: i32,
    pub size: u64,
    /// Base64 SHA-256 of the part, as S3 checks it; in the local store's
    /// journals, of the object's bytes from its start to the part's end.
    pub sha256: String,
    pub etag: String,
}

/// A journal read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub header: Header,
    pub parts: BTreeMap<i32, Part>,
}

/// Where a resumable put keeps its journal, and the settings it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeSpec {
    pub path: PathBuf,
    pub settings: String,
}

impl Header {
    pub fn new(location: String, key: String, upload_id: String, settings: String) -> Self {
        Self {
            v: VERSION,
            location,
            key,
            upload_id,
            settings,
        }
    }
}

/// Reads the journal at `path`; `Ok(None)` when there is none or its header
/// is unreadable (nothing can be resumed from it).
pub fn read(path: &Path) -> io::Result<Option<Journal>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = BufReader::new(file).lines();
    let Some(first) = lines.next().transpose()? else {
        return Ok(None);
    };
    let Ok(header) = serde_json::from_str::<Header>(&first) else {
        return Ok(None);
    };
    if header.v != VERSION {
        return Ok(None);
    }
    let mut parts = BTreeMap::new();
    for line in lines {
        // A torn or garbled line ends what can be trusted.
        let Ok(line) = line else { break };
        let Ok(p) = serde_json::from_str::<Part>(&line) else {
            break;
        };
        parts.insert(p.part, p);
    }
    Ok(Some(Journal { header, parts }))
}

/// An open journal that confirmed parts are appended to.
#[derive(Debug)]
pub struct Writer {
    file: File,
}

impl Writer {
    /// Starts a new journal with `header`, replacing any old one atomically.
    pub fn create(path: &Path, header: &Header) -> io::Result<Self> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("a journal path needs a directory"))?;
        crate::private_fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut line = serde_json::to_vec(header).map_err(io::Error::other)?;
        line.push(b'\n');
        tmp.write_all(&line)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        File::open(dir)?.sync_all()?;
        Self::append_to(path)
    }

    /// Opens an existing journal to append to it.
    pub fn append_to(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: OpenOptions::new().append(true).open(path)?,
        })
    }

    /// Records a confirmed part durably.
    pub fn record(&mut self, part: &Part) -> io::Result<()> {
        let mut line = serde_json::to_vec(part).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// The store error for a journal that cannot be written: the upload stops,
/// since a part that is sent but not journalled could not be resumed.
pub fn write_error(location: &str, key: &str, e: io::Error) -> super::StoreError {
    super::StoreError::Io {
        op: "write the upload journal for",
        key: key.to_owned(),
        location: location.to_owned(),
        source: e,
    }
}

/// Removes a journal (after the upload completed or was given up).
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: i32) -> Part {
        Part {
            part: n,
            size: 8 << 20,
            sha256: format!("sum{n}"),
            etag: format!("\"etag{n}\""),
        }
    }

    #[test]
    fn round_trips_and_survives_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads/x.jsonl");
        assert_eq!(read(&path).unwrap(), None);
        let h = Header::new("s3://b".into(), "k".into(), "u1".into(), "zstd=3".into());
        let mut w = Writer::create(&path, &h).unwrap();
        w.record(&part(1)).unwrap();
        w.record(&part(2)).unwrap();
        drop(w);
        // A crash while writing the third line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"part\":3,\"si").unwrap();
        let j = read(&path).unwrap().unwrap();
        assert_eq!(j.header, h);
        assert_eq!(j.parts.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        // A new journal replaces the old one whole.
        let h2 = Header::new("s3://b".into(), "k".into(), "u2".into(), "zstd=3".into());
        Writer::create(&path, &h2).unwrap();
        let j = read(&path).unwrap().unwrap();
        assert_eq!(j.header.upload_id, "u2");
        assert!(j.parts.is_empty());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn an_unreadable_header_is_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, b"not json\n").unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }
}
