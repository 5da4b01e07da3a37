//! The on-disk format of the write-ahead log (spec 01, spec 07's torn-tail
//! versus mid-log corruption rule), and the scanner recovery uses.
//!
//! Layout: the log is a sequence of **batches**, each starting at a
//! multiple of the block size (4096 by default: a whole sector at every
//! supported sector size). A batch is one header, its frames, and zero
//! padding to the next block boundary, all written by one write:
//!
//! ```text
//! batch header (40 bytes): magic u32 | frame count u32 | body length u32 |
//!     reserved u32 | first commit seq u64 | body checksum u64 |
//!     header checksum u64 (over the 32 bytes before it)
//! frame: length u32 (of what follows) | commit seq u64 | txn id u64 |
//!     has event u8 | event id u64 | page count u32 | pages u32… |
//!     payload length u32 | payload | frame checksum u64
//! ```
//!
//! All integers little-endian; checksums are XXH3 64 ([`checksum`]).
//!
//! Guarantees of the scanner:
//! - A batch is accepted whole or not at all (header, body and every frame
//!   checksum must match), so a torn batch never exposes any of its frames.
//! - Because every batch starts on its own block, a torn write of one batch
//!   can only damage that batch's blocks, never an earlier acknowledged one.
//! - Damage followed by no valid batch is a **torn tail** (truncatable).
//!   Damage followed by a valid batch is **mid-log corruption**: the batch
//!   after it was written after the damaged one was synced, so the damaged
//!   one had been acknowledged. The scanner reports it; it never truncates
//!   it away.
//! - With `contiguous_seqs`, commit seqs must run 1, 2, 3, … through the
//!   whole log; a valid batch out of sequence is reported as corruption.

/// Identifies a batch header.
const BATCH_MAGIC: u32 = 0x4457_4231;
/// Bytes in a batch header.
pub const HEADER_LEN: usize = 40;
/// Default block size: batches start on multiples of it.
pub const DEFAULT_BLOCK: u64 = 4096;

/// One commit as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The commit sequence number this frame publishes as.
    pub commit_seq: u64,
    /// The writer's transaction id (not unique by contract).
    pub txn_id: u64,
    /// The event id for exactly-once dedup, if the write carries one.
    pub event_id: Option<u64>,
    /// Pages the commit writes.
    pub pages: Vec<u32>,
    /// The value written to each of those pages.
    pub payload: Vec<u8>,
}

/// XXH3, 64 bit: deterministic, catches torn, zeroed and flipped bytes,
/// and fast enough that recovery scans and batch encoding stay a small
/// part of a run (a byte-at-a-time hash was a tenth of one).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// `n` rounded up to a multiple of `block`.
pub fn align_up(n: u64, block: u64) -> u64 {
    n.div_ceil(block) * block
}

fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    // Written in place: a length placeholder, the body, then the length
    // and the body's checksum (no temporary buffer per frame).
    out.reserve(4 + 41 + 4 * frame.pages.len() + frame.payload.len() + 8);
    let length_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let body_start = out.len();
    out.extend_from_slice(&frame.commit_seq.to_le_bytes());
    out.extend_from_slice(&frame.txn_id.to_le_bytes());
    out.push(u8::from(frame.event_id.is_some()));
    out.extend_from_slice(&frame.event_id.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(frame.pages.len() as u32).to_le_bytes());
    for page in &frame.pages {
        out.extend_from_slice(&page.to_le_bytes());
    }
    out.extend_from_slice(&(frame.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame.payload);
    let body_len = out.len() - body_start;
    let sum = checksum(&out[body_start..]);
    out[length_at..body_start].copy_from_slice(&((body_len + 8) as u32).to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
}

/// One frame's bytes exactly as a batch stores them (length, body,
/// checksum): what a commit makes durable.
pub fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out);
    out
}

/// Encode `frames` as one batch padded to `block`. Returns the bytes and
/// each frame's offset relative to the batch start.
pub fn encode_batch(frames: &[Frame], block: u64) -> (Vec<u8>, Vec<u64>) {
    // The body is encoded in place after a zeroed header, which is filled
    // in once the body's length and checksum are known.
    let mut out = vec![0u8; HEADER_LEN];
    let mut offsets = Vec::with_capacity(frames.len());
    for frame in frames {
        offsets.push(out.len() as u64);
        encode_frame(frame, &mut out);
    }
    let body_len = out.len() - HEADER_LEN;
    let first_seq = frames.first().map_or(0, |f| f.commit_seq);
    let body_sum = checksum(&out[HEADER_LEN..]);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&BATCH_MAGIC.to_le_bytes());
    header.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    header.extend_from_slice(&(body_len as u32).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&first_seq.to_le_bytes());
    header.extend_from_slice(&body_sum.to_le_bytes());
    let header_sum = checksum(&header);
    header.extend_from_slice(&header_sum.to_le_bytes());
    out[..HEADER_LEN].copy_from_slice(&header);
    let padded = align_up(out.len() as u64, block) as usize;
    out.resize(padded, 0);
    (out, offsets)
}

/// A little-endian reader that fails instead of panicking at the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
}

/// The frame at the cursor (length prefix, body, checksum), checked as
/// `check` says; the cursor moves past it.
fn decode_frame(c: &mut Cursor<'_>, check: FrameCheck) -> Option<Frame> {
    let len = c.u32()? as usize;
    let whole = c.take(len)?;
    let body_len = len.checked_sub(8)?;
    let (body, sum) = whole.split_at(body_len);
    let verified = check == FrameCheck::Verified;
    if verified && checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut b = Cursor { bytes: body, at: 0 };
    let commit_seq = b.u64()?;
    let txn_id = b.u64()?;
    let has_event = b.u8()?;
    let event_id = b.u64()?;
    let page_count = b.u32()? as usize;
    let mut pages = Vec::with_capacity(page_count.min(body.len() / 4));
    for _ in 0..page_count {
        pages.push(b.u32()?);
    }
    let payload_len = b.u32()? as usize;
    let payload = b.take(payload_len)?.to_vec();
    if verified && (b.at != body.len() || has_event > 1) {
        return None;
    }
    Some(Frame {
        commit_seq,
        txn_id,
        event_id: (has_event == 1).then_some(event_id),
        pages,
        payload,
    })
}

/// How much of a frame [`decode_frame`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameCheck {
    /// Its checksum, and that its body holds exactly its fields.
    Verified,
    /// Only its length prefix and fields: the known bug's reader.
    Trusted,
}

/// A batch header whose checksum and magic hold.
struct BatchHeader {
    count: usize,
    body_len: usize,
    first_seq: u64,
    body_sum: u64,
}

/// The batch header at `start`, if it is there and its checksum and magic
/// hold.
fn read_header(bytes: &[u8], start: usize) -> Option<BatchHeader> {
    let header = bytes.get(start..start.checked_add(HEADER_LEN)?)?;
    let (covered, sum) = header.split_at(HEADER_LEN - 8);
    if checksum(covered) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut h = Cursor {
        bytes: covered,
        at: 0,
    };
    if h.u32()? != BATCH_MAGIC {
        return None;
    }
    let count = h.u32()? as usize;
    let body_len = h.u32()? as usize;
    let _reserved = h.u32()?;
    Some(BatchHeader {
        count,
        body_len,
        first_seq: h.u64()?,
        body_sum: h.u64()?,
    })
}

/// Known bug (spec 01, off unless a run switches it on): read the batch at
/// `offset` trusting its header and each frame's length prefix, without
/// the body and frame checksums, as a recovery that "salvages" a torn
/// tail would. Bytes past the end of the image read as zeros. Frames are
/// taken until one does not decode; `None` when the header itself is bad
/// or no frame decodes.
pub fn trust_torn_batch(bytes: &[u8], offset: u64, block: u64) -> Option<ScannedBatch> {
    let start = usize::try_from(offset).ok()?;
    let BatchHeader {
        count, body_len, ..
    } = read_header(bytes, start)?;
    let body_start = start + HEADER_LEN;
    let mut body = bytes
        .get(body_start..bytes.len().min(body_start.checked_add(body_len)?))
        .unwrap_or_default()
        .to_vec();
    body.resize(body_len, 0);
    let mut f = Cursor {
        bytes: &body,
        at: 0,
    };
    let mut frames = Vec::new();
    for _ in 0..count {
        let at = offset + (HEADER_LEN + f.at) as u64;
        let Some(frame) = decode_frame(&mut f, FrameCheck::Trusted) else {
            break;
        };
        frames.push((at, frame));
    }
    if frames.is_empty() {
        return None;
    }
    Some(ScannedBatch {
        offset,
        end: align_up(offset + (HEADER_LEN + body_len) as u64, block),
        frames,
    })
}

/// A batch that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedBatch {
    /// Offset of its header.
    pub offset: u64,
    /// Offset just past its padding (where the next batch starts).
    pub end: u64,
    /// Its frames with their absolute offsets.
    pub frames: Vec<(u64, Frame)>,
}

/// Parse the batch at `offset`, if it is whole and every checksum matches.
pub fn parse_batch(bytes: &[u8], offset: u64, block: u64) -> Option<ScannedBatch> {
    let start = usize::try_from(offset).ok()?;
    let BatchHeader {
        count,
        body_len,
        first_seq,
        body_sum,
    } = read_header(bytes, start)?;
    let body_start = start + HEADER_LEN;
    let body = bytes.get(body_start..body_start.checked_add(body_len)?)?;
    if checksum(body) != body_sum {
        return None;
    }
    let mut f = Cursor { bytes: body, at: 0 };
    let mut frames = Vec::with_capacity(count.min(body_len / 8));
    for _ in 0..count {
        let at = offset + (HEADER_LEN + f.at) as u64;
        frames.push((at, decode_frame(&mut f, FrameCheck::Verified)?));
    }
    let seqs_ok = frames
        .first()
        .is_none_or(|(_, frame)| frame.commit_seq == first_seq);
    if f.at != body.len() || !seqs_ok {
        return None;
    }
    Some(ScannedBatch {
        offset,
        end: align_up(offset + (HEADER_LEN + body_len) as u64, block),
        frames,
    })
}

/// What recovery found in a log image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The log ends cleanly, or in a torn tail that may be truncated.
    Clean {
        /// Length of the valid prefix (a block multiple).
        valid_len: u64,
        /// Bytes past the valid prefix (a torn or never-synced tail).
        torn_tail_bytes: u64,
    },
    /// Damage at `offset` with a valid batch after it at
    /// `next_valid_offset`: acknowledged data is corrupt.
    MidLogCorruption {
        /// Where the damage starts.
        offset: u64,
        /// Where the next valid batch starts.
        next_valid_offset: u64,
    },
    /// A valid batch whose first commit seq breaks the sequence.
    SequenceBreak {
        /// The batch's offset.
        offset: u64,
        /// The seq the log needed next.
        expected: u64,
        /// The seq the batch starts with.
        found: u64,
    },
}

/// A scanned log: the valid batches and the verdict on the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Valid batches, in log order (up to the damage, if any).
    pub batches: Vec<ScannedBatch>,
    /// The verdict.
    pub outcome: ScanOutcome,
}

impl Scan {
    /// Every valid frame with its offset, in log order.
    pub fn frames(&self) -> impl Iterator<Item = &(u64, Frame)> {
        self.batches.iter().flat_map(|b| b.frames.iter())
    }
}

/// Scan a log image. With `contiguous_seqs`, commit seqs must run from 1
/// without gaps.
pub fn scan(bytes: &[u8], block: u64, contiguous_seqs: bool) -> Scan {
    let len = bytes.len() as u64;
    let mut batches: Vec<ScannedBatch> = Vec::new();
    let mut at = 0u64;
    let mut expected = 1u64;
    while at < len {
        let Some(batch) = parse_batch(bytes, at, block) else {
            let later = (1..)
                .map(|i| at + i * block)
                .take_while(|&q| q < len)
                .find(|&q| parse_batch(bytes, q, block).is_some());
            let outcome = match later {
                Some(next_valid_offset) => ScanOutcome::MidLogCorruption {
                    offset: at,
                    next_valid_offset,
                },
                None => ScanOutcome::Clean {
                    valid_len: at,
                    torn_tail_bytes: len - at,
                },
            };
            return Scan { batches, outcome };
        };
        if let Some((_, first)) = batch.frames.first() {
            if contiguous_seqs && first.commit_seq != expected {
                return Scan {
                    batches,
                    outcome: ScanOutcome::SequenceBreak {
                        offset: at,
                        expected,
                        found: first.commit_seq,
                    },
                };
            }
            expected = first.commit_seq + batch.frames.len() as u64;
        }
        at = batch.end;
        batches.push(batch);
    }
    // `at` may pass the image's end when the last batch is whole but lost
    // some of its zero padding: the valid length stays block-aligned (the
    // recovery pads the image back), so the next batch starts on a fresh
    // block.
    Scan {
        batches,
        outcome: ScanOutcome::Clean {
            valid_len: at,
            torn_tail_bytes: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            commit_seq: seq,
            txn_id: seq * 10,
            event_id: (seq % 2 == 0).then_some(seq + 100),
            pages: vec![seq as u32, 7],
            payload: vec![seq as u8; 5],
        }
    }

    #[test]
    fn a_batch_round_trips_and_reports_frame_offsets() {
        let frames = vec![frame(1), frame(2)];
        let (bytes, offsets) = encode_batch(&frames, DEFAULT_BLOCK);
        assert_eq!(bytes.len() as u64, DEFAULT_BLOCK);
        let batch = parse_batch(&bytes, 0, DEFAULT_BLOCK).expect("valid batch");
        let got: Vec<(u64, Frame)> = offsets.into_iter().zip(frames).collect();
        assert_eq!(batch.frames, got);
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_batch_rejects_the_whole_batch() {
        let (bytes, _) = encode_batch(&[frame(1), frame(2)], DEFAULT_BLOCK);
        let used = HEADER_LEN + 2 * 58; // two 58-byte frames
        for i in (0..used).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert_eq!(parse_batch(&damaged, 0, DEFAULT_BLOCK), None, "byte {i}");
        }
    }

    #[test]
    fn damage_before_a_valid_batch_is_mid_log_corruption_not_a_tail() {
        let (a, _) = encode_batch(&[frame(1)], DEFAULT_BLOCK);
        let (b, _) = encode_batch(&[frame(2)], DEFAULT_BLOCK);
        let mut log = [a, b].concat();
        log[50] ^= 1;
        let scan = scan(&log, DEFAULT_BLOCK, true);
        assert_eq!(
            scan.outcome,
            ScanOutcome::MidLogCorruption {
                offset: 0,
                next_valid_offset: DEFAULT_BLOCK
            }
        );
        let (c, _) = encode_batch(&[frame(3)], DEFAULT_BLOCK);
        log[50] ^= 1; // undo: from here on only the tail is damaged
        let torn = [log.clone(), c[..70].to_vec()].concat();
        let scan2 = super::scan(&torn, DEFAULT_BLOCK, true);
        assert_eq!(
            scan2.outcome,
            ScanOutcome::Clean {
                valid_len: 2 * DEFAULT_BLOCK,
                torn_tail_bytes: 70
            }
        );
        assert_eq!(scan2.frames().count(), 2);
    }

    #[test]
    fn a_whole_last_batch_missing_only_padding_is_kept_and_the_length_stays_aligned() {
        let (a, _) = encode_batch(&[frame(1)], DEFAULT_BLOCK);
        let (b, _) = encode_batch(&[frame(2)], DEFAULT_BLOCK);
        let image = [a, b[..HEADER_LEN + 58].to_vec()].concat();
        let scanned = scan(&image, DEFAULT_BLOCK, true);
        assert_eq!(
            scanned.outcome,
            ScanOutcome::Clean {
                valid_len: 2 * DEFAULT_BLOCK,
                torn_tail_bytes: 0
            }
        );
        assert_eq!(scanned.frames().count(), 2);
    }

    #[test]
    fn a_gap_in_commit_seqs_is_reported() {
        let (a, _) = encode_batch(&[frame(1)], DEFAULT_BLOCK);
        let (b, _) = encode_batch(&[frame(3)], DEFAULT_BLOCK);
        let scan = scan(&[a, b].concat(), DEFAULT_BLOCK, true);
        assert_eq!(
            scan.outcome,
            ScanOutcome::SequenceBreak {
                offset: DEFAULT_BLOCK,
                expected: 2,
                found: 3
            }
        );
    }
}
