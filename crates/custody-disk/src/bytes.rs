//! Little- and big-endian fields of on-disk structures, read without
//! panicking: a field that lies past the end of its buffer reads as zero,
//! so callers check lengths where a short buffer matters.

pub fn u8_at(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut x = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        x.copy_from_slice(s);
    }
    x
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(b, at))
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(b, at))
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(b, at))
}

/// `len` bytes at `at`, or fewer (possibly none) where `b` ends first.
pub fn slice(b: &[u8], at: usize, len: usize) -> &[u8] {
    let end = at.saturating_add(len).min(b.len());
    b.get(at.min(end)..end).unwrap_or_default()
}
