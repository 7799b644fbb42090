//! A file, a raw image or a block device, read once from start to end.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{CollectError, Collected, Collector, SourceEnd, SourceReader};
use crate::evidence::case::{AcquireContext, AcquireRequest, acquire, record_failure};
use crate::evidence::{ArtefactKind, Source};
use crate::ids::CaseId;
use crate::ledger::entry::Place;

/// What a file looked like, to tell whether it changed while it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// A file opened for acquisition. Notices a file that grows, shrinks or is
/// modified while it is read, and says so in the artefact.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    block_device: bool,
    before: Shape,
    read: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, CollectError> {
        let shown = path.display().to_string();
        let open_err = |source| CollectError::Open {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Err(CollectError::IsDirectory { path: shown });
        }
        let mut file = File::open(path).map_err(open_err)?;
        let block_device = meta.file_type().is_block_device();
        let before = shape(&mut file, block_device).map_err(open_err)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            block_device,
            before,
            read: 0,
        })
    }

    pub fn len(&self) -> u64 {
        self.before.len
    }

    pub fn is_empty(&self) -> bool {
        self.before.len == 0
    }
}

fn shape(file: &mut File, block_device: bool) -> io::Result<Shape> {
    let meta = file.metadata()?;
    let len = if block_device {
        // A block device's metadata says 0; its size is where a seek to the end lands.
        let pos = file.stream_position()?;
        let end = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(pos))?;
        end
    } else {
        meta.len()
    };
    Ok(Shape {
        len,
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

impl Read for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl SourceReader for FileSource {
    fn finish(&mut self) -> io::Result<SourceEnd> {
        let after = shape(&mut self.file, self.block_device)?;
        let mut changes = Vec::new();
        if after.len != self.before.len {
            changes.push(format!(
                "size went from {} to {} bytes",
                self.before.len, after.len
            ));
        }
        if self.read != self.before.len && after.len == self.before.len {
            changes.push(format!(
                "read {} bytes of a {}-byte source",
                self.read, self.before.len
            ));
        }
        if after.modified != self.before.modified {
            changes.push("modification time changed".to_owned());
        }
        // Renamed over while open: what was read is the old file.
        if let Ok(now) = std::fs::metadata(&self.path)
            && now.ino() != self.before.inode
            && !self.block_device
        {
            changes.push("the path now names another file".to_owned());
        }
        let changed = (!changes.is_empty()).then(|| {
            format!(
                "{} changed during acquisition: {}",
                self.path.display(),
                changes.join("; ")
            )
        });
        Ok(SourceEnd {
            changed,
            notes: Vec::new(),
            ..SourceEnd::default()
        })
    }
}

/// `custody acquire file PATH`.
#[derive(Debug, Clone)]
pub struct FileCollector {
    pub path: PathBuf,
    pub kind: ArtefactKind,
    /// For an exported log (`custody logs import`): its format, recorded
    /// with the artefact so the timeline knows how to read it.
    pub log_format: Option<String>,
}

#[async_trait]
impl Collector for FileCollector {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn collect(
        &self,
        ctx: &AcquireContext,
        case: &CaseId,
    ) -> Result<Collected, CollectError> {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let source = FileSource::open(&path).inspect_err(|e| {
            let place = Place {
                resource: "file".into(),
                path: Some(path.display().to_string()),
                ..Place::default()
            };
            record_failure(ctx, case, Some(place), &crate::error_chain(e));
        })?;
        let size = source.len();
        let resource = if source.block_device {
            "block-device"
        } else {
            "file"
        };
        let artefact = acquire(
            ctx,
            AcquireRequest {
                case: case.clone(),
                kind: self.kind,
                source: Source {
                    resource: resource.to_owned(),
                    host: Some(super::hostname()),
                    path: Some(path.display().to_string()),
                    log_format: self.log_format.clone(),
                    ..Source::default()
                },
                reader: Box::new(source),
                size_hint: Some(size),
                notes: Vec::new(),
            },
        )
        .await?;
        Ok(Collected {
            artefacts: vec![artefact],
            failures: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn notices_a_file_that_grows_while_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("grow.log");
        std::fs::write(&p, vec![1u8; 10_000]).expect("write");
        let mut src = FileSource::open(&p).expect("open");
        let mut buf = vec![0u8; 4096];
        src.read_exact(&mut buf).expect("read");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("append")
            .write_all(b"more")
            .expect("write");
        let mut rest = Vec::new();
        src.read_to_end(&mut rest).expect("read");
        let end = src.finish().expect("finish");
        let changed = end.changed.expect("must notice");
        assert!(
            changed.contains("size went from 10000 to 10004"),
            "{changed}"
        );
    }

    #[test]
    fn notices_a_file_that_shrinks_while_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("shrink.img");
        std::fs::write(&p, vec![1u8; 10_000]).expect("write");
        let mut src = FileSource::open(&p).expect("open");
        let mut buf = vec![0u8; 100];
        src.read_exact(&mut buf).expect("read");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open")
            .set_len(500)
            .expect("truncate");
        let mut rest = Vec::new();
        src.read_to_end(&mut rest).expect("read");
        let changed = src.finish().expect("finish").changed.expect("must notice");
        assert!(changed.contains("size went from 10000 to 500"), "{changed}");
    }

    #[test]
    fn an_unchanged_file_is_not_flagged() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("still.img");
        std::fs::write(&p, vec![1u8; 10_000]).expect("write");
        let mut src = FileSource::open(&p).expect("open");
        let mut all = Vec::new();
        src.read_to_end(&mut all).expect("read");
        assert_eq!(src.finish().expect("finish"), SourceEnd::default());
    }

    #[test]
    fn refuses_missing_paths_and_directories() {
        let err = FileSource::open(Path::new("/nonexistent/disk.img")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
        let dir = tempfile::tempdir().expect("tmp");
        let err = FileSource::open(dir.path()).expect_err("dir");
        assert!(matches!(err, CollectError::IsDirectory { .. }));
    }
}
