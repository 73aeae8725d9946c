//! State store costs, per entry: a read, and a write as a processor makes it
//! (written to the backend in commits of 1,000 entries, one transaction's
//! worth). In memory and on redb (durable: each commit is fsynced).
//!
//! ```text
//! cargo bench --bench store
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use light_kafka::streams::persistent::RedbStorage;
use light_kafka::streams::store::{Backend, MemoryStorage, Storage};

const ENTRIES: usize = 100_000;
const COMMIT: usize = 1_000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i:08}"))
}

fn filled(storage: &dyn Storage, name: &str) -> Box<dyn Backend> {
    let mut backend = storage.open(name, 0).expect("open");
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(10_000) {
        let writes: Vec<_> = chunk
            .iter()
            .map(|i| (key(*i), Some(Bytes::from(format!("{i:016}")))))
            .collect();
        backend
            .write(&writes, Some(chunk[chunk.len() - 1] as i64 + 1))
            .expect("write");
    }
    backend
}

fn bench(c: &mut Criterion, kind: &str, storage: &dyn Storage) {
    let backend = filled(storage, &format!("get-{}", std::process::id()));
    let keys: Vec<Bytes> = (0..ENTRIES).map(key).collect();
    let mut i = 0;
    c.bench_function(&format!("store-get-{kind}"), |b| {
        b.iter(|| {
            i = (i + 7_919) % ENTRIES;
            black_box(backend.get(&keys[i]).expect("get"))
        })
    });
    let mut backend = storage
        .open(&format!("put-{}", std::process::id()), 0)
        .expect("open");
    let mut next = 0;
    c.bench_function(&format!("store-put-{kind}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(COMMIT);
                let writes: Vec<_> = (next..next + n)
                    .map(|i| (key(i % ENTRIES), Some(Bytes::from(format!("{i:016}")))))
                    .collect();
                next += n;
                let start = Instant::now();
                backend.write(&writes, Some(next as i64)).expect("write");
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
}

fn stores(c: &mut Criterion) {
    bench(c, "memory", &MemoryStorage);
    let dir = std::env::temp_dir().join(format!("light-kafka-store-bench-{}", std::process::id()));
    bench(c, "redb", &RedbStorage::new(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = stores
}
criterion_main!(benches);
