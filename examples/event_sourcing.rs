//! Event sourcing and CQRS on Kafka alone, on the embedded broker:
//!
//! 1. commands are posted over HTTP (`POST /account/{id}`) to a command gateway;
//! 2. an aggregate, run by an exactly-once stream processor, handles each
//!    command into events (with optimistic concurrency per account);
//! 3. a projection folds the events into balances;
//! 4. a query endpoint (`GET /balances/{id}`) serves them.
//!
//! Run it with `cargo run --example event_sourcing`: nothing to install.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use light_kafka::record::Record;
use light_kafka::service::embedded::EmbeddedKafka;
use light_kafka::streams::aggregate::{Aggregate, AggregateService, CommandGateway, DomainEvent};
use light_kafka::streams::changelog_topic;
use light_kafka::streams::processor::StreamProcessor;
use light_kafka::streams::projection::Projection;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

/// The write model: an account that cannot go below zero.
#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
enum AccountCommand {
    Deposit { amount: i64 },
    Withdraw { amount: i64 },
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
enum AccountEvent {
    Deposited { amount: i64 },
    Withdrew { amount: i64 },
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = String;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, String> {
        match *command {
            AccountCommand::Deposit { amount } if amount > 0 => {
                Ok(vec![AccountEvent::Deposited { amount }])
            }
            AccountCommand::Withdraw { amount } if amount > 0 && amount <= self.balance => {
                Ok(vec![AccountEvent::Withdrew { amount }])
            }
            AccountCommand::Withdraw { amount } if amount > 0 => Err(format!(
                "insufficient funds: balance {}, asked {amount}",
                self.balance
            )),
            _ => Err("amounts must be positive".into()),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrew { amount } => self.balance -= amount,
        }
    }
}

const APP: &str = "bank";
const COMMANDS: &str = "account-commands";
const EVENTS: &str = "account-events";
const REPLIES: &str = "account-replies";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kafka = EmbeddedKafka::start()?;
    println!("embedded Kafka listening on {}", kafka.bootstrap_servers());
    for topic in [
        COMMANDS,
        EVENTS,
        REPLIES,
        &changelog_topic(APP, Account::TYPE),
    ] {
        kafka.create_topic(topic, 2)?;
    }

    // Write side: the aggregate in an exactly-once stream processor.
    let processor = StreamProcessor::builder(APP)
        .bootstrap_servers(kafka.bootstrap_servers())
        .topics([COMMANDS])
        .store(Account::TYPE)
        .max_batch_time(Duration::from_millis(10))
        .build()
        .await?;
    let handle = processor.handle();
    let writer = tokio::spawn(processor.run(AggregateService::<Account>::new(EVENTS, REPLIES)));

    // Read side: balances folded from the events.
    let balances = Projection::<i64>::builder("balances", EVENTS)
        .bootstrap_servers(kafka.bootstrap_servers())
        .fold(|balance, record: &Record| {
            let event: DomainEvent<AccountEvent> = record.json()?;
            let balance = balance.unwrap_or(0);
            Ok(Some(match event.event {
                AccountEvent::Deposited { amount } => balance + amount,
                AccountEvent::Withdrew { amount } => balance - amount,
            }))
        })
        .start()
        .await?;

    let gateway = CommandGateway::<Account>::builder(COMMANDS, REPLIES)
        .bootstrap_servers(kafka.bootstrap_servers())
        .start()
        .await?;
    let app = axum::Router::new()
        .merge(gateway.router())
        .merge(balances.router());

    println!(
        "waiting for the processor to join its group (the embedded broker holds a first join for 3 s)..."
    );
    let commands = [
        (
            "alice",
            r#"{"command": {"type": "deposit", "amount": 100}}"#,
        ),
        (
            "alice",
            r#"{"command": {"type": "withdraw", "amount": 30}}"#,
        ),
        ("bob", r#"{"command": {"type": "deposit", "amount": 50}}"#),
        (
            "alice",
            r#"{"command": {"type": "withdraw", "amount": 500}}"#,
        ),
        (
            "alice",
            r#"{"expectedVersion": 1, "command": {"type": "deposit", "amount": 5}}"#,
        ),
        (
            "alice",
            r#"{"expectedVersion": 2, "command": {"type": "deposit", "amount": 5}}"#,
        ),
    ];
    for (account, body) in commands {
        let request = Request::post(format!("/account/{account}"))
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
        println!("POST /account/{account} {body}\n  -> {status} {text}");
    }

    // The events, as any consumer of the event topic sees them.
    println!("events appended to `{EVENTS}`:");
    for record in &light_kafka::testkit::read_topic(
        kafka.bootstrap_servers(),
        EVENTS,
        Duration::from_secs(10),
    )? {
        let event: DomainEvent<serde_json::Value> = record.json()?;
        println!(
            "  {} v{}: {}",
            event.aggregate_id, event.version, event.event
        );
    }

    // The query side catches up with the events.
    balances.ready(Duration::from_secs(10)).await?;
    for _ in 0..100 {
        if balances.get("alice")? == Some(75) && balances.get("bob")? == Some(50) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for uri in ["/balances/alice", "/balances/bob", "/balances"] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty())?)
            .await?;
        let status = response.status();
        let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
        println!("GET {uri} -> {status} {text}");
    }
    assert_eq!(balances.get("alice")?, Some(75));
    assert_eq!(balances.get("bob")?, Some(50));

    handle.shutdown();
    writer.await??;
    println!("done: {:?}", handle.health());
    Ok(())
}
