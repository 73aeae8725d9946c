//! The Prometheus helper: metrics recorded by the layers are scraped over loopback.

use light_kafka::layers::metrics::{MetricsLayer, prometheus};
use light_kafka::testkit::{self, Accept};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Layer;

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_scrape_over_loopback_returns_the_metrics() {
    let exporter = prometheus::serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(exporter.address.ip().is_loopback());

    let mut handler = MetricsLayer::consume("scraped-svc").layer(Accept);
    for _ in 0..4 {
        testkit::call(&mut handler, testkit::record("orders").build())
            .await
            .unwrap();
    }

    let response = get(exporter.address, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    // The service's line of a metric, with every label fragment in `with`.
    let service_line = |prefix: &str, with: &[&str]| {
        response
            .lines()
            .find(|l| {
                l.starts_with(prefix)
                    && l.contains(r#"service_id="scraped-svc""#)
                    && with.iter().all(|w| l.contains(w))
            })
            .unwrap_or_else(|| panic!("no {prefix} line with {with:?} in:\n{response}"))
    };
    let line = service_line(
        "messaging_client_consumed_messages{",
        &[
            r#"outcome="success""#,
            r#"messaging_destination_name="orders""#,
        ],
    );
    assert!(line.ends_with(" 4"), "{line}");
    // Durations are the exporter's summaries: four samples of this service.
    let count = service_line("messaging_process_duration_count{", &[]);
    assert!(count.ends_with(" 4"), "{count}");
    service_line("messaging_process_duration{", &[r#"quantile="0.5""#]);
    assert!(response.contains(r#"client_id="unknown""#));

    assert!(
        get(exporter.address, "/other")
            .await
            .starts_with("HTTP/1.1 404")
    );
}
