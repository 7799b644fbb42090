//! C2SP `tlog-proof` documents: an entry's index, its inclusion proof, and
//! the signed checkpoint the proof leads to.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;

pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    pub index: u64,
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
    pub extra: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a tlog-proof document: {0}")]
pub struct ProofFormatError(pub String);

impl TlogProof {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&STANDARD.encode(h.0));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint);
        bytes
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ProofFormatError> {
        let err = |m: &str| ProofFormatError(m.to_owned());
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| err("no blank line before the checkpoint"))?;
        let head = std::str::from_utf8(bytes.get(..split).unwrap_or_default())
            .map_err(|_| err("header is not UTF-8"))?;
        let checkpoint = bytes.get(split + 2..).unwrap_or_default().to_vec();
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(err("first line must be c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| err("missing index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| err("extra is not base64"))?,
            );
            line = lines.next().ok_or_else(|| err("missing index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|n| {
                !n.is_empty()
                    && (n == &"0" || !n.starts_with('0'))
                    && n.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err("bad index line"))?;
        let hashes = lines
            .map(|l| {
                let raw = STANDARD
                    .decode(l)
                    .map_err(|_| err("proof hash is not base64"))?;
                let arr: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| err("proof hash is not 32 bytes"))?;
                Ok(Hash(arr))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if checkpoint.is_empty() {
            return Err(err("no checkpoint"));
        }
        Ok(Self {
            index,
            hashes,
            checkpoint,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let p = TlogProof {
            index: 73894,
            hashes: vec![Hash([1; 32]), Hash([2; 32])],
            checkpoint: b"origin\n5\nAAAA\n\n\xe2\x80\x94 origin sig\n".to_vec(),
            extra: Some(b"meta".to_vec()),
        };
        let bytes = p.to_bytes();
        assert!(bytes.starts_with(b"c2sp.org/tlog-proof@v1\nextra bWV0YQ==\nindex 73894\n"));
        assert_eq!(TlogProof::parse(&bytes).expect("parse"), p);
        for bad in [
            &b"nope\n\nx"[..],
            b"c2sp.org/tlog-proof@v1\nindex 01\n\nx",
            b"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx",
        ] {
            assert!(
                TlogProof::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
