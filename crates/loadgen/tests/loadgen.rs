//! The load generator's callbacks are genuine: the real receiver, verifying
//! with `paysettle-core`, accepts every one of them and makes it durable,
//! and refuses them when signed with the wrong secret. And the load loops
//! count what the server answered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paysettle_core::Account;
use paysettle_core::paysys::NotificationAuth;
use paysettle_core::plutu::CallbackVerifier;
use paysettle_loadgen::callbacks::{self, Credentials, Provider};
use paysettle_loadgen::conn::Conn;
use paysettle_loadgen::load::{self, Plan, Requests};
use paysettle_queue::{BackendKind, Queue, QueueConfig, QueueKind};
use paysettle_receiver::{
    PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverSettings, ResultPage,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "shop-2";

fn credentials() -> Credentials {
    Credentials {
        paysys_user: "lg-vendor".into(),
        paysys_password: "lg-vendor-secret".into(),
        plutu_secret: "sk_lg_plutu_secret".into(),
        account: Some(ACCOUNT.into()),
    }
}

fn settings(c: &Credentials) -> ReceiverSettings {
    let secret = |s: &str| SecretString::from(s.to_owned());
    let account = Account::parse(ACCOUNT).unwrap();
    ReceiverSettings {
        paysys: BTreeMap::from([(
            account.clone(),
            PaysysAccount {
                auth: NotificationAuth::new(&[(
                    secret(&c.paysys_user),
                    secret(&c.paysys_password),
                )])
                .unwrap(),
            },
        )]),
        plutu: BTreeMap::from([(
            account.clone(),
            PlutuAccount {
                verifier: CallbackVerifier::new(secret(&c.plutu_secret)).unwrap(),
                result_page: Some(ResultPage::parse("https://shop.example/plutu").unwrap()),
            },
        )]),
        portmanat: BTreeMap::from([(account, PortmanatAccount { result_page: None })]),
        handoff: Some(paysettle_testkit::handoff::keys()),
        ..ReceiverSettings::default()
    }
}

struct Receiver {
    addr: SocketAddr,
    queue: Queue,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn receiver() -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::Embedded,
        embedded_path: dir.path().join("queue.sqlite"),
        spool_path: None,
        ..QueueConfig::default()
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(paysettle_receiver::run(
        listener,
        Arc::new(settings(&credentials())),
        queue.clone(),
        stop.clone(),
    ));
    Receiver {
        addr,
        queue,
        stop,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_receiver_accepts_every_provider_and_refuses_a_wrong_secret() {
    let server = receiver().await;
    let host = server.addr.to_string();
    let mut conn = Conn::open(server.addr).await.unwrap();
    let good = credentials();
    for (n, (provider, status)) in [
        (Provider::Paysys, 200),
        (Provider::Plutu, 303),
        (Provider::Portmanat, 200),
    ]
    .into_iter()
    .enumerate()
    {
        let request = callbacks::request(provider, n as u64, &good, &host);
        assert_eq!(
            conn.exchange(&request).await.unwrap(),
            status,
            "{provider:?}"
        );
    }
    // Portmanat's is a hint: it has a queue of its own.
    assert_eq!(
        (
            server
                .queue
                .message_count(QueueKind::Callbacks)
                .await
                .unwrap(),
            server.queue.message_count(QueueKind::Hints).await.unwrap()
        ),
        (2, 1),
        "each accepted callback is a durable message"
    );

    let wrong = Credentials {
        paysys_password: "not-the-secret".into(),
        plutu_secret: "sk_not_the_secret".into(),
        ..credentials()
    };
    for provider in [Provider::Paysys, Provider::Plutu] {
        let request = callbacks::request(provider, 9, &wrong, &host);
        assert_eq!(conn.exchange(&request).await.unwrap(), 401, "{provider:?}");
    }
    server.stop.cancel();
}

#[tokio::test]
async fn both_loops_count_the_answers_in_the_window() {
    let server = receiver().await;
    let host = server.addr.to_string();
    let good = credentials();
    let mut requests: Vec<Vec<u8>> = (0..30)
        .map(|n| callbacks::request(Provider::Plutu, n, &good, &host))
        .collect();
    // One in three is refused: the tally must tell them apart.
    for request in requests.iter_mut().step_by(3) {
        *request = callbacks::request(
            Provider::Paysys,
            0,
            &Credentials {
                paysys_password: "wrong".into(),
                ..credentials()
            },
            &host,
        );
    }
    let requests = Arc::new(Requests(requests));
    for rate in [None, Some(300.0)] {
        let plan = Plan {
            addr: server.addr,
            connections: 3,
            rate,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(400),
        };
        let (tally, _) = load::run(plan, requests.clone()).await.unwrap();
        assert!(tally.ok() > 0, "{rate:?}: {:?}", tally.statuses);
        assert_eq!(tally.errors, 0);
        assert_eq!(
            tally.statuses.keys().copied().collect::<Vec<_>>(),
            vec![303, 401],
            "{rate:?}"
        );
        assert_eq!(tally.histogram.len(), tally.completed());
        if rate.is_some() {
            // 300/s for 0.4 s: the schedule, not the server, sets the count.
            assert!(
                (100..=130).contains(&tally.completed()),
                "{}",
                tally.completed()
            );
        }
    }
    server.stop.cancel();
}

#[tokio::test]
async fn the_bare_server_reads_the_body_and_answers_200() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(paysettle_loadgen::bare::serve(listener));
    let mut conn = Conn::open(addr).await.unwrap();
    let request = callbacks::request(Provider::Paysys, 1, &credentials(), "bare");
    for _ in 0..3 {
        assert_eq!(conn.exchange(&request).await.unwrap(), 200);
    }
}
