//! How far compressed log input (gzip) may expand when it is parsed: the
//! `[decompress]` setting. It lives outside the timeline module because the
//! settings read it in every build; the timeline's parsers enforce it.

/// How far compressed input (gzip) may expand before parsing. Parsers read
/// a file from memory (a JSON document needs all of it), so this is also the
/// bound on the memory one file or bundle member takes. Input past the
/// limit is not read: a problem names the member and the limit, and
/// what precedes it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateLimits {
    /// Bytes one file may expand to, whatever its compressed size.
    pub max_bytes: u64,
    /// Expanded bytes per compressed byte, once past [`InflateLimits::FLOOR`].
    pub max_ratio: u64,
}

impl InflateLimits {
    /// 1 GiB: larger than any CloudTrail, flow-log or access-log object and
    /// than a week of a busy host's rotated syslog, and still held in
    /// memory on a responder's laptop. 100:1: gzip shrinks logs 5 to 20
    /// times (CloudTrail JSON about 10, syslog about 8), so real logs stay
    /// five times below it, while deflate's own ceiling is about 1032:1:
    /// a ratio of 1000 would stop no gzip bomb at all. At 100:1 a bomb of
    /// N bytes holds at most 100 N bytes of memory.
    pub const DEFAULT: Self = Self {
        max_bytes: 1 << 30,
        max_ratio: 100,
    };
    /// 64 MiB: below this any ratio is allowed; a small file of one
    /// repeated line is harmless however well it compresses.
    pub const FLOOR: u64 = 64 << 20;

    /// The most `compressed` bytes may expand to.
    pub fn budget(&self, compressed: u64) -> u64 {
        self.max_ratio
            .saturating_mul(compressed)
            .max(Self::FLOOR)
            .min(self.max_bytes)
    }
}

impl Default for InflateLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
