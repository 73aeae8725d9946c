//! Cost of building a `Record` and of converting it to and from rdkafka messages.
//!
//! ```text
//! cargo bench --bench record
//! ```

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use light_kafka::record::{Record, names};
use light_kafka::service::embedded::EmbeddedKafka;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const VALUE: [u8; 256] = [b'v'; 256];

fn headers() -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: names::CORRELATION_ID,
            value: Some("0196a6f0-6d2c-7000-8000-000000000001"),
        })
        .insert(Header {
            key: names::TRACEPARENT,
            value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        })
}

fn build(c: &mut Criterion) {
    let value = Bytes::from_static(&VALUE);
    c.bench_function("record-build", |b| {
        b.iter(|| {
            Record::builder(black_box("orders"))
                .key(black_box("order-42"))
                .value(value.clone())
                .header(
                    names::CORRELATION_ID,
                    "0196a6f0-6d2c-7000-8000-000000000001",
                )
                .header(
                    names::TRACEPARENT,
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .build()
        })
    });
}

fn from_owned(c: &mut Criterion) {
    let message = OwnedMessage::new(
        Some(VALUE.to_vec()),
        Some(b"order-42".to_vec()),
        "orders".into(),
        Timestamp::CreateTime(1_700_000_000_000),
        0,
        42,
        Some(headers()),
    );
    c.bench_function("record-from-owned-message", |b| {
        b.iter(|| Record::from(black_box(&message)))
    });
}

fn from_borrowed(c: &mut Criterion) {
    let kafka = EmbeddedKafka::start().expect("embedded kafka");
    kafka.create_topic("orders", 1).expect("topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::to("orders")
                .key("order-42")
                .payload(&VALUE[..])
                .headers(headers()),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "bench")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let message = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            break m.expect("message");
        }
    };
    c.bench_function("record-from-borrowed-message", |b| {
        b.iter(|| Record::from(black_box(&message)))
    });
}

fn to_base_record(c: &mut Criterion) {
    let record = Record::builder("orders")
        .key("order-42")
        .value(Bytes::from_static(&VALUE))
        .header(
            names::CORRELATION_ID,
            "0196a6f0-6d2c-7000-8000-000000000001",
        )
        .header(
            names::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .build();
    c.bench_function("record-to-base-record", |b| {
        b.iter(|| black_box(&record).to_base_record(()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = build, from_owned, from_borrowed, to_base_record
}
criterion_main!(benches);
