//! A Kafka client made of hand-written bytes: a Produce request (v3, one
//! record batch of magic 2) sent over a plain TCP socket, so tests can put on
//! a broker what librdkafka would never write (header names that are not
//! UTF-8, for one), exactly as another client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One record to write: key, value and headers exactly as given (`None` is null).
#[derive(Clone, Debug, Default)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Produces `records` to `topic`/`partition` of the broker at `bootstrap`
/// (which must lead the partition, as a single-broker cluster does) and
/// returns the base offset the broker assigned.
pub fn produce(bootstrap: &str, topic: &str, partition: i32, records: &[RawRecord]) -> i64 {
    let batch = record_batch(records);
    let mut body = Vec::new();
    body.extend_from_slice(&0i16.to_be_bytes()); // Produce
    body.extend_from_slice(&3i16.to_be_bytes()); // version 3
    body.extend_from_slice(&42i32.to_be_bytes()); // correlation id
    string(&mut body, b"raw-test-client");
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks = all
    body.extend_from_slice(&10_000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(&batch);

    let mut socket = TcpStream::connect(bootstrap).expect("connect to the broker");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    socket
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    socket.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).expect("produce response");
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut response).unwrap();

    let mut at = 0usize;
    let mut take = |n: usize| {
        let slice = response[at..at + n].to_vec();
        at += n;
        slice
    };
    assert_eq!(i32::from_be_bytes(take(4).try_into().unwrap()), 42);
    assert_eq!(i32::from_be_bytes(take(4).try_into().unwrap()), 1, "topics");
    let name_len = i16::from_be_bytes(take(2).try_into().unwrap()) as usize;
    take(name_len);
    assert_eq!(
        i32::from_be_bytes(take(4).try_into().unwrap()),
        1,
        "partitions"
    );
    take(4);
    let error = i16::from_be_bytes(take(2).try_into().unwrap());
    assert_eq!(
        error, 0,
        "the broker refused the raw produce (error code {error})"
    );
    i64::from_be_bytes(take(8).try_into().unwrap())
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s);
}

fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => varint(out, -1),
        Some(b) => {
            varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn record_batch(records: &[RawRecord]) -> Vec<u8> {
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    // From `attributes` on: the part the CRC covers.
    let mut tail = Vec::new();
    tail.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression
    tail.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    tail.extend_from_slice(&base_timestamp.to_be_bytes());
    tail.extend_from_slice(&max_timestamp.to_be_bytes());
    tail.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    tail.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    tail.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    tail.extend_from_slice(&(records.len() as i32).to_be_bytes());
    for (delta, record) in records.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        varint(&mut body, record.timestamp - base_timestamp);
        varint(&mut body, delta as i64);
        bytes(&mut body, record.key.as_deref());
        bytes(&mut body, record.value.as_deref());
        varint(&mut body, record.headers.len() as i64);
        for (name, value) in &record.headers {
            bytes(&mut body, Some(name));
            bytes(&mut body, value.as_deref());
        }
        varint(&mut tail, body.len() as i64);
        tail.extend_from_slice(&body);
    }
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((4 + 1 + 4 + tail.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);
    batch
}

/// CRC-32C (Castagnoli), as record batches of magic 2 carry it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
