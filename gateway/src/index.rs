//! The ledger's secondary indexes (leaf → location, record version → slot,
//! subject → record) as a small log-structured merge index on the same
//! [`Store`].
//!
//! Why not one store key per entry: sled 0.34 spends 14–22 µs of the single
//! writer's time on every small insert (it copies the touched leaf node), and a
//! record needs three or four index entries; that capped durable ingest near
//! 12,000 records/s. Here a block's entries cost no store write in the
//! block's batch at all: they are a function of the block's transactions
//! (the ledger derives them again on open), so nothing acknowledged depends
//! on the rest of this module. Stores written by earlier versions hold the
//! entries as one `K` height value per block; those are still replayed.
//!
//! - **Memtable**: entries of blocks above the manifest's indexed height, in
//!   memory, rebuilt on open from the blocks (or their `K` values).
//! - **Runs**: when the memtable holds [`IndexConfig::memtable_entries`], it is
//!   frozen and a background thread writes it as one sorted, immutable run:
//!   chunks of about [`IndexConfig::chunk_bytes`] (`Z` id chunk), a meta value
//!   with the chunks' first keys and a blocked Bloom filter (`Y` id), and the
//!   manifest (`Mindex`: indexed height, next run id, the runs), in one atomic
//!   batch that also drops the `K` values the run now covers.
//! - **Merges**: [`IndexConfig::fanout`] runs of similar size are merged into
//!   one (size-tiered, up to [`IndexConfig::max_run_entries`]);
//!   the inputs are deleted only once no reader holds them.
//! - **Look-ups**: memtable, frozen memtables, then runs largest first, each
//!   run asked only if its Bloom filter admits the entry's *group* (the part of
//!   the key a look-up names: a whole leaf key, a record's version prefix, a
//!   subject's prefix).
//!
//! Entries are never updated in place: a key is written with one value (a
//! rewrite carries the same value), so a look-up may stop at the first hit and
//! a scan takes the union.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::store::{Store, StoreError, WriteBatch};

/// Sizes of the index's parts.
#[derive(Debug, Clone, Copy)]
pub struct IndexConfig {
    /// Entries the memtable holds before it is written as a run.
    pub memtable_entries: usize,
    /// Target size of one stored chunk of a run.
    pub chunk_bytes: usize,
    /// A run's chunks are committed in batches of about this many bytes (a
    /// batch holds sled's write lock, so the writer waits for it).
    pub batch_bytes: usize,
    /// How many runs of similar size are merged into one.
    pub fanout: usize,
    /// Runs at or above this many entries are not merged further.
    pub max_run_entries: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            memtable_entries: 1 << 21,
            chunk_bytes: 4 * 1024,
            batch_bytes: 256 << 10,
            fanout: 4,
            max_run_entries: 1 << 24,
        }
    }
}

/// The part of a key a look-up names, for the Bloom filters.
pub type GroupFn = fn(&[u8]) -> &[u8];

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// One index entry: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

const MANIFEST: &[u8] = b"Mindex";

/// In the ledger's store: the height up to which blocks' entries were dropped.
const FLOOR: &[u8] = b"Mindex-floor";

/// Frozen memtables that may wait for the background thread before the
/// writer waits too.
const MAX_FROZEN: usize = 4;

fn block_key(height: u64) -> Vec<u8> {
    let mut k = vec![b'K'];
    k.extend_from_slice(&height.to_be_bytes());
    k
}
fn meta_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'Y'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}
fn chunk_key(id: u64, chunk: u32) -> Vec<u8> {
    let mut k = vec![b'Z'];
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Encodes entries: `u32 n ‖ n × (u16 key length ‖ u32 value length ‖ key ‖ value)`.
pub fn encode_entries<'a>(entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * 64);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (k, v) in entries {
        push_item(&mut out, k, v);
    }
    out
}

/// One item: `u16 key length ‖ u32 value length ‖ key ‖ value`.
fn push_item(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(v);
}

/// Decodes [`encode_entries`]; `None` if malformed.
fn decode_entries(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let n = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(n.min(b.len() / 6));
    let mut at = 4;
    for _ in 0..n {
        let kl = u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize;
        let vl = u32::from_be_bytes(b.get(at + 2..at + 6)?.try_into().ok()?) as usize;
        at += 6;
        let k = b.get(at..at + kl)?;
        let v = b.get(at + kl..at + kl + vl)?;
        at += kl + vl;
        out.push((k, v));
    }
    (at == b.len()).then_some(out)
}

/// A chunk's items start at fixed offsets: `u32 n ‖ u32 offsets[n] ‖ items`
/// (each item as in [`encode_entries`] without the count), so a look-up
/// bisects without decoding the chunk.
fn encode_chunk(items: &[(&[u8], &[u8])]) -> Vec<u8> {
    let body: usize = items.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + 4 * items.len() + body);
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    let mut off = 0u32;
    for (k, v) in items {
        out.extend_from_slice(&off.to_be_bytes());
        off += (6 + k.len() + v.len()) as u32;
    }
    for (k, v) in items {
        push_item(&mut out, k, v);
    }
    out
}

fn chunk_len(c: &[u8]) -> Option<usize> {
    Some(u32::from_be_bytes(c.get(0..4)?.try_into().ok()?) as usize)
}

fn chunk_item(c: &[u8], i: usize) -> Option<(&[u8], &[u8])> {
    let n = chunk_len(c)?;
    let off = u32::from_be_bytes(c.get(4 + 4 * i..8 + 4 * i)?.try_into().ok()?) as usize;
    let at = 4 + 4 * n + off;
    let kl = u16::from_be_bytes(c.get(at..at + 2)?.try_into().ok()?) as usize;
    let vl = u32::from_be_bytes(c.get(at + 2..at + 6)?.try_into().ok()?) as usize;
    Some((
        c.get(at + 6..at + 6 + kl)?,
        c.get(at + 6 + kl..at + 6 + kl + vl)?,
    ))
}

/// A stable 64-bit hash (stored Bloom filters depend on it; it must never
/// change, unlike the standard library's).
fn hash64(b: &[u8]) -> u64 {
    const M: u64 = 0xbf58_476d_1ce4_e5b9;
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ (b.len() as u64).wrapping_mul(M);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(M);
        h ^= h >> 31;
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(M);
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A blocked Bloom filter: six bits in one 512-bit block per group (about
/// 10 bits per group, ~1 % false positives).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn with_groups(n: usize) -> Self {
        let blocks = (n * 10).div_ceil(512).max(1);
        Bloom {
            words: vec![0; blocks * 8],
        }
    }
    fn probes(&self, group: &[u8]) -> (usize, [u16; 6]) {
        let h = hash64(group);
        let blocks = (self.words.len() / 8) as u128;
        let block = ((u128::from(h) * blocks) >> 64) as usize;
        let g = mix(h ^ 0x5851_f42d_4c95_7f2d);
        let mut bits = [0u16; 6];
        for (i, b) in bits.iter_mut().enumerate() {
            *b = ((g >> (9 * i)) & 511) as u16;
        }
        (block, bits)
    }
    fn add(&mut self, group: &[u8]) {
        let (block, bits) = self.probes(group);
        for b in bits {
            self.words[block * 8 + usize::from(b / 64)] |= 1 << (b % 64);
        }
    }
    fn may_contain(&self, group: &[u8]) -> bool {
        let (block, bits) = self.probes(group);
        bits.iter()
            .all(|b| self.words[block * 8 + usize::from(b / 64)] & (1 << (b % 64)) != 0)
    }
}

/// One immutable sorted run.
#[derive(Debug)]
struct Run {
    id: u64,
    entries: u64,
    first_keys: Vec<Vec<u8>>,
    bloom: Bloom,
}

impl Run {
    fn encode_meta(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.entries.to_be_bytes());
        out.extend_from_slice(&(self.bloom.words.len() as u32).to_be_bytes());
        for w in &self.bloom.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let keys: Vec<(&[u8], &[u8])> = self
            .first_keys
            .iter()
            .map(|k| (k.as_slice(), &[][..]))
            .collect();
        out.extend_from_slice(&encode_entries(keys.into_iter()));
        out
    }
    fn decode_meta(id: u64, b: &[u8]) -> Option<Run> {
        let entries = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let n = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?) as usize;
        let words = (0..n)
            .map(|i| {
                Some(u64::from_le_bytes(
                    b.get(12 + 8 * i..20 + 8 * i)?.try_into().ok()?,
                ))
            })
            .collect::<Option<Vec<u64>>>()?;
        if words.is_empty() || words.len() % 8 != 0 {
            return None;
        }
        let first_keys = decode_entries(b.get(12 + 8 * n..)?)?
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        Some(Run {
            id,
            entries,
            first_keys,
            bloom: Bloom { words },
        })
    }

    /// Visits the run's entries with keys in `[from, to)` in order.
    fn range(
        &self,
        store: &dyn Store,
        from: &[u8],
        to: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let start = self
            .first_keys
            .partition_point(|k| k.as_slice() <= from)
            .saturating_sub(1);
        for c in start..self.first_keys.len() {
            if self.first_keys[c].as_slice() >= to {
                break;
            }
            let mut bad = false;
            let found = store.peek(&chunk_key(self.id, c as u32), &mut |chunk| {
                let Some(n) = chunk_len(chunk) else {
                    bad = true;
                    return;
                };
                // First item with key ≥ from.
                let (mut lo, mut hi) = (0usize, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match chunk_item(chunk, mid) {
                        Some((k, _)) if k < from => lo = mid + 1,
                        Some(_) => hi = mid,
                        None => {
                            bad = true;
                            return;
                        }
                    }
                }
                for i in lo..n {
                    match chunk_item(chunk, i) {
                        Some((k, _)) if k >= to => return,
                        Some((k, v)) => f(k, v),
                        None => {
                            bad = true;
                            return;
                        }
                    }
                }
            })?;
            if !found || bad {
                return Err(StoreError::Backend(format!(
                    "index run {} chunk {c} is missing or malformed",
                    self.id
                )));
            }
        }
        Ok(())
    }
}

/// A memtable that is being written as a run.
struct Frozen {
    entries: Entries,
    /// The highest block height it covers.
    height: u64,
}

#[derive(Default)]
struct Layers {
    memtable: Entries,
    /// Frozen memtables, oldest first.
    frozen: Vec<Arc<Frozen>>,
    /// Runs, largest first.
    runs: Vec<Arc<Run>>,
    /// Height of the last block in the memtable.
    height: u64,
}

struct Manifest {
    indexed_height: u64,
    next_id: u64,
    runs: Vec<u64>,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 8 * self.runs.len());
        out.extend_from_slice(&self.indexed_height.to_be_bytes());
        out.extend_from_slice(&self.next_id.to_be_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.to_be_bytes());
        }
        out
    }
    fn decode(b: &[u8]) -> Option<Manifest> {
        let indexed_height = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let next_id = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        let n = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?) as usize;
        if b.len() != 20 + 8 * n {
            return None;
        }
        let runs = (0..n)
            .map(|i| {
                Some(u64::from_be_bytes(
                    b.get(20 + 8 * i..28 + 8 * i)?.try_into().ok()?,
                ))
            })
            .collect::<Option<Vec<u64>>>()?;
        Some(Manifest {
            indexed_height,
            next_id,
            runs,
        })
    }
}

struct Shared {
    /// The ledger's store: the blocks' `K` values and the floor mark.
    store: Arc<dyn Store>,
    /// Where the runs and the manifest live (a database of their own in
    /// service, so that writing runs never holds the ledger's write lock or
    /// adds to its flushes).
    runs: Arc<dyn Store>,
    cfg: IndexConfig,
    group: GroupFn,
    layers: RwLock<Layers>,
    /// What the background thread knows of the manifest.
    manifest: Mutex<Manifest>,
    /// Wakes the background thread (new frozen memtable, stop).
    wake: Condvar,
    wake_lock: Mutex<()>,
    stop: AtomicBool,
    failed: Mutex<Option<String>>,
    /// The next run id (runs in progress have ids below it, not in the manifest).
    next_id: AtomicU64,
    /// Runs written since open.
    runs_written: AtomicU64,
    /// True while the background thread flushes or merges.
    busy: AtomicBool,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Entries in the memtable.
    pub memtable: usize,
    /// Frozen memtables waiting to be written.
    pub frozen: usize,
    /// Stored runs.
    pub runs: usize,
    /// Entries in stored runs (a rewritten key counts once per run).
    pub run_entries: u64,
    /// Runs written since open (flushes and merges).
    pub runs_written: u64,
}

/// The index; see the module documentation.
pub struct Index {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn bad(problem: impl Into<String>) -> StoreError {
    StoreError::Backend(problem.into())
}

impl Index {
    /// `open_deriving` for tests whose blocks all carry `K` values.
    #[cfg(test)]
    pub fn open(
        store: Arc<dyn Store>,
        runs_store: Arc<dyn Store>,
        cfg: IndexConfig,
        group: GroupFn,
        head_height: u64,
    ) -> Result<Index, StoreError> {
        Self::open_deriving(store, runs_store, cfg, group, head_height, &|_| {
            Ok(Vec::new())
        })
    }

    /// Opens the index on `store` for a chain whose head is at `head_height`:
    /// loads the runs, removes what an interrupted write or merge left behind,
    /// and rebuilds the memtable for the blocks above the indexed height,
    /// from a block's `K` value where a store of an earlier version has one,
    /// otherwise from `derive(height)`.
    pub fn open_deriving(
        store: Arc<dyn Store>,
        runs_store: Arc<dyn Store>,
        cfg: IndexConfig,
        group: GroupFn,
        head_height: u64,
        derive: &dyn Fn(u64) -> Result<Vec<Entry>, StoreError>,
    ) -> Result<Index, StoreError> {
        let manifest = match runs_store.get(MANIFEST)? {
            None => Manifest {
                indexed_height: 0,
                next_id: 0,
                runs: Vec::new(),
            },
            Some(b) => Manifest::decode(&b).ok_or_else(|| bad("index manifest is malformed"))?,
        };
        if manifest.indexed_height > head_height {
            return Err(bad(format!(
                "index covers height {} beyond the chain head {head_height}",
                manifest.indexed_height
            )));
        }
        // The blocks' entries up to the floor were dropped once runs held
        // them: runs that do not reach it (a lost or replaced index
        // database) would silently miss entries.
        let floor = match store.get(FLOOR)? {
            None => 0,
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| bad("index floor mark is malformed"))?,
            ),
        };
        if manifest.indexed_height < floor {
            return Err(bad(format!(
                "the index database covers blocks up to {} but the ledger dropped their entries up to {floor}: the index database is missing or older than the ledger",
                manifest.indexed_height
            )));
        }
        // Leftovers: metas of runs not in the manifest (merged away, their
        // deletion interrupted) and chunks of runs never finished (ids from next_id on).
        let mut cleanup = WriteBatch::new();
        let mut live = Vec::with_capacity(manifest.runs.len());
        for (k, v) in runs_store.scan_prefix(b"Y")? {
            let id = u64::from_be_bytes(
                k.get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("malformed index run key"))?,
            );
            if manifest.runs.contains(&id) {
                live.push(Arc::new(Run::decode_meta(id, &v).ok_or_else(|| {
                    bad(format!("index run {id} meta is malformed"))
                })?));
            } else {
                cleanup.delete(k);
                delete_range(
                    runs_store.as_ref(),
                    &chunk_key(id, 0),
                    &chunk_key(id + 1, 0),
                    &mut cleanup,
                )?;
            }
        }
        delete_range(
            runs_store.as_ref(),
            &chunk_key(manifest.next_id, 0),
            b"[",
            &mut cleanup,
        )?;
        if live.len() != manifest.runs.len() {
            return Err(bad("index manifest names a run whose meta is missing"));
        }
        sort_runs(&mut live);
        if !cleanup.is_empty() {
            runs_store.commit(cleanup)?;
        }
        // Blocks' entries a run already holds whose deletion was interrupted.
        if floor > 0 {
            drop_block_entries(store.as_ref(), 0, floor)?;
        }
        let shared = Arc::new(Shared {
            store: store.clone(),
            runs: runs_store,
            cfg,
            group,
            layers: RwLock::new(Layers {
                runs: live,
                height: manifest.indexed_height,
                ..Layers::default()
            }),
            next_id: AtomicU64::new(manifest.next_id),
            runs_written: AtomicU64::new(0),
            busy: AtomicBool::new(true),
            manifest: Mutex::new(manifest),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let from = shared.lock_manifest().indexed_height + 1;
        let mut replay: Vec<(u64, Vec<u8>)> = Vec::new();
        store.range(
            &block_key(from),
            &block_key(head_height.saturating_add(1)),
            &mut |k, v| {
                let h = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
                replay.push((h, v.to_vec()));
                true
            },
        )?;
        let index_thread = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("ledger-index".into())
                .spawn(move || background(s))
                .map_err(|e| bad(format!("cannot start the index thread: {e}")))?
        };
        let index = Index {
            shared,
            thread: Some(index_thread),
        };
        // Blocks written with a `K` value (stores of earlier versions) replay
        // it; the others are derived from their transactions.
        let mut replay = replay.into_iter().peekable();
        for h in from..=head_height {
            if replay.peek().is_some_and(|(kh, _)| *kh == h) {
                let (_, v) = replay.next().unwrap_or_default();
                let entries = decode_entries(&v)
                    .ok_or_else(|| bad(format!("index entries of block {h} are malformed")))?;
                index.insert_block(
                    h,
                    entries.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())),
                );
            } else {
                let entries = derive(h)?;
                if !entries.is_empty() {
                    index.insert_block(h, entries);
                }
            }
        }
        // Blocks without entries above the last replayed one still count as indexed.
        index.shared.write_layers().height = head_height;
        Ok(index)
    }

    /// The value a block stores under its `K` key for these entries.
    pub fn block_value(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        encode_entries(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    /// The `K` key of the block at `height`.
    pub fn block_key(height: u64) -> Vec<u8> {
        block_key(height)
    }

    /// Adds a committed block's entries (after its batch is durable).
    pub fn insert_block(&self, height: u64, entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let mut l = self.shared.write_layers();
        for (k, v) in entries {
            l.memtable.insert(k, v);
        }
        l.height = l.height.max(height);
        if l.memtable.len() >= self.shared.cfg.memtable_entries {
            let entries = std::mem::take(&mut l.memtable);
            let height = l.height;
            l.frozen.push(Arc::new(Frozen { entries, height }));
            let waiting = l.frozen.len();
            drop(l);
            {
                let _g = self.shared.wake_lock.lock();
                self.shared.wake.notify_all();
            }
            // Back-pressure: the writer waits while too many frozen memtables
            // (memory) wait for the background thread.
            if waiting > MAX_FROZEN {
                while self.shared.read_layers().frozen.len() > MAX_FROZEN
                    && self.failure().is_none()
                    && !self.shared.stopping()
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    /// Why the background thread stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sizes, for metrics.
    pub fn stats(&self) -> IndexStats {
        let l = self.shared.read_layers();
        IndexStats {
            memtable: l.memtable.len(),
            frozen: l.frozen.len(),
            runs: l.runs.len(),
            run_entries: l.runs.iter().map(|r| r.entries).sum(),
            runs_written: self.shared.runs_written.load(Ordering::Relaxed),
        }
    }

    /// Bytes the runs take on disk when they have a store of their own (0 if
    /// they share the ledger's, which counts them already).
    pub fn size_on_disk(&self) -> u64 {
        if Arc::ptr_eq(&self.shared.store, &self.shared.runs) {
            0
        } else {
            self.shared.runs.size_on_disk()
        }
    }

    /// Waits until every frozen memtable is written (tests and benchmarks).
    pub fn settle(&self) {
        loop {
            if self.shared.read_layers().frozen.is_empty() || self.failure().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Waits until the background thread has nothing left to flush or merge
    /// (benchmarks).
    pub fn quiesce(&self) {
        loop {
            let idle = !self.shared.busy.load(Ordering::SeqCst)
                && self.shared.read_layers().frozen.is_empty();
            if idle || self.failure().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let group = (self.shared.group)(key);
        let runs = {
            let l = self.shared.read_layers();
            if let Some(v) = l.memtable.get(key) {
                return Ok(Some(v.clone()));
            }
            for f in l.frozen.iter().rev() {
                if let Some(v) = f.entries.get(key) {
                    return Ok(Some(v.clone()));
                }
            }
            l.runs.clone()
        };
        let mut end = key.to_vec();
        end.push(0);
        for r in runs.iter() {
            if !r.bloom.may_contain(group) {
                continue;
            }
            let mut found = None;
            r.range(self.shared.runs.as_ref(), key, &end, &mut |_, v| {
                found = Some(v.to_vec())
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Every entry whose key starts with `prefix` (which must be a whole group),
    /// in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let end = successor(prefix);
        let mut out: Entries = BTreeMap::new();
        let range = |m: &Entries, out: &mut Entries| {
            let upper = match &end {
                Some(e) => Bound::Excluded(e.clone()),
                None => Bound::Unbounded,
            };
            for (k, v) in m.range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), upper)) {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        };
        let runs = {
            let l = self.shared.read_layers();
            range(&l.memtable, &mut out);
            for f in l.frozen.iter().rev() {
                range(&f.entries, &mut out);
            }
            l.runs.clone()
        };
        let to = end.unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
        for r in runs.iter() {
            if !r.bloom.may_contain(prefix) {
                continue;
            }
            r.range(self.shared.runs.as_ref(), prefix, &to, &mut |k, v| {
                out.entry(k.to_vec()).or_insert_with(|| v.to_vec());
            })?;
        }
        Ok(out.into_iter().collect())
    }

    /// The last key that starts with `prefix` (a whole group).
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.scan_prefix(prefix)?.pop().map(|(k, _)| k))
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.wake_lock.lock();
            self.shared.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Largest run first: a look-up that finds its entry (most entries are in
/// the largest runs) asks fewer filters and chunks; order does not matter
/// otherwise, since entries never change.
fn sort_runs(runs: &mut [Arc<Run>]) {
    runs.sort_by_key(|r| std::cmp::Reverse(r.entries));
}

/// The smallest key greater than every key starting with `prefix`.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Drops the `K` values of blocks `from..=to` from the ledger's store, a
/// few at a time: a sled batch holds a process-wide write lock, and one batch
/// of thousands of deletes held the ledger writer for tens of milliseconds.
fn drop_block_entries(store: &dyn Store, from: u64, to: u64) -> Result<(), StoreError> {
    let mut keys = Vec::new();
    store.range(
        &block_key(from),
        &block_key(to.saturating_add(1)),
        &mut |k, _| {
            keys.push(k.to_vec());
            true
        },
    )?;
    for part in keys.chunks(64) {
        let mut b = WriteBatch::new();
        for k in part {
            b.delete(k.clone());
        }
        store.write(b)?;
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Ok(())
}

fn delete_range(
    store: &dyn Store,
    from: &[u8],
    to: &[u8],
    batch: &mut WriteBatch,
) -> Result<(), StoreError> {
    store.range(from, to, &mut |k, _| {
        batch.delete(k.to_vec());
        true
    })
}

impl Shared {
    fn read_layers(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        self.layers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write_layers(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.layers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn lock_manifest(&self) -> std::sync::MutexGuard<'_, Manifest> {
        self.manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Writes sorted entries as the chunks of run `id` into batches of about
/// [`IndexConfig::batch_bytes`], committed as they fill (a placeholder meta goes first, so that an
/// interrupted run is found and removed on open); returns the run and the
/// last, uncommitted batch, or `None` if the index is stopping. While a merge
/// writes (`flush_between`), frozen memtables are flushed between batches.
fn write_run<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    s: &Shared,
    id: u64,
    entries: impl Iterator<Item = Result<(A, B), StoreError>>,
    groups_hint: usize,
    flush_between: bool,
) -> Result<Option<(Run, WriteBatch)>, StoreError> {
    let mut bloom = Bloom::with_groups(groups_hint);
    let mut first_keys = Vec::new();
    let mut chunk: Vec<(A, B)> = Vec::new();
    let mut chunk_size = 0usize;
    let mut batch = WriteBatch::new();
    batch.put(meta_key(id), Vec::new());
    let mut since = std::time::Instant::now();
    let mut count = 0u64;
    let mut last_group: Vec<u8> = Vec::new();
    let mut have_group = false;
    let flush_chunk =
        |chunk: &mut Vec<(A, B)>, first_keys: &mut Vec<Vec<u8>>, batch: &mut WriteBatch| {
            if let Some((k, _)) = chunk.first() {
                first_keys.push(k.as_ref().to_vec());
                let items: Vec<(&[u8], &[u8])> = chunk
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref()))
                    .collect();
                batch.put(
                    chunk_key(id, (first_keys.len() - 1) as u32),
                    encode_chunk(&items),
                );
                chunk.clear();
            }
        };
    for e in entries {
        let (k, v) = e?;
        let g = (s.group)(k.as_ref());
        if !have_group || last_group != g {
            bloom.add(g);
            last_group.clear();
            last_group.extend_from_slice(g);
            have_group = true;
        }
        chunk_size += 10 + k.as_ref().len() + v.as_ref().len();
        chunk.push((k, v));
        count += 1;
        if chunk_size >= s.cfg.chunk_bytes {
            flush_chunk(&mut chunk, &mut first_keys, &mut batch);
            chunk_size = 0;
            if batch.bytes() >= s.cfg.batch_bytes {
                if s.stopping() {
                    return Ok(None);
                }
                s.runs.write(std::mem::take(&mut batch))?;
                // Background work at half duty: after each batch, rest as long
                // as it took, so that the ledger writer and the request
                // handlers keep their share of the CPU and of sled's write
                // lock (acknowledgement latency). The writer's back-pressure
                // (MAX_FROZEN) keeps the index from falling far behind.
                let spent = since.elapsed();
                std::thread::sleep(spent.min(std::time::Duration::from_millis(20)));
                since = std::time::Instant::now();
                if flush_between {
                    loop {
                        // (The read guard must be gone before the flush takes the write lock.)
                        let next = s.read_layers().frozen.first().cloned();
                        let Some(f) = next else { break };
                        if !flush_frozen(s, &f)? {
                            return Ok(None); // stopping
                        }
                    }
                }
            }
        }
    }
    flush_chunk(&mut chunk, &mut first_keys, &mut batch);
    Ok(Some((
        Run {
            id,
            entries: count,
            first_keys,
            bloom,
        },
        batch,
    )))
}

/// Reads a run chunk by chunk, in key order.
struct Cursor<'a> {
    store: &'a dyn Store,
    run: &'a Run,
    chunk: usize,
    items: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Cursor<'a> {
    fn new(store: &'a dyn Store, run: &'a Run) -> Self {
        Cursor {
            store,
            run,
            chunk: 0,
            items: Vec::new().into_iter(),
        }
    }
    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        loop {
            if let Some(e) = self.items.next() {
                return Ok(Some(e));
            }
            if self.chunk >= self.run.first_keys.len() {
                return Ok(None);
            }
            let mut items = None;
            self.store
                .peek(&chunk_key(self.run.id, self.chunk as u32), &mut |c| {
                    items = chunk_len(c).and_then(|n| {
                        (0..n)
                            .map(|i| chunk_item(c, i).map(|(k, v)| (k.to_vec(), v.to_vec())))
                            .collect::<Option<Vec<_>>>()
                    });
                })?;
            let items = items.ok_or_else(|| {
                bad(format!(
                    "index run {} chunk {} is missing or malformed",
                    self.run.id, self.chunk
                ))
            })?;
            self.chunk += 1;
            self.items = items.into_iter();
        }
    }
}

/// The union of several runs in key order, each key once.
struct MergeIter<'a> {
    cursors: Vec<Cursor<'a>>,
    heads: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    started: bool,
}

impl Iterator for MergeIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for c in self.cursors.iter_mut() {
                match c.next_entry() {
                    Ok(h) => self.heads.push(h),
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        let min = self
            .heads
            .iter()
            .filter_map(|h| h.as_ref().map(|(k, _)| k))
            .min()?
            .clone();
        let mut out = None;
        for (i, h) in self.heads.iter_mut().enumerate() {
            if h.as_ref().is_some_and(|(k, _)| *k == min) {
                let taken = h.take();
                if out.is_none() {
                    out = taken;
                }
                match self.cursors[i].next_entry() {
                    Ok(n) => *h = n,
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        out.map(Ok)
    }
}

fn background(s: Arc<Shared>) {
    // Runs merged away, deleted once no reader holds them.
    let mut retired: Vec<Arc<Run>> = Vec::new();
    loop {
        if s.stopping() {
            return;
        }
        s.busy.store(true, Ordering::SeqCst);
        let work = (|| -> Result<bool, StoreError> {
            let mut did = false;
            retired = collect_retired(&s, std::mem::take(&mut retired))?;
            let frozen = s.read_layers().frozen.first().cloned();
            if let Some(f) = frozen {
                did = flush_frozen(&s, &f)?;
            } else if let Some(r) = merge_some(&s)? {
                retired.extend(r);
                did = true;
            }
            Ok(did)
        })();
        match work {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "the ledger index could not write; its memtable keeps growing");
                *s.failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                return;
            }
        }
        let g = s
            .wake_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.stopping() || !s.read_layers().frozen.is_empty() {
            continue;
        }
        s.busy.store(false, Ordering::SeqCst);
        let _ = s
            .wake
            .wait_timeout(g, std::time::Duration::from_millis(200));
    }
}

fn collect_retired(s: &Shared, retired: Vec<Arc<Run>>) -> Result<Vec<Arc<Run>>, StoreError> {
    let (free, held): (Vec<_>, Vec<_>) =
        retired.into_iter().partition(|r| Arc::strong_count(r) == 1);
    // A merged-away run's chunks go in small batches at half duty, its meta
    // last. One batch for a whole run (a run at the size cap has some 300,000
    // chunks) held sled's process-wide batch lock for 12 s, stalling the
    // ledger's commits, and sled kept every rewritten leaf of the batch in
    // memory until it finished (+5 GB). If the deletion is interrupted, the
    // meta is still there and opening the index finishes it.
    for r in &free {
        let mut since = std::time::Instant::now();
        let chunks = r.first_keys.len() as u32;
        for from in (0..chunks).step_by(DELETE_BATCH) {
            let mut b = WriteBatch::new();
            for c in from..(from + DELETE_BATCH as u32).min(chunks) {
                b.delete(chunk_key(r.id, c));
            }
            s.runs.write(b)?;
            if s.stopping() {
                return Ok(held);
            }
            let spent = since.elapsed();
            std::thread::sleep(spent.min(std::time::Duration::from_millis(20)));
            since = std::time::Instant::now();
            // Memtables frozen meanwhile go first, so that the writer's
            // back-pressure never waits for a deletion.
            loop {
                let next = s.read_layers().frozen.first().cloned();
                let Some(f) = next else { break };
                if !flush_frozen(s, &f)? {
                    return Ok(held);
                }
            }
        }
        let mut b = WriteBatch::new();
        b.delete(meta_key(r.id));
        s.runs.write(b)?;
    }
    Ok(held)
}

/// Chunks of a merged-away run deleted per batch.
const DELETE_BATCH: usize = 512;

/// Writes the oldest frozen memtable as a run; false if the index is stopping.
fn flush_frozen(s: &Shared, f: &Arc<Frozen>) -> Result<bool, StoreError> {
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    let Some((run, mut batch)) = write_run(
        s,
        id,
        f.entries
            .iter()
            .map(|(k, v)| Ok((k.as_slice(), v.as_slice()))),
        f.entries.len(),
        false,
    )?
    else {
        return Ok(false);
    };
    let mut m = s.lock_manifest();
    let prev_height = m.indexed_height;
    let mut runs = m.runs.clone();
    runs.push(id);
    let manifest = Manifest {
        indexed_height: f.height,
        next_id: s.next_id.load(Ordering::SeqCst),
        runs,
    };
    batch.put(meta_key(id), run.encode_meta());
    batch.put(MANIFEST.to_vec(), manifest.encode());
    // The run and manifest durable first, then the blocks' entries it now
    // holds dropped from the ledger's store with the new floor.
    s.runs.commit(batch)?;
    let mut floor = WriteBatch::new();
    floor.put(FLOOR.to_vec(), f.height.to_be_bytes().to_vec());
    s.store.write(floor)?;
    drop_block_entries(s.store.as_ref(), prev_height + 1, f.height)?;
    *m = manifest;
    drop(m);
    s.runs_written.fetch_add(1, Ordering::Relaxed);
    let mut l = s.write_layers();
    l.runs.push(Arc::new(run));
    sort_runs(&mut l.runs);
    if l.frozen.first().is_some_and(|x| Arc::ptr_eq(x, f)) {
        l.frozen.remove(0);
    }
    Ok(true)
}

/// Merges `fanout` runs of similar size, if there
/// is one; returns the runs it replaced.
fn merge_some(s: &Shared) -> Result<Option<Vec<Arc<Run>>>, StoreError> {
    let fanout = s.cfg.fanout.max(2);
    let runs = s.read_layers().runs.clone();
    if runs.len() < fanout {
        return Ok(None);
    }
    // Runs of similar size, wherever they are: entries never change, so the
    // order of runs does not matter to a look-up.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i].entries);
    let group = (0..=order.len() - fanout).find(|&j| {
        let min = runs[order[j]].entries;
        let max = runs[order[j + fanout - 1]].entries;
        max < s.cfg.max_run_entries && max <= min.saturating_mul(2).max(1)
    });
    let Some(at) = group else {
        return Ok(None);
    };
    let inputs: Vec<Arc<Run>> = order[at..at + fanout]
        .iter()
        .map(|&i| runs[i].clone())
        .collect();
    // Stream the inputs chunk by chunk into the merged run.
    let total: u64 = inputs.iter().map(|r| r.entries).sum();
    let merged = MergeIter {
        cursors: inputs
            .iter()
            .map(|r| Cursor::new(s.runs.as_ref(), r))
            .collect(),
        heads: Vec::new(),
        started: false,
    };
    let id = s.next_id.fetch_add(1, Ordering::SeqCst);
    let Some((run, mut batch)) = write_run(s, id, merged, total as usize, true)? else {
        return Ok(None);
    };
    let mut m = s.lock_manifest();
    // Flushes may have added runs since `runs` was read; the inputs are all
    // still there (only this thread removes runs).
    let ids: Vec<u64> = inputs.iter().map(|r| r.id).collect();
    if !ids.iter().all(|i| m.runs.contains(i)) {
        return Ok(None);
    }
    let mut new_runs: Vec<u64> = m
        .runs
        .iter()
        .copied()
        .filter(|x| !ids.contains(x))
        .collect();
    new_runs.push(id);
    let manifest = Manifest {
        indexed_height: m.indexed_height,
        next_id: s.next_id.load(Ordering::SeqCst),
        runs: new_runs,
    };
    batch.put(meta_key(id), run.encode_meta());
    batch.put(MANIFEST.to_vec(), manifest.encode());
    s.runs.write(batch)?;
    *m = manifest;
    drop(m);
    s.runs_written.fetch_add(1, Ordering::Relaxed);
    let mut l = s.write_layers();
    l.runs.retain(|r| !ids.contains(&r.id));
    l.runs.push(Arc::new(run));
    sort_runs(&mut l.runs);
    drop(l);
    Ok(Some(inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn group(k: &[u8]) -> &[u8] {
        // Test keys: a group is the first two bytes.
        &k[..k.len().min(2)]
    }

    fn small() -> IndexConfig {
        IndexConfig {
            memtable_entries: 16,
            chunk_bytes: 64,
            batch_bytes: 256,
            fanout: 3,
            max_run_entries: 400,
        }
    }

    #[test]
    fn entries_round_trip_and_malformed_is_refused() {
        let e = [(b"ab".to_vec(), b"1".to_vec()), (b"c".to_vec(), Vec::new())];
        let b = encode_entries(e.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        let d = decode_entries(&b).unwrap();
        assert_eq!(d, vec![(&b"ab"[..], &b"1"[..]), (&b"c"[..], &b""[..])]);
        assert!(decode_entries(&b[..b.len() - 1]).is_none());
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_entries(&longer).is_none());
    }

    #[test]
    fn the_bloom_filter_never_forgets_and_mostly_refuses() {
        let mut b = Bloom::with_groups(10_000);
        for i in 0..10_000u32 {
            b.add(&i.to_be_bytes());
        }
        assert!((0..10_000u32).all(|i| b.may_contain(&i.to_be_bytes())));
        let fp = (10_000..110_000u32)
            .filter(|i| b.may_contain(&i.to_be_bytes()))
            .count();
        assert!(fp < 3_000, "{fp} false positives in 100,000");
    }

    #[test]
    fn the_hash_is_stable() {
        // Stored filters depend on these exact values.
        assert_eq!(hash64(b""), hash64(b""));
        assert_ne!(hash64(b"a"), hash64(b"b"));
        assert_eq!(
            hash64(b"tongban"),
            0x91f1_a1d4_3cb7_04a0,
            "{:#x}",
            hash64(b"tongban")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever was inserted, across flushes, merges and reopenings, is
        /// found by get, scan and last-key exactly as in a plain ordered map.
        #[test]
        fn agrees_with_an_ordered_map(
            blocks in proptest::collection::vec(proptest::collection::vec(
                (proptest::collection::vec(0u8..4, 1..5), proptest::collection::vec(0u8..3, 0..3)), 0..12), 1..30),
            reopen_at in proptest::collection::vec(0usize..30, 0..3),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..5), 8),
        ) {
            let store: Arc<dyn Store> = Arc::new(MemStore::new());
            let mut model: Entries = BTreeMap::new();
            let mut index = Index::open(store.clone(), store.clone(), small(), group, 0).unwrap();
            for (h, entries) in blocks.iter().enumerate() {
                let height = h as u64 + 1;
                // The first value written for a key is the one kept (keys are immutable).
                let mut block: Entries = BTreeMap::new();
                for (k, v) in entries {
                    let v = model.get(k).cloned().unwrap_or_else(|| v.clone());
                    block.insert(k.clone(), v);
                }
                let list: Vec<(Vec<u8>, Vec<u8>)> = block.into_iter().collect();
                let mut b = WriteBatch::new();
                let value = Index::block_value(&list);
                b.put(block_key(height), value);
                store.commit(b).unwrap();
                for (k, v) in &list {
                    model.insert(k.clone(), v.clone());
                }
                index.insert_block(height, list);
                if reopen_at.contains(&h) {
                    if h % 2 == 0 {
                        index.settle();
                    }
                    drop(index);
                    index = Index::open(store.clone(), store.clone(), small(), group, height).unwrap();
                }
            }
            for p in &probes {
                proptest::prop_assert_eq!(index.get(p).unwrap(), model.get(p).cloned());
                if p.len() < 2 {
                    continue;
                }
                // A scan names a whole group (here: two bytes).
                let g = group(p).to_vec();
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&g))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                proptest::prop_assert_eq!(index.scan_prefix(&g).unwrap(), want.clone());
                proptest::prop_assert_eq!(index.last_key_with_prefix(&g).unwrap(), want.last().map(|e| e.0.clone()));
            }
            for (k, v) in &model {
                proptest::prop_assert_eq!(index.get(k).unwrap(), Some(v.clone()));
            }
            index.settle();
            proptest::prop_assert!(index.failure().is_none());
        }
    }

    #[test]
    fn runs_are_written_merged_and_their_leftovers_removed() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let index = Index::open(store.clone(), store.clone(), small(), group, 0).unwrap();
        for h in 1..=40u64 {
            let list: Vec<(Vec<u8>, Vec<u8>)> = (0..8u64)
                .map(|i| {
                    (
                        (h * 100 + i).to_be_bytes().to_vec(),
                        h.to_be_bytes().to_vec(),
                    )
                })
                .collect();
            let mut b = WriteBatch::new();
            b.put(block_key(h), Index::block_value(&list));
            store.commit(b).unwrap();
            index.insert_block(h, list);
        }
        index.settle();
        // Give the background thread time to merge.
        for _ in 0..4000 {
            if index.stats().runs < 6 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let st = index.stats();
        assert!(
            st.runs < 6,
            "runs were not merged: {st:?}, failure {:?}, sizes {:?}",
            index.failure(),
            index
                .shared
                .read_layers()
                .runs
                .iter()
                .map(|r| r.entries)
                .collect::<Vec<_>>()
        );
        assert!(st.run_entries >= 300, "{st:?}");
        // Covered blocks' K values are gone; the rest remain for the memtable.
        let m = Manifest::decode(&store.get(MANIFEST).unwrap().unwrap()).unwrap();
        assert!(m.indexed_height >= 36);
        assert!(store.get(&block_key(1)).unwrap().is_none());
        // Merged-away runs are deleted (chunk by chunk): every chunk and meta
        // left belongs to a run the manifest names.
        let strays = || -> Vec<u64> {
            let m = Manifest::decode(&store.get(MANIFEST).unwrap().unwrap()).unwrap();
            let mut ids: Vec<u64> = store
                .scan_prefix(b"Z")
                .unwrap()
                .into_iter()
                .chain(store.scan_prefix(b"Y").unwrap())
                .map(|(k, _)| u64::from_be_bytes(k[1..9].try_into().unwrap()))
                .filter(|id| !m.runs.contains(id))
                .collect();
            ids.dedup();
            ids
        };
        for _ in 0..400 {
            if strays().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(strays(), Vec::<u64>::new());
        drop(index);
        let m = Manifest::decode(&store.get(MANIFEST).unwrap().unwrap()).unwrap();
        // A run left half-written (chunks of an id the manifest never named),
        // a stray meta, and a merged-away run whose deletion was interrupted
        // (its meta and some chunks left) are removed on open.
        let gone = (0..m.next_id).find(|id| !m.runs.contains(id)).unwrap();
        let mut b = WriteBatch::new();
        b.put(chunk_key(m.next_id, 0), encode_chunk(&[(b"zz", b"1")]));
        b.put(meta_key(m.next_id + 7), vec![0; 3]);
        b.put(meta_key(gone), vec![0; 3]);
        b.put(chunk_key(gone, 3), encode_chunk(&[(b"zz", b"1")]));
        store.commit(b).unwrap();
        let index = Index::open(store.clone(), store.clone(), small(), group, 40).unwrap();
        assert!(store.get(&chunk_key(m.next_id, 0)).unwrap().is_none());
        assert!(store.get(&meta_key(m.next_id + 7)).unwrap().is_none());
        assert!(store.get(&meta_key(gone)).unwrap().is_none());
        assert!(store.get(&chunk_key(gone, 3)).unwrap().is_none());
        for h in 1..=40u64 {
            for i in 0..8u64 {
                assert_eq!(
                    index.get(&(h * 100 + i).to_be_bytes()).unwrap(),
                    Some(h.to_be_bytes().to_vec())
                );
            }
        }
    }

    #[test]
    fn a_lost_index_database_is_refused_not_served_incomplete() {
        let ledger: Arc<dyn Store> = Arc::new(MemStore::new());
        let runs: Arc<dyn Store> = Arc::new(MemStore::new());
        let index = Index::open(ledger.clone(), runs.clone(), small(), group, 0).unwrap();
        for h in 1..=6u64 {
            let list: Vec<Entry> = (0..8u64)
                .map(|i| ((h * 100 + i).to_be_bytes().to_vec(), vec![1]))
                .collect();
            let mut b = WriteBatch::new();
            b.put(block_key(h), Index::block_value(&list));
            ledger.commit(b).unwrap();
            index.insert_block(h, list);
        }
        index.settle();
        drop(index);
        assert!(ledger.get(FLOOR).unwrap().is_some(), "runs were written");
        // The same ledger with an empty index database.
        let e = Index::open(ledger.clone(), Arc::new(MemStore::new()), small(), group, 6)
            .err()
            .unwrap();
        assert!(e.to_string().contains("index database is missing"), "{e}");
        // With its own, every entry is there.
        let index = Index::open(ledger, runs, small(), group, 6).unwrap();
        assert_eq!(index.get(&601u64.to_be_bytes()).unwrap(), Some(vec![1]));
        assert_eq!(index.get(&107u64.to_be_bytes()).unwrap(), Some(vec![1]));
    }

    #[test]
    fn a_missing_run_or_a_manifest_beyond_the_head_is_refused() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let mut b = WriteBatch::new();
        b.put(
            MANIFEST.to_vec(),
            Manifest {
                indexed_height: 5,
                next_id: 3,
                runs: vec![2],
            }
            .encode(),
        );
        store.commit(b).unwrap();
        let e = Index::open(store.clone(), store.clone(), small(), group, 4)
            .err()
            .unwrap();
        assert!(e.to_string().contains("beyond the chain head"), "{e}");
        let e = Index::open(store.clone(), store.clone(), small(), group, 5)
            .err()
            .unwrap();
        assert!(e.to_string().contains("meta is missing"), "{e}");
    }
}
