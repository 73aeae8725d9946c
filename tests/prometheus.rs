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
    let line = response
        .lines()
        .find(|l| {
            l.starts_with("messaging_client_consumed_messages{")
                && l.contains(r#"service_id="scraped-svc""#)
        })
        .unwrap_or_else(|| panic!("no consumed-messages line in:\n{response}"));
    assert!(
        line.contains(r#"outcome="success""#)
            && line.contains(r#"messaging_destination_name="orders""#),
        "{line}"
    );
    assert!(line.ends_with(" 4"), "{line}");
    // Durations are the exporter's summaries: four samples of this service.
    let count = response
        .lines()
        .find(|l| {
            l.starts_with("messaging_process_duration_count{")
                && l.contains(r#"service_id="scraped-svc""#)
        })
        .unwrap_or_else(|| panic!("no duration summary in:\n{response}"));
    assert!(count.ends_with(" 4"), "{count}");
    assert!(
        response
            .lines()
            .any(|l| l.starts_with("messaging_process_duration{")
                && l.contains(r#"service_id="scraped-svc""#)
                && l.contains(r#"quantile="0.5""#)),
        "{response}"
    );
    assert!(response.contains(r#"client_id="unknown""#));

    assert!(
        get(exporter.address, "/other")
            .await
            .starts_with("HTTP/1.1 404")
    );
}
