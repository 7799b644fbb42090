//! Derived artefacts against their parent: a file extracted from a disk
//! image is read again from the stored image through the extents its
//! manifest records, and must hash to what was recorded.

use std::io;
use std::sync::Arc;

use custody_disk::{ReadAt, fs};
use sha2::Digest as _;

use super::image::StoredImage;
use crate::evidence::Artefact;
use crate::evidence::case::object_key;
use crate::store::EvidenceStore;

/// A derived file's bytes, read from the image through its extents.
pub struct ExtentReader {
    img: Arc<dyn ReadAt>,
    extents: Vec<(u64, Option<u64>, u64)>,
    size: u64,
    pos: u64,
}

impl ExtentReader {
    pub fn new(img: Arc<dyn ReadAt>, extents: Vec<(u64, Option<u64>, u64)>, size: u64) -> Self {
        Self {
            img,
            extents,
            size,
            pos: 0,
        }
    }
}

impl io::Read for ExtentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let extents: Vec<fs::Extent> = self
            .extents
            .iter()
            .filter(|(l, _, n)| l.saturating_add(*n) > self.pos)
            .take(4)
            .map(|&(logical, physical, len)| fs::Extent {
                logical,
                physical,
                len,
            })
            .collect();
        let want = buf.len().min(1 << 20);
        let n = fs::read_data(
            self.img.as_ref(),
            &extents,
            self.size,
            self.pos,
            buf.get_mut(..want).unwrap_or_default(),
        )
        .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl crate::evidence::pipeline::SourceReader for ExtentReader {}

/// Why a derived artefact does not match its parent: each a sentence.
pub async fn recheck(
    store: Arc<dyn EvidenceStore>,
    artefacts: &[Artefact],
    a: &Artefact,
) -> Vec<String> {
    let Some(d) = &a.derived else {
        return Vec::new();
    };
    let Some(parent) = artefacts.iter().find(|p| p.id == d.parent) else {
        return vec![format!("its parent {} is not in the case", d.parent)];
    };
    let mut problems = Vec::new();
    if parent.raw.sha256 != d.parent_sha256 {
        problems.push(format!(
            "its parent {} has SHA-256 {}, not the {} it was derived from",
            parent.id, parent.raw.sha256, d.parent_sha256
        ));
    }
    // What custody wrote (a bodyfile) has no extents: its own digests,
    // checked with every artefact, are its custody.
    if d.extents.is_empty() {
        return problems;
    }
    let outside = d
        .extents
        .iter()
        .filter_map(|&(_, p, n)| p.map(|p| p.saturating_add(n)))
        .any(|end| end > parent.raw.size);
    if outside {
        problems.push(format!(
            "its extents reach past the end of its parent ({} bytes)",
            parent.raw.size
        ));
        return problems;
    }
    let key = match object_key(&parent.case, &parent.id) {
        Ok(k) => k,
        Err(e) => {
            problems.push(e.to_string());
            return problems;
        }
    };
    let img = match StoredImage::open(store, key).await {
        Ok(i) => Arc::new(i),
        Err(e) => {
            problems.push(format!(
                "its parent cannot be read in place: {}",
                crate::error_chain(&e)
            ));
            return problems;
        }
    };
    let extents = d.extents.clone();
    let size = a.raw.size;
    let hashed = tokio::task::spawn_blocking(move || -> io::Result<(u64, String)> {
        let mut r = ExtentReader::new(img, extents, size);
        let mut h = sha2::Sha256::new();
        let n = io::copy(&mut r, &mut HashWriter(&mut h))?;
        Ok((n, hex::encode(h.finalize())))
    })
    .await;
    match hashed {
        Ok(Ok((n, sha))) if n == a.raw.size && sha == a.raw.sha256 => {}
        Ok(Ok((n, sha))) => problems.push(format!(
            "re-read from its parent's extents it is {n} bytes with SHA-256 {sha}, recorded {} bytes with {}",
            a.raw.size, a.raw.sha256
        )),
        Ok(Err(e)) => problems.push(format!("re-reading it from its parent failed: {e}")),
        Err(e) => problems.push(format!("re-reading it from its parent failed: {e}")),
    }
    problems
}

struct HashWriter<'a>(&'a mut sha2::Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_reads_across_extents_and_holes() {
        use std::io::Read as _;
        let img: Arc<dyn ReadAt> = Arc::new((0..=255u8).collect::<Vec<u8>>());
        let mut r = ExtentReader::new(
            img,
            vec![(0, Some(10), 3), (3, None, 2), (5, Some(200), 3)],
            8,
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, [10, 11, 12, 0, 0, 200, 201, 202]);
    }
}
