//! The on-disk encoding of a channel (spec 05): schema-versioned, every
//! time an integer number of milliseconds, checksummed.
//!
//! A channel file holds the meta blob (itself versioned: it is the unit
//! `save_channel_meta` writes), the delivered history and the retrieval
//! hints:
//!
//! ```text
//! file  = "DSNF" version:u16 body_len:u32 body checksum:u64   (xxh3 of version..body)
//! body  = has_meta:u8 [meta_len:u32 meta] n:u32 id:u64*n  n:u32 (id:u64 hint:u64)*n
//! meta  = "DSNM" version:u16 lamport:u64
//!         n:u32 (id:u64 resends:u32)*n                    outgoing
//!         n:u32 (id:u64 m:u32 missing:u64*m)*n            incoming
//!         n:u32 (id:u64 due_ms:u64)*n                     repair out
//!         n:u32 (id:u64 due_ms:u64)*n                     repair in
//! ```
//!
//! Decoding an unknown version is an error ([`CodecError::UnknownVersion`]),
//! never a silent truncation; so is any byte out of place.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{ChannelMeta, OutgoingEntry};
use super::store::ChannelData;
use super::MsgId;
use crate::systems::wal_format::checksum;

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: u16 = 1;
const FILE_MAGIC: &[u8; 4] = b"DSNF";
const META_MAGIC: &[u8; 4] = b"DSNM";

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not one of ours.
    #[error("bad magic: not a snapshot {0}")]
    BadMagic(&'static str),
    /// Written by a schema this code does not know.
    #[error("unknown schema version {found} (this build reads version {SCHEMA_VERSION})")]
    UnknownVersion {
        /// The version found.
        found: u16,
    },
    /// Ends early.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Checksum mismatch: torn or corrupt.
    #[error("checksum mismatch: the channel file is torn or corrupt")]
    Checksum,
    /// Bytes left over after a complete value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(CodecError::Truncated(self.what))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(CodecError::Truncated(self.what))?;
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A count, bounded by what the remaining bytes could hold.
    fn count(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.bytes.len() - self.at {
            return Err(CodecError::Truncated(self.what));
        }
        Ok(n)
    }
    fn version(&mut self, magic: &[u8; 4], what: &'static str) -> Result<(), CodecError> {
        if self.take(4).map_err(|_| CodecError::BadMagic(what))? != magic {
            return Err(CodecError::BadMagic(what));
        }
        match self.u16()? {
            SCHEMA_VERSION => Ok(()),
            found => Err(CodecError::UnknownVersion { found }),
        }
    }
    fn done(&self) -> Result<(), CodecError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Encode a meta blob.
pub fn encode_meta(meta: &ChannelMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(META_MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    out.extend_from_slice(&meta.lamport.to_le_bytes());
    put_u32(&mut out, meta.outgoing.len());
    for (id, entry) in &meta.outgoing {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&entry.resend_count.to_le_bytes());
    }
    put_u32(&mut out, meta.incoming.len());
    for (id, missing) in &meta.incoming {
        out.extend_from_slice(&id.to_le_bytes());
        put_u32(&mut out, missing.len());
        for m in missing {
            out.extend_from_slice(&m.to_le_bytes());
        }
    }
    for repairs in [&meta.repair_out, &meta.repair_in] {
        put_u32(&mut out, repairs.len());
        for (id, due_ms) in repairs {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&due_ms.to_le_bytes());
        }
    }
    out
}

/// Decode a meta blob.
pub fn decode_meta(bytes: &[u8]) -> Result<ChannelMeta, CodecError> {
    let mut r = Reader {
        bytes,
        at: 0,
        what: "meta blob",
    };
    r.version(META_MAGIC, "meta blob")?;
    let mut meta = ChannelMeta {
        lamport: r.u64()?,
        ..ChannelMeta::default()
    };
    for _ in 0..r.count(12)? {
        let id = r.u64()?;
        let resend_count = r.u32()?;
        meta.outgoing.insert(id, OutgoingEntry { resend_count });
    }
    for _ in 0..r.count(12)? {
        let id = r.u64()?;
        let mut missing = BTreeSet::new();
        for _ in 0..r.count(8)? {
            missing.insert(r.u64()?);
        }
        meta.incoming.insert(id, missing);
    }
    for repairs in [&mut meta.repair_out, &mut meta.repair_in] {
        for _ in 0..r.count(16)? {
            let id = r.u64()?;
            repairs.insert(id, r.u64()?);
        }
    }
    r.done()?;
    Ok(meta)
}

/// Encode a whole channel file.
pub fn encode_file(data: &ChannelData) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    match &data.meta {
        Some(meta) => {
            body.push(1);
            let blob = encode_meta(meta);
            put_u32(&mut body, blob.len());
            body.extend_from_slice(&blob);
        }
        None => body.push(0),
    }
    put_u32(&mut body, data.history.len());
    for id in &data.history {
        body.extend_from_slice(&id.to_le_bytes());
    }
    put_u32(&mut body, data.hints.len());
    for (id, hint) in &data.hints {
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&hint.to_le_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 18);
    out.extend_from_slice(FILE_MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    put_u32(&mut out, body.len());
    out.extend_from_slice(&body);
    let sum = checksum(&out[4..]);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Decode a whole channel file.
pub fn decode_file(bytes: &[u8]) -> Result<ChannelData, CodecError> {
    let mut r = Reader {
        bytes,
        at: 0,
        what: "channel file",
    };
    r.version(FILE_MAGIC, "channel file")?;
    let len = r.u32()? as usize;
    let body = r.take(len)?;
    let covered = &bytes[4..r.at];
    if r.u64()? != checksum(covered) {
        return Err(CodecError::Checksum);
    }
    r.done()?;
    let mut r = Reader {
        bytes: body,
        at: 0,
        what: "channel body",
    };
    let meta = match r.u8()? {
        0 => None,
        _ => {
            let n = r.count(1)?;
            Some(decode_meta(r.take(n)?)?)
        }
    };
    let mut history: Vec<MsgId> = Vec::new();
    for _ in 0..r.count(8)? {
        history.push(r.u64()?);
    }
    let mut hints = BTreeMap::new();
    for _ in 0..r.count(16)? {
        let id = r.u64()?;
        hints.insert(id, r.u64()?);
    }
    r.done()?;
    Ok(ChannelData {
        meta,
        history,
        hints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChannelData {
        let mut meta = ChannelMeta {
            lamport: 42,
            ..ChannelMeta::default()
        };
        meta.outgoing.insert(7, OutgoingEntry { resend_count: 2 });
        meta.incoming.insert(9, [3, 4].into_iter().collect());
        meta.repair_out.insert(5, 1_234_567);
        meta.repair_in.insert(3, 99);
        ChannelData {
            meta: Some(meta),
            history: vec![1, 2, 5],
            hints: [(7, 42)].into_iter().collect(),
        }
    }

    #[test]
    fn a_channel_round_trips() {
        let data = sample();
        assert_eq!(decode_file(&encode_file(&data)), Ok(data));
    }

    #[test]
    fn an_unknown_version_is_a_loud_error() {
        let mut bytes = encode_meta(&sample().meta.unwrap_or_default());
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            decode_meta(&bytes),
            Err(CodecError::UnknownVersion { found: 2 })
        );
        let mut file = encode_file(&sample());
        file[4..6].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(
            decode_file(&file),
            Err(CodecError::UnknownVersion { found: 9 })
        );
    }

    #[test]
    fn every_torn_prefix_and_every_flipped_byte_is_rejected() {
        let file = encode_file(&sample());
        for len in 0..file.len() {
            assert!(decode_file(&file[..len]).is_err(), "prefix {len} decoded");
        }
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(decode_file(&bad).is_err(), "flip at {at} decoded");
        }
    }
}
