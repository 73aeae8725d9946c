//! Persistent state stores on [redb](https://docs.rs/redb) (feature `redb`).
//!
//! One database file per store and partition under a directory of yours
//! (`<dir>/<store>-<partition>.redb`), holding the entries and the changelog
//! offset they include (the checkpoint). Each commit of the processor's Kafka
//! transaction is one redb write transaction, made durable before it returns;
//! on assignment the store reads only the changelog records after its
//! checkpoint, not the whole changelog.
//!
//! Why redb: it is pure Rust with one dependency (fjall, the other maintained
//! candidate, brings 46 crates and builds in 11 s against redb's 8 s here), it
//! is ACID with copy-on-write B-trees (a crash leaves the last committed
//! state, never a torn one), and its reads, the hot path of an aggregate or a
//! projection, need no compaction. An LSM tree such as fjall writes faster;
//! stores here write once per record at most, in batches, so that advantage
//! matters less than the smaller build.
//!
//! ```
//! use light_kafka::streams::persistent::RedbStorage;
//! use light_kafka::streams::store::{Backend, Storage};
//! use bytes::Bytes;
//!
//! let dir = std::env::temp_dir().join(format!("redb-doc-{}", std::process::id()));
//! let storage = RedbStorage::new(&dir);
//! let mut backend = storage.open("counts", 0)?;
//! backend.write(&[(Bytes::from("a"), Some(Bytes::from("1")))], Some(42))?;
//! drop(backend);
//!
//! let backend = storage.open("counts", 0)?;
//! assert_eq!(backend.get(b"a")?, Some(Bytes::from("1")));
//! assert_eq!(backend.checkpoint()?, Some(42));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), light_kafka::streams::store::StoreError>(())
//! ```

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition};

use super::store::{Backend, Entries, Storage, StoreError};

const ENTRIES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
const CHECKPOINT: &str = "changelog.checkpoint";

/// Opens redb-backed stores under one directory.
#[derive(Clone, Debug)]
pub struct RedbStorage {
    dir: PathBuf,
}

impl RedbStorage {
    /// Stores under `dir`, created when first needed.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        RedbStorage {
            dir: dir.as_ref().to_owned(),
        }
    }
}

impl Storage for RedbStorage {
    fn open(&self, store: &str, partition: i32) -> Result<Box<dyn Backend>, StoreError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| StoreError::backend(format!("cannot create {}", self.dir.display()), e))?;
        let path = self.dir.join(format!("{store}-{partition}.redb"));
        let db = Database::create(&path)
            .map_err(|e| StoreError::backend(format!("cannot open {}", path.display()), e))?;
        let write = db.begin_write().map_err(fail)?;
        write.open_table(ENTRIES).map_err(fail)?;
        write.open_table(META).map_err(fail)?;
        write.commit().map_err(fail)?;
        Ok(Box::new(RedbBackend { db }))
    }
}

/// One store of one partition in a redb file.
#[derive(Debug)]
pub struct RedbBackend {
    db: Database,
}

fn fail(error: impl Into<redb::Error>) -> StoreError {
    StoreError::backend("redb", error.into())
}

impl Backend for RedbBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let read = self.db.begin_read().map_err(fail)?;
        let table = read.open_table(ENTRIES).map_err(fail)?;
        let value = table.get(key).map_err(fail)?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StoreError> {
        let read = self.db.begin_read().map_err(fail)?;
        let table = read.open_table(ENTRIES).map_err(fail)?;
        let range = match to {
            Some(to) => table.range(from..to),
            None => table.range(from..),
        }
        .map_err(fail)?;
        range
            .map(|entry| {
                let (k, v) = entry.map_err(fail)?;
                Ok((
                    Bytes::copy_from_slice(k.value()),
                    Bytes::copy_from_slice(v.value()),
                ))
            })
            .collect()
    }

    fn write(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        checkpoint: Option<i64>,
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(fail)?;
        {
            let mut table = write.open_table(ENTRIES).map_err(fail)?;
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        table.insert(key.as_ref(), value.as_ref()).map_err(fail)?;
                    }
                    None => {
                        table.remove(key.as_ref()).map_err(fail)?;
                    }
                }
            }
            if let Some(checkpoint) = checkpoint {
                let mut meta = write.open_table(META).map_err(fail)?;
                meta.insert(CHECKPOINT, checkpoint).map_err(fail)?;
            }
        }
        write.commit().map_err(fail)
    }

    fn checkpoint(&self) -> Result<Option<i64>, StoreError> {
        let read = self.db.begin_read().map_err(fail)?;
        let meta = read.open_table(META).map_err(fail)?;
        Ok(meta.get(CHECKPOINT).map_err(fail)?.map(|v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_ranges_deletes_and_checkpoint_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("lk-redb-{}", uuid::Uuid::now_v7()));
        let storage = RedbStorage::new(&dir);
        {
            let mut b = storage.open("s", 1).unwrap();
            assert_eq!(b.checkpoint().unwrap(), None);
            let put = |k: &'static str, v: &'static str| (Bytes::from(k), Some(Bytes::from(v)));
            b.write(&[put("a", "1"), put("b", "2"), put("c", "3")], Some(3))
                .unwrap();
            b.write(&[(Bytes::from("b"), None)], None).unwrap();
        }
        let b = storage.open("s", 1).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(3));
        assert_eq!(b.get(b"b").unwrap(), None);
        let keys: Vec<_> = b
            .range(b"", None)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(keys, [Bytes::from("a"), Bytes::from("c")]);
        assert_eq!(b.range(b"a", Some(b"c")).unwrap().len(), 1);
        // Another partition is another file.
        assert_eq!(storage.open("s", 2).unwrap().get(b"a").unwrap(), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
