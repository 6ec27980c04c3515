//! `deploy/observability/`: the alert rules are valid and each alert fires
//! on its series and not before (`promtool check rules`, `promtool test
//! rules`, Debian's `prometheus` package, installed by `.ci/run`), every
//! metric the rules and the dashboard use is one paysettle exports, and the
//! dashboard is valid JSON.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/observability"))
}

/// `promtool`, or `None` with a visible line where it cannot be had.
fn promtool() -> Option<Command> {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => Some(Command::new("promtool")),
        _ => {
            eprintln!(
                "SKIPPED: promtool is not installed (Debian: apt-get install prometheus; .ci/run does it)"
            );
            None
        }
    }
}

#[test]
fn the_alert_rules_are_valid_and_each_alert_fires_on_its_series() {
    let Some(mut check) = promtool() else { return };
    let out = check
        .args(["check", "rules"])
        .arg(dir().join("alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(mut test) = promtool() else { return };
    let out = test
        .current_dir(dir())
        .args(["test", "rules", "alerts.test.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_alert_has_a_test_and_a_runbook_line() {
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("alerts.test.yml")).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
        assert!(
            readme.contains(&format!("`{alert}`")),
            "{alert} has no runbook line in the README"
        );
    }
}

#[test]
fn the_rules_and_the_dashboard_use_only_metrics_paysettle_exports() {
    let exported = [
        paysettle_receiver::telemetry::REQUESTS,
        paysettle_receiver::telemetry::REQUEST_DURATION,
        paysettle_receiver::telemetry::VERIFICATION_FAILURES,
        paysettle_receiver::telemetry::PUBLISHES,
        paysettle_receiver::telemetry::SPOOL_DEPTH,
        paysettle_receiver::telemetry::QUEUE_DURABLE,
        paysettle_receiver::telemetry::BROKER_HEALTHY,
        paysettle_receiver::telemetry::QUEUE_EVENTS,
        paysettle_worker::telemetry::PAYMENTS,
        paysettle_worker::telemetry::FLAGGED,
        paysettle_worker::telemetry::CHECKS_FAILING,
        paysettle_worker::telemetry::OUTBOX_UNPUBLISHED,
        paysettle_worker::telemetry::OUTBOX_OLDEST,
        paysettle_worker::telemetry::LEDGER_UP,
        paysettle_worker::telemetry::ATTENTION,
        paysettle_worker::telemetry::DEAD_LETTERED,
    ];
    let dashboard = std::fs::read_to_string(dir().join("grafana-dashboard.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
    for (name, text) in [
        ("alerts.yml", &rules),
        ("grafana-dashboard.json", &dashboard),
    ] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("paysettle_") {
            let used: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A histogram's series carry suffixes.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(used.as_str(), |n, suffix| {
                    n.strip_suffix(suffix).unwrap_or(n)
                });
            assert!(
                exported.contains(&base),
                "{name} uses {used}, which paysettle does not export"
            );
            rest = &rest[at + used.len()..];
        }
    }
}
