//! Storage behind a trait: a sled implementation for service and a memory
//! implementation for unit tests. Every write is a [`WriteBatch`] applied
//! atomically and made durable (flushed) before [`Store::commit`] returns, so a
//! caller that acknowledges after `commit` never acknowledges a lost write.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use thiserror::Error;

/// A storage failure. The service stops writing after one (fail-stop).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The underlying database failed.
    #[error("storage: {0}")]
    Backend(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Key-value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A set of puts (and deletes) applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.puts.push((key, value));
    }
    /// Adds a delete (applied after every put of the batch).
    pub fn delete(&mut self, key: Vec<u8>) {
        self.deletes.push(key);
    }
    /// Number of puts and deletes.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }
    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
    /// Total bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.puts.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// A key-value store with atomic, durable batches.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The last key (in key order) that starts with `prefix`.
    fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Lets `f` look at one value in place (no copy of large values); false if absent.
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError>;
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError>;
    /// Visits pairs with keys in `[from, to)` in order until `f` returns false.
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Applies `batch` atomically and returns only once it is durable.
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Applies `batch` atomically without waiting for it to be durable: it
    /// becomes durable with the next [`Store::commit`] (or sled's own periodic
    /// flush), and after a crash it is there whole or not at all. For derived
    /// data that can be rebuilt (the secondary index), never for anything
    /// acknowledged.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.commit(batch)
    }
    /// Bytes used on disk (an estimate; 0 for memory).
    fn size_on_disk(&self) -> u64;
}

/// The sled store: one tree, atomic batches, `flush` before returning.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, 1 << 30)
    }
    /// Opens (or creates) the store in `dir` with a page cache of `bytes`.
    pub fn open_with_cache(dir: &Path, bytes: u64) -> Result<Self, StoreError> {
        Self::open_tuned(dir, bytes, Some(500))
    }
    /// Opens a store for derived data: no periodic sync of its own (it syncs
    /// on [`Store::commit`] only), so that its background writes do not queue
    /// behind, or in front of, the ledger's flushes on the same disk.
    pub fn open_derived(dir: &Path, bytes: u64) -> Result<Self, StoreError> {
        Self::open_tuned(dir, bytes, None)
    }
    fn open_tuned(dir: &Path, bytes: u64, flush_every_ms: Option<u64>) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(bytes)
            .flush_every_ms(flush_every_ms)
            .open()?;
        let tree = db.open_tree("ledger")?;
        Ok(SledStore { db, tree })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError> {
        Ok(self.tree.get(key)?.map(|v| f(&v)).is_some())
    }
    fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // One descent with `get_lt` below the prefix's successor: sled's
        // iterators copy whole leaf nodes, which is most of a check's cost.
        let mut upper = prefix.to_vec();
        while let Some(last) = upper.pop() {
            if last < u8::MAX {
                upper.push(last + 1);
                break;
            }
        }
        let found = if upper.is_empty() {
            self.tree.last()?
        } else {
            self.tree.get_lt(&upper)?
        };
        Ok(found
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.to_vec()))
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for r in self.tree.range(from..to) {
            let (k, v) = r?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write(batch)?;
        // sled syncs only every 500 ms on its own: flush before anyone is told "done".
        self.db.flush()?;
        Ok(())
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.puts {
            b.insert(k, v);
        }
        for k in batch.deletes {
            b.remove(k);
        }
        self.tree.apply_batch(b)?;
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A memory store for unit tests (durable only as long as the process).
#[derive(Default)]
pub struct MemStore {
    map: RwLock<Map>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Map>, StoreError> {
        self.map
            .read()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.get(key).cloned())
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool, StoreError> {
        Ok(self.read()?.get(key).map(|v| f(v)).is_some())
    }
    fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .read()?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, _)| k.clone()))
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        Ok(self
            .read()?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn range(
        &self,
        from: &[u8],
        to: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for (k, v) in self.read()?.range(from.to_vec()..to.to_vec()) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut m = self
            .map
            .write()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))?;
        for (k, v) in batch.puts {
            m.insert(k, v);
        }
        for k in batch.deletes {
            m.remove(&k);
        }
        Ok(())
    }
    fn size_on_disk(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Store) {
        let mut b = WriteBatch::new();
        b.put(b"a1".to_vec(), b"x".to_vec());
        b.put(b"a2".to_vec(), b"y".to_vec());
        b.put(b"b1".to_vec(), b"z".to_vec());
        s.commit(b).unwrap();
        assert_eq!(s.get(b"a2").unwrap(), Some(b"y".to_vec()));
        assert_eq!(s.scan_prefix(b"a").unwrap().len(), 2);
        let mut d = WriteBatch::new();
        d.put(b"c1".to_vec(), b"w".to_vec());
        d.delete(b"c1".to_vec());
        d.delete(b"zz".to_vec());
        s.commit(d).unwrap();
        assert_eq!(
            s.get(b"c1").unwrap(),
            None,
            "a delete wins over a put in its batch"
        );
        let mut seen = Vec::new();
        s.range(b"a2", b"b2", &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"a2".to_vec(), b"b1".to_vec()]);
    }

    #[test]
    fn memory_and_sled_behave_alike() {
        exercise(&MemStore::new());
        let dir = tempfile::tempdir().unwrap();
        exercise(&SledStore::open(dir.path()).unwrap());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The sled look-up (one `get_lt` below the prefix's successor) finds
        /// the same last key as a plain ordered scan, 0xFF bytes included.
        #[test]
        fn last_key_with_prefix_agrees(
            keys in proptest::collection::vec(proptest::collection::vec(
                proptest::sample::select(vec![0u8, 1, 0x7f, 0xfe, 0xff]), 0..5), 0..24),
            prefix in proptest::collection::vec(
                proptest::sample::select(vec![0u8, 1, 0x7f, 0xfe, 0xff]), 0..3),
        ) {
            let mem = MemStore::new();
            let dir = tempfile::tempdir().unwrap();
            let sled = SledStore::open(dir.path()).unwrap();
            let mut a = WriteBatch::new();
            let mut b = WriteBatch::new();
            for k in &keys {
                a.put(k.clone(), vec![1]);
                b.put(k.clone(), vec![1]);
            }
            mem.commit(a).unwrap();
            sled.commit(b).unwrap();
            let want = keys.iter().filter(|k| k.starts_with(&prefix)).max().cloned();
            proptest::prop_assert_eq!(mem.last_key_with_prefix(&prefix).unwrap(), want.clone());
            proptest::prop_assert_eq!(sled.last_key_with_prefix(&prefix).unwrap(), want);
        }
    }

    #[test]
    fn sled_keeps_committed_batches_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(b"k".to_vec(), b"v".to_vec());
            s.commit(b).unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}
