//! Cost of loading a real kafka-sidecar config folder (the corpus'
//! `sidecar-service-defaults`: light-4j `handler.yml` with HTTP paths, the
//! three `kafka-*.yml`, `values.yml`...) and building its chains (the
//! default chain around the HTTP backend, with its dead-letter producer).
//!
//! ```text
//! cargo bench --bench config
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use light_kafka::config::{Config, Registry};

fn load_and_build(c: &mut Criterion) {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-corpus/sidecar-service-defaults");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let registry = Registry::new();
    c.bench_function("config-load-sidecar-folder", |b| {
        // The config and its chains (a producer, an HTTP client) are
        // dropped outside the measured time.
        b.iter_with_large_drop(|| {
            let config = Config::load_with(black_box(&dir), |_| None).expect("the folder loads");
            let chains = config.chains(&registry).expect("the chains build");
            black_box((config, chains))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = load_and_build
}
criterion_main!(benches);
