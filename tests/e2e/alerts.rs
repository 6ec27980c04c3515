//! The alert rules against the real thing: a real Prometheus (Debian's
//! `prometheus`) scrapes the real binary on RabbitMQ; the broker is cut (a
//! proxy in between) while the simulated Plutu keeps sending callbacks, and
//! `PaysettleBrokerUnreachable` fires; the broker comes back and it clears.
//! The rules are `deploy/observability/alerts.yml` with their `for:` made
//! seconds. Skipped, with a visible line, where Prometheus is not installed.

use std::process::{Child, Command, Stdio};

use paysettle_testkit::{Proxy, amqp};

use super::feed::{free_port, fresh_client, ready};
use super::*;

const ALERT: &str = "PaysettleBrokerUnreachable";

fn product(
    dir: &std::path::Path,
    sim_base: &str,
    amqp_url: &str,
    prefix: &str,
    receiver: u16,
    shop: u16,
    metrics: u16,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[ledger]
path = "{dir}/ledger.sqlite"

[queue]
backend = "rabbitmq"
amqp_url = "{amqp_url}"
prefix = "{prefix}"
spool_path = "{dir}/spool.sqlite"
confirm_timeout_ms = 1000
connect_timeout_ms = 2000

[receiver]
listen = "127.0.0.1:{receiver}"

[shop_api]
listen = "127.0.0.1:{shop}"

[metrics]
listen = "127.0.0.1:{metrics}"

{accounts}"#,
        dir = dir.display(),
        accounts = paysettle_testkit::config::sim_accounts(sim_base),
    );
    let path = dir.join("paysettle.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The state of the alert in Prometheus: `None` when it is not active.
async fn alert_state(prometheus: u16) -> Option<String> {
    let answer: Value = fresh_client()
        .get(format!("http://127.0.0.1:{prometheus}/api/v1/alerts"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == ALERT)
        .and_then(|a| a["state"].as_str().map(str::to_owned))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_real_prometheus_sees_the_broker_alert_fire_when_the_broker_is_cut_and_clear_when_it_is_back()
 {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: prometheus is not installed (Debian: apt-get install prometheus; .ci/run does it)"
        );
        return;
    }
    let queue_dir = TestQueue::new(BackendKind::RabbitMq).unwrap();
    let proxy = Proxy::start(amqp::broker_addr(&queue_dir.amqp_url))
        .await
        .unwrap();
    let via_proxy = amqp::url_via(&queue_dir.amqp_url, proxy.addr());
    let dir = tempfile::tempdir().unwrap();
    let (receiver, shop, metrics, prometheus) =
        (free_port(), free_port(), free_port(), free_port());

    let mut sim_config = SimConfig::for_tests();
    sim_config.plutu.callback_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    sim_config.plutu.default_return_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    let sim = Sim::start(sim_config).await.unwrap();
    let config = product(
        dir.path(),
        sim.base_url(),
        &via_proxy,
        &queue_dir.prefix,
        receiver,
        shop,
        metrics,
    );
    let _paysettle = Killed(
        Command::new(env!("CARGO_BIN_EXE_paysettle"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    ready(shop).await;

    // The rules as shipped, with their waits made seconds.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/observability/alerts.yml"
    ))
    .unwrap()
    .lines()
    .map(|line| match line.trim().strip_prefix("for: ") {
        Some(_) => "        for: 2s".to_owned(),
        None => line.to_owned(),
    })
    .collect::<Vec<_>>()
    .join("\n");
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: paysettle\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    paysettle_testkit::eventually(
        Duration::from_secs(60),
        "Prometheus scrapes paysettle",
        || async {
            let answer: Option<Value> = async {
                fresh_client()
                    .get(format!("http://127.0.0.1:{prometheus}/api/v1/query"))
                    .query(&[("query", "paysettle_queue_broker_healthy")])
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()
            }
            .await;
            answer.is_some_and(|a| a["data"]["result"][0]["value"][1] == "1")
        },
    )
    .await;
    assert_eq!(
        alert_state(prometheus).await,
        None,
        "no alert while the broker is there"
    );

    // The broker goes away while Plutu keeps calling back: the spool grows.
    proxy.cut();
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        n += 1;
        sim.create_payment(
            NewPayment::new(SimProvider::Plutu, format!("ALERT-{n}"), 1000 + n)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(50)),
        )
        .unwrap();
        if alert_state(prometheus).await.as_deref() == Some("firing") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ALERT} never fired"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // It comes back: the spool drains and the alert clears.
    proxy.heal();
    paysettle_testkit::eventually(
        Duration::from_secs(90),
        "the alert clears once the broker is back",
        || async { alert_state(prometheus).await.is_none() },
    )
    .await;
    sim.shutdown().await;
}
