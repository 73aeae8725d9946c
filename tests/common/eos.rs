//! The exactly-once checks shared by the real-broker and cluster tests: a
//! counting processor and a `read_committed` verifier of its outputs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use light_kafka::BoxError;
use light_kafka::record::Record;
use light_kafka::streams::store::Stores;
use tower::service_fn;

/// Counts inputs per partition in the store `count`; emits `p:o` → count.
/// `first` is called with (partition, restored count, offset) for the first
/// record of each partition this instance handles; `each` for every record.
pub fn counting(
    out: String,
    pause: Duration,
    first: impl Fn(i32, u64, i64) + Send + Sync + 'static,
) -> impl tower::Service<Record, Response = Vec<Record>, Error = BoxError, Future: Send> + Clone + Send
{
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let first = Arc::new(first);
    service_fn(move |record: Record| {
        let (out, seen, first) = (out.clone(), seen.clone(), first.clone());
        async move {
            tokio::time::sleep(pause).await;
            let stores = Stores::of(&record)?;
            let counts = stores.json::<u64>("count")?;
            let (p, o) = (record.partition().unwrap(), record.offset().unwrap());
            let before = counts.get(p.to_string())?.unwrap_or(0);
            if seen.lock().unwrap().insert(p) {
                first(p, before, o);
            }
            counts.put(p.to_string(), &(before + 1))?;
            Ok::<_, BoxError>(vec![
                Record::builder(out.as_str())
                    .key(format!("{p}:{o}"))
                    .value((before + 1).to_string())
                    .build(),
            ])
        }
    })
}

/// Exactly one output per input, and per partition the counts 1..=n once each.
pub fn check_outputs(bootstrap: &str, out: &str, partitions: i32, inputs: usize) -> (usize, usize) {
    let outputs = super::read_topic(
        bootstrap,
        out,
        partitions,
        usize::MAX,
        "read_committed",
        Duration::from_secs(15),
    );
    let mut per_key: HashMap<String, usize> = HashMap::new();
    let mut counts: HashMap<i32, Vec<(i64, u64)>> = HashMap::new();
    for r in &outputs {
        let key = r.key_str().unwrap().to_owned();
        let (p, o) = key.split_once(':').unwrap();
        counts
            .entry(p.parse().unwrap())
            .or_default()
            .push((o.parse().unwrap(), r.value_str().unwrap().parse().unwrap()));
        *per_key.entry(key).or_default() += 1;
    }
    let duplicated = per_key.values().filter(|n| **n > 1).count();
    let lost = inputs - per_key.len();
    if duplicated == 0 {
        // In input order, the count store moved by one per input: records
        // were handled in partition order and the store equals the inputs
        // committed before each.
        for (p, mut c) in counts {
            c.sort_unstable();
            let n = c.len() as u64;
            assert_eq!(
                c.iter().map(|(_, count)| *count).collect::<Vec<_>>(),
                (1..=n).collect::<Vec<_>>(),
                "partition {p}: counts in input order"
            );
        }
    }
    (lost, duplicated)
}
