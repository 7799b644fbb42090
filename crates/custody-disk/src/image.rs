//! Random access to a disk image: [`ReadAt`], over a raw file, bytes in
//! memory, or a [`Window`] of another (a volume of a disk).

use std::io;
use std::sync::Arc;

/// Reads at any offset; what the volume and file-system readers see.
pub trait ReadAt: Send + Sync {
    /// Fills as much of `buf` as the image holds from `offset`; returns how
    /// many bytes that was (fewer only at the image's end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The image's size in bytes.
    fn size(&self) -> u64;

    /// A hint that `len` bytes from `offset` will be read soon, so a reader
    /// that fetches or decodes ahead may start on them now. It changes no
    /// answer; the default ignores it.
    fn will_need(&self, _offset: u64, _len: u64) {}

    /// `len` bytes from `offset`, or an error naming the offset when the
    /// image ends first (a cut image, a pointer past the end).
    fn read_exact_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let n = self.read_at(offset + done as u64, rest)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the image ends at byte {}, inside {len} bytes read at {offset}",
                        offset + done as u64
                    ),
                ));
            }
            done += n;
        }
        Ok(buf)
    }
}

/// A raw image file (or block device) on this machine.
#[derive(Debug)]
pub struct FileImage {
    file: std::fs::File,
    size: u64,
}

impl FileImage {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        use std::io::Seek as _;
        let mut file = std::fs::File::open(path)?;
        // A block device reports no length in its metadata: seek to its end.
        let size = file.seek(io::SeekFrom::End(0))?;
        Ok(Self { file, size })
    }
}

impl ReadAt for FileImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        if offset >= self.size {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
        let mut done = 0;
        while done < want {
            let rest = buf.get_mut(done..want).unwrap_or_default();
            match self.file.read_at(rest, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn size(&self) -> u64 {
        self.size
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let part = self.get(from..).unwrap_or_default();
        let n = part.len().min(buf.len());
        if let (Some(to), Some(src)) = (buf.get_mut(..n), part.get(..n)) {
            to.copy_from_slice(src);
        }
        Ok(n)
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// A range of another image, read as an image of its own: a partition, a
/// logical volume's linear segment. Reads stop at the window's end.
#[derive(Clone)]
pub struct Window {
    inner: Arc<dyn ReadAt>,
    start: u64,
    len: u64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Window {
    /// `len` bytes from `start` of `inner`; a window that reaches past the
    /// image's end reads short there, as a cut image does.
    pub fn new(inner: Arc<dyn ReadAt>, start: u64, len: u64) -> Self {
        Self { inner, start, len }
    }

    /// Where the window starts in the image it views.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl ReadAt for Window {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.len - offset).unwrap_or(usize::MAX));
        let Some(at) = self.start.checked_add(offset) else {
            return Ok(0);
        };
        self.inner
            .read_at(at, buf.get_mut(..want).unwrap_or_default())
    }

    fn size(&self) -> u64 {
        self.len
    }

    fn will_need(&self, offset: u64, len: u64) {
        if offset < self.len
            && let Some(at) = self.start.checked_add(offset)
        {
            self.inner.will_need(at, len.min(self.len - offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn a_file_image_reads_what_it_holds_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, data(10_000)).unwrap();
        let img = FileImage::open(&path).unwrap();
        assert_eq!(img.size(), 10_000);
        let mut buf = [0u8; 100];
        assert_eq!(img.read_at(9_950, &mut buf).unwrap(), 50);
        assert_eq!(img.read_at(10_000, &mut buf).unwrap(), 0);
        let err = img.read_exact_at(9_990, 20).unwrap_err();
        assert!(err.to_string().contains("ends at byte 10000"), "{err}");
    }

    #[test]
    fn a_window_reads_only_its_range() {
        let raw = data(10_000);
        let w = Window::new(Arc::new(raw.clone()), 1000, 500);
        assert_eq!(w.size(), 500);
        assert_eq!(w.read_exact_at(0, 500).unwrap(), raw[1000..1500]);
        let mut buf = [0u8; 100];
        assert_eq!(w.read_at(450, &mut buf).unwrap(), 50);
        assert_eq!(w.read_at(500, &mut buf).unwrap(), 0);
        // A window past the image's end reads short, as a cut image does.
        let cut = Window::new(Arc::new(raw), 9_900, 500);
        assert_eq!(cut.read_at(0, &mut [0u8; 300]).unwrap(), 100);
    }
}
