//! Append-only files for the store's large immutable values (a block's
//! transactions and stored records), beside sled rather than inside it.
//!
//! sled keeps at most 16 keys in a leaf and rewrites a whole leaf when it
//! consolidates (every 10 updates) or splits it, so a leaf holding a run of
//! megabyte values is written three to four times over: measured 2026-12-07,
//! 8.0 KB written per imported record for 2.0 KB kept. Values written here are
//! written once. sled keeps only a small pointer (segment, offset, length,
//! item count) in the same atomic batch as everything else.
//!
//! **Durability order:** [`ValueLog::append`] writes, [`ValueLog::sync`] makes
//! the bytes durable (fdatasync, and the directory after a new segment), and
//! only then does the store commit the batch with the pointers. A crash in
//! between leaves bytes at a segment's end that no pointer names; they are
//! never read, and appends continue after them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::store::StoreError;

/// Largest segment file; a new one starts when the next value would not fit.
const SEGMENT_BYTES: u64 = 1 << 30;

/// Where a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Segment number.
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

impl Extent {
    /// Encoded length.
    pub const LEN: usize = 16;
    /// `u32 segment ‖ u64 offset ‖ u32 len`, big-endian.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..4].copy_from_slice(&self.segment.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.len.to_be_bytes());
        out
    }
    /// The inverse of [`Extent::encode`].
    pub fn decode(b: &[u8]) -> Option<Extent> {
        Some(Extent {
            segment: u32::from_be_bytes(b.get(0..4)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
            len: u32::from_be_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }
}

struct Tail {
    segment: u32,
    len: u64,
    /// Segments written since the last sync.
    dirty: Vec<u32>,
    /// A segment was created since the last sync (the directory needs one too).
    created: bool,
}

/// The segment files of one store.
pub struct ValueLog {
    dir: PathBuf,
    files: RwLock<Vec<File>>,
    tail: Mutex<Tail>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    let m = format!("value log: {what} {}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::StorageFull {
        StoreError::Full(m)
    } else {
        StoreError::Backend(m)
    }
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.vlog"))
}

impl ValueLog {
    /// Opens the segments in `dir` (created if missing). Segment numbers must
    /// run from 0 without a gap: a missing segment is refused, not skipped.
    pub fn open(dir: &Path) -> Result<ValueLog, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
            let entry = entry.map_err(|e| io("list", dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".vlog")
                .and_then(|s| s.parse::<u32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        if let Some((i, n)) = numbers.iter().enumerate().find(|(i, n)| **n != *i as u32) {
            return Err(StoreError::Backend(format!(
                "value log: segment {i:08}.vlog is missing (next present: {n:08}.vlog)"
            )));
        }
        let mut files = Vec::with_capacity(numbers.len());
        for &n in &numbers {
            let p = segment_path(dir, n);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| io("open", &p, e))?;
            files.push(f);
        }
        let (segment, len) = match files.last() {
            None => (0, 0),
            Some(f) => {
                let p = segment_path(dir, files.len() as u32 - 1);
                let len = f.metadata().map_err(|e| io("stat", &p, e))?.len();
                (files.len() as u32 - 1, len)
            }
        };
        let created = files.is_empty();
        if files.is_empty() {
            files.push(Self::create(dir, 0)?);
        }
        Ok(ValueLog {
            dir: dir.to_owned(),
            files: RwLock::new(files),
            tail: Mutex::new(Tail {
                segment,
                len,
                dirty: Vec::new(),
                created,
            }),
        })
    }

    fn create(dir: &Path, n: u32) -> Result<File, StoreError> {
        let p = segment_path(dir, n);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| io("create", &p, e))
    }

    fn poisoned() -> StoreError {
        StoreError::Backend("value log: lock poisoned".into())
    }

    /// Writes `value` at the end of the log (not yet durable: see [`ValueLog::sync`]).
    pub fn append(&self, value: &[u8]) -> Result<Extent, StoreError> {
        let len = u32::try_from(value.len())
            .map_err(|_| StoreError::Backend("value log: value over 4 GiB".into()))?;
        let mut tail = self.tail.lock().map_err(|_| Self::poisoned())?;
        if tail.len > 0 && tail.len + u64::from(len) > SEGMENT_BYTES {
            let next = tail.segment + 1;
            let f = Self::create(&self.dir, next)?;
            self.files.write().map_err(|_| Self::poisoned())?.push(f);
            tail.segment = next;
            tail.len = 0;
            tail.created = true;
        }
        let at = Extent {
            segment: tail.segment,
            offset: tail.len,
            len,
        };
        {
            let files = self.files.read().map_err(|_| Self::poisoned())?;
            let f = &files[at.segment as usize];
            f.write_all_at(value, at.offset)
                .map_err(|e| io("write", &segment_path(&self.dir, at.segment), e))?;
        }
        tail.len += u64::from(len);
        if !tail.dirty.contains(&at.segment) {
            tail.dirty.push(at.segment);
        }
        Ok(at)
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut tail = self.tail.lock().map_err(|_| Self::poisoned())?;
        let files = self.files.read().map_err(|_| Self::poisoned())?;
        for &n in &tail.dirty {
            files[n as usize]
                .sync_data()
                .map_err(|e| io("sync", &segment_path(&self.dir, n), e))?;
        }
        if tail.created {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync", &self.dir, e))?;
        }
        tail.dirty.clear();
        tail.created = false;
        Ok(())
    }

    /// Reads `len` bytes at `offset` within the value at `at`.
    pub fn read(&self, at: Extent, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        if offset + len as u64 > u64::from(at.len) {
            return Err(StoreError::Backend(format!(
                "value log: read of {len} bytes at {offset} beyond a {}-byte value",
                at.len
            )));
        }
        let files = self.files.read().map_err(|_| Self::poisoned())?;
        let f = files.get(at.segment as usize).ok_or_else(|| {
            StoreError::Backend(format!(
                "value log: pointer to segment {} of {}",
                at.segment,
                files.len()
            ))
        })?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, at.offset + offset)
            .map_err(|e| io("read", &segment_path(&self.dir, at.segment), e))?;
        Ok(buf)
    }

    /// The length of every segment, in order.
    pub fn segment_lens(&self) -> Result<Vec<u64>, StoreError> {
        let files = self.files.read().map_err(|_| Self::poisoned())?;
        files
            .iter()
            .enumerate()
            .map(|(n, f)| {
                f.metadata()
                    .map(|m| m.len())
                    .map_err(|e| io("stat", &segment_path(&self.dir, n as u32), e))
            })
            .collect()
    }

    /// Bytes in all segments.
    pub fn size(&self) -> u64 {
        self.files
            .read()
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_after_reopen_and_segments_must_be_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let a;
        let b;
        {
            let log = ValueLog::open(dir.path()).unwrap();
            a = log.append(b"hello").unwrap();
            b = log.append(&[7u8; 1000]).unwrap();
            log.sync().unwrap();
            assert_eq!(b.offset, 5);
        }
        let log = ValueLog::open(dir.path()).unwrap();
        assert_eq!(log.read(a, 0, 5).unwrap(), b"hello");
        assert_eq!(log.read(b, 990, 10).unwrap(), vec![7u8; 10]);
        assert!(
            log.read(b, 995, 10).is_err(),
            "a read past the value is refused"
        );
        let c = log.append(b"x").unwrap();
        assert_eq!(c.offset, 1005, "appends continue at the end");
        drop(log);
        std::fs::write(dir.path().join("00000002.vlog"), b"").unwrap();
        let e = ValueLog::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("00000001.vlog is missing"), "{e}");
    }

    #[test]
    fn extents_round_trip() {
        let x = Extent {
            segment: 3,
            offset: (1 << 33) + 5,
            len: 77,
        };
        assert_eq!(Extent::decode(&x.encode()), Some(x));
        assert_eq!(Extent::decode(&x.encode()[..15]), None);
    }
}
