//! The deployment examples under `deploy/`, checked against the product
//! wherever this machine can check them:
//!
//! - `deploy/rabbitmq/definitions.json` imported into a fresh vhost holds,
//!   queue by queue and argument by argument, exactly what the queue crate
//!   declares under the default prefix in another fresh vhost; the code then
//!   starts against the imported topology without a `PRECONDITION_FAILED`,
//!   and against a copy with another delivery limit it fails naming the
//!   argument.
//! - The systemd units pass `systemd-analyze verify` (with `ExecStart`
//!   pointed at the binary under test) and keep their hardening.
//! - The compose and Kubernetes configurations pass `paysettle config check`
//!   with every secret file they name, and the compose pieces agree with each
//!   other (credentials, callback URLs).
//!
//! Needs RabbitMQ (`PAYSETTLE_TEST_AMQP_URL`, default the local guest) and
//! `rabbitmqctl` on the same broker (`PAYSETTLE_TEST_RABBITMQCTL` names
//! another command, e.g. `docker exec rabbitmq rabbitmqctl`). The
//! management plugin is not used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paysettle_queue::{BackendKind, Queue, QueueConfig, QueueError, Topology};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// The product's embedded defaults: the queue section names the prefix,
/// delivery limit, hints bound and finance queue that definitions.json must
/// describe.
const DEFAULTS: &str = include_str!("../src/defaults.toml");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// definitions.json

/// The queue settings the defaults give, on the RabbitMQ backend at `url`,
/// with no spool so a broker problem fails the start instead of hiding.
fn default_queue_config(url: String) -> QueueConfig {
    let defaults: toml::Table = DEFAULTS.parse().unwrap();
    let queue = defaults["queue"].as_table().unwrap();
    QueueConfig {
        backend: BackendKind::RabbitMq,
        amqp_url: url,
        prefix: queue["prefix"].as_str().unwrap().to_owned(),
        delivery_limit: u32::try_from(queue["delivery_limit"].as_integer().unwrap()).unwrap(),
        hints_max_length: u64::try_from(queue["hints_max_length"].as_integer().unwrap()).unwrap(),
        finance_queue: queue["finance_queue"].as_bool().unwrap(),
        spool_path: None,
        connect_timeout: Duration::from_secs(5),
        ..QueueConfig::default()
    }
}

fn rabbitmqctl(args: &[&str]) -> Command {
    let program = std::env::var("PAYSETTLE_TEST_RABBITMQCTL").unwrap_or("rabbitmqctl".into());
    let mut words = program.split_whitespace();
    let mut command = Command::new(words.next().unwrap_or("rabbitmqctl"));
    command.args(words).args(args);
    command
}

/// Runs rabbitmqctl, feeding `stdin`, and returns its standard output.
fn ctl(args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
    let mut child = rabbitmqctl(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run rabbitmqctl ({e}); install it or set PAYSETTLE_TEST_RABBITMQCTL")
        })?;
    if let Some(bytes) = stdin {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).map_err(|e| e.to_string())?;
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().map_err(|e| e.to_string())?;
    // Only its standard error: the output of an export holds password hashes.
    if !status.success() {
        return Err(format!(
            "rabbitmqctl {}: {status}: {}",
            args.join(" "),
            String::from_utf8_lossy(&stderr)
        ));
    }
    Ok(String::from_utf8(stdout).unwrap())
}

/// The vhosts a test made; deleted when it ends, passed or failed.
struct Vhosts(Vec<String>);

impl Drop for Vhosts {
    fn drop(&mut self) {
        std::thread::scope(|scope| {
            for vhost in &self.0 {
                scope.spawn(move || {
                    if let Err(e) = ctl(&["-q", "delete_vhost", vhost], None) {
                        eprintln!("cleanup of vhost {vhost}: {e}");
                    }
                });
            }
        });
    }
}

/// `url` (amqp://user:pass@host:port/…) with its vhost replaced; the test's
/// vhost names need no escaping.
fn url_for_vhost(url: &str, vhost: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority = rest.split(['/', '?']).next().unwrap();
    format!("{scheme}://{authority}/{vhost}")
}

fn url_user(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let userinfo = rest.split_once('@').map_or("guest", |(u, _)| u);
    userinfo.split(':').next().unwrap().to_owned()
}

/// definitions.json's topology moved into `vhost`.
fn topology_in(definitions: &Value, vhost: &str) -> BTreeMap<&'static str, Vec<Value>> {
    ["exchanges", "queues", "bindings"]
        .into_iter()
        .map(|section| {
            let items = definitions[section]
                .as_array()
                .unwrap_or_else(|| panic!("definitions.json has no {section} list"))
                .iter()
                .map(|item| {
                    assert_eq!(
                        item["vhost"], "/",
                        "definitions.json describes the default vhost: {item}"
                    );
                    let mut item = item.clone();
                    item["vhost"] = json!(vhost);
                    item
                })
                .collect();
            (section, items)
        })
        .collect()
}

/// What one vhost holds, as strings that compare and print well: each
/// queue's and exchange's properties and arguments, and each binding.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    queues: BTreeMap<String, BTreeMap<String, String>>,
    exchanges: BTreeMap<String, BTreeMap<String, String>>,
    bindings: BTreeSet<String>,
}

impl Snapshot {
    /// The part of `export` (the broker's definitions, as
    /// `rabbitmqctl export_definitions` writes them) that is in `vhost`.
    fn of(export: &Value, vhost: &str) -> Snapshot {
        let in_vhost = |section: &str| {
            export[section]
                .as_array()
                .unwrap_or_else(|| panic!("the export has no {section} list"))
                .iter()
                .filter(move |item| item["vhost"] == vhost)
        };
        // Every field but the name, and each argument on its own.
        let properties = |item: &Value| {
            let mut out = BTreeMap::new();
            for (key, value) in item.as_object().unwrap() {
                match key.as_str() {
                    "name" | "vhost" => {}
                    "arguments" => {
                        for (argument, value) in value.as_object().unwrap() {
                            out.insert(format!("argument {argument}"), value.to_string());
                        }
                    }
                    _ => {
                        out.insert(key.clone(), value.to_string());
                    }
                }
            }
            out
        };
        let named = |section: &str| {
            in_vhost(section)
                .map(|item| (item["name"].as_str().unwrap().to_owned(), properties(item)))
                .filter(|(name, _)| !name.is_empty() && !name.starts_with("amq."))
                .collect()
        };
        Snapshot {
            queues: named("queues"),
            exchanges: named("exchanges"),
            bindings: in_vhost("bindings")
                .map(|b| {
                    format!(
                        "'{}' -> {} '{}' key '{}' arguments {}",
                        b["source"].as_str().unwrap(),
                        b["destination_type"].as_str().unwrap(),
                        b["destination"].as_str().unwrap(),
                        b["routing_key"].as_str().unwrap(),
                        b["arguments"],
                    )
                })
                .collect(),
        }
    }
}

/// Every way `imported` (definitions.json) and `declared` (the code) differ.
fn differences(imported: &Snapshot, declared: &Snapshot) -> Vec<String> {
    type Named = BTreeMap<String, BTreeMap<String, String>>;
    let mut out = Vec::new();
    let mut named = |kind: &str, a: &Named, b: &Named| {
        for name in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
            match (a.get(name), b.get(name)) {
                (Some(_), None) => out.push(format!("{kind} '{name}' is in definitions.json only")),
                (None, Some(_)) => {
                    out.push(format!("{kind} '{name}' is declared by the code only"))
                }
                (Some(x), Some(y)) => {
                    for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                        if x.get(key) != y.get(key) {
                            let show =
                                |v: Option<&String>| v.map_or("(absent)".to_owned(), String::clone);
                            out.push(format!(
                                "{kind} '{name}' {key}: definitions.json {}, code {}",
                                show(x.get(key)),
                                show(y.get(key))
                            ));
                        }
                    }
                }
                (None, None) => {}
            }
        }
    };
    named("queue", &imported.queues, &declared.queues);
    named("exchange", &imported.exchanges, &declared.exchanges);
    for binding in imported.bindings.difference(&declared.bindings) {
        out.push(format!("binding {binding} is in definitions.json only"));
    }
    for binding in declared.bindings.difference(&imported.bindings) {
        out.push(format!("binding {binding} is declared by the code only"));
    }
    out
}

#[test]
fn definitions_json_matches_what_the_code_declares_and_the_code_starts_on_it() {
    let definitions: Value =
        serde_json::from_str(&read("deploy/rabbitmq/definitions.json")).unwrap();
    let base = paysettle_testkit::amqp::amqp_url();
    let user = url_user(&base);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = |role: &str| format!("pstest-defs-{}-{nanos}-{role}", std::process::id());
    let (imported, declared, conflicting) =
        (name("imported"), name("declared"), name("conflicting"));
    let _cleanup = Vhosts(vec![
        imported.clone(),
        declared.clone(),
        conflicting.clone(),
    ]);

    let defaults = default_queue_config(String::new());
    let config = |vhost: &str| QueueConfig {
        amqp_url: url_for_vhost(&base, vhost),
        ..defaults.clone()
    };
    let topology = Topology::new(&defaults.prefix, defaults.finance_queue);
    let limit = defaults.delivery_limit;

    // One import makes the three vhosts, lets the test's user into them, and
    // fills two: `imported` with definitions.json as it is, `conflicting` with
    // a copy whose callbacks queue has another delivery limit.
    let mut document =
        json!({"vhosts": [], "permissions": [], "exchanges": [], "queues": [], "bindings": []});
    for vhost in [&imported, &declared, &conflicting] {
        document["vhosts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": vhost}));
        document["permissions"].as_array_mut().unwrap().push(json!({
            "user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"
        }));
    }
    for (vhost, changed_limit) in [(&imported, None), (&conflicting, Some(limit + 1))] {
        for (section, mut items) in topology_in(&definitions, vhost) {
            if let Some(other) = changed_limit {
                let callbacks = items
                    .iter_mut()
                    .find(|q| section == "queues" && q["name"] == topology.callbacks.as_str());
                if let Some(queue) = callbacks {
                    queue["arguments"]["x-delivery-limit"] = json!(other);
                }
            }
            document[section].as_array_mut().unwrap().extend(items);
        }
    }
    let document = serde_json::to_vec(&document).unwrap();
    ctl(
        &["-q", "import_definitions", "--format", "json"],
        Some(&document),
    )
    .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let start = |vhost: &str| runtime.block_on(Queue::start(config(vhost)));
    let stop = |queue: Queue| runtime.block_on(queue.shutdown(Duration::from_secs(2)));

    // The code declares its topology in an empty vhost.
    stop(start(&declared).unwrap());
    // One export holds both (and the users' password hashes: never print it).
    let export: Value = serde_json::from_str(
        &ctl(&["-q", "export_definitions", "-", "--format", "json"], None).unwrap(),
    )
    .unwrap();
    let imported_snapshot = Snapshot::of(&export, &imported);
    let declared_snapshot = Snapshot::of(&export, &declared);

    // What the code declared is the whole topology: the comparison below is
    // between two complete pictures, not two empty ones.
    let queue_names: BTreeSet<&str> = declared_snapshot
        .queues
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        Some(topology.callbacks.as_str()),
        Some(topology.dead_letters.as_str()),
        Some(topology.hints.as_str()),
        topology.finance.as_deref(),
        Some(topology.shop.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(queue_names, expected);
    assert_eq!(
        declared_snapshot.queues[&topology.callbacks].get("argument x-delivery-limit"),
        Some(&limit.to_string())
    );
    let exchange_names: BTreeSet<&str> = declared_snapshot
        .exchanges
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        exchange_names,
        BTreeSet::from([
            topology.dead_letter_exchange.as_str(),
            topology.events_exchange.as_str()
        ])
    );
    // The dead letters', the shop's, and the finance queue's when declared.
    assert_eq!(
        declared_snapshot.bindings.len(),
        2 + usize::from(topology.finance.is_some()),
        "{:#?}",
        declared_snapshot.bindings
    );

    let differ = differences(&imported_snapshot, &declared_snapshot);
    assert!(
        differ.is_empty(),
        "deploy/rabbitmq/definitions.json disagrees with the topology the code declares:\n  {}",
        differ.join("\n  ")
    );

    // RabbitMQ agrees too: declaring over the imported topology raises no
    // PRECONDITION_FAILED.
    stop(
        start(&imported).unwrap_or_else(|e| {
            panic!("the code does not start on definitions.json's topology: {e}")
        }),
    );

    // And a topology that differs is refused, naming the queue and argument.
    match start(&conflicting) {
        Err(QueueError::TopologyConflict {
            kind,
            name,
            argument,
            detail,
        }) => {
            assert_eq!(
                (kind, name.as_str()),
                ("queue", topology.callbacks.as_str())
            );
            assert_eq!(argument, "x-delivery-limit", "{detail}");
        }
        Err(other) => panic!("expected a topology conflict, got: {other}"),
        Ok(queue) => {
            stop(queue);
            panic!("the code started on a callbacks queue with another delivery limit");
        }
    }
}

#[test]
fn the_comparison_names_each_difference() {
    let vhost = |name: &str, limit: u32, key: &str| {
        json!({
            "queues": [{"name": "p.callbacks", "vhost": name, "durable": true, "auto_delete": false,
                        "type": "quorum", "arguments": {"x-delivery-limit": limit, "x-queue-type": "quorum"}}],
            "exchanges": [{"name": "p.events", "vhost": name, "type": "topic", "durable": true,
                           "auto_delete": false, "internal": false, "arguments": {}},
                          {"name": "amq.topic", "vhost": name, "type": "topic", "durable": true,
                           "auto_delete": false, "internal": false, "arguments": {}}],
            "bindings": [{"source": "p.events", "vhost": name, "destination": "p.callbacks",
                          "destination_type": "queue", "routing_key": key, "arguments": {}}],
        })
    };
    let mut export = vhost("a", 5, "payment.#");
    for (section, items) in vhost("b", 6, "card.#").as_object().unwrap() {
        let all = export[section].as_array_mut().unwrap();
        all.extend(items.as_array().unwrap().iter().cloned());
    }
    let (a, b) = (Snapshot::of(&export, "a"), Snapshot::of(&export, "b"));
    assert!(differences(&a, &a).is_empty());
    assert_eq!(a.exchanges.len(), 1, "the amq.* exchanges are not compared");

    let differ = differences(&a, &b);
    assert_eq!(differ.len(), 3, "{differ:#?}");
    assert_eq!(
        differ[0],
        "queue 'p.callbacks' argument x-delivery-limit: definitions.json 5, code 6"
    );
    assert!(
        differ
            .iter()
            .any(|d| d.contains("'payment.#'") && d.contains("definitions.json only"))
    );
    assert!(
        differ
            .iter()
            .any(|d| d.contains("'card.#'") && d.contains("code only"))
    );
}

// ---------------------------------------------------------------------------
// systemd

fn in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

const UNITS: [(&str, &str); 2] = [
    ("paysettle-receive.service", "receive"),
    ("paysettle-work.service", "work"),
];

/// Complaints `systemd-analyze verify` made about the units in `dir` (it
/// exits 0 on warnings such as an unknown key, so its output is the verdict).
fn verify(analyze: &Path, dir: &Path, units: &[&str]) -> Vec<String> {
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| dir.join(u)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut complaints: Vec<String> = stderr
        .lines()
        .filter(|line| {
            let ours =
                line.contains(&*dir.to_string_lossy()) || units.iter().any(|u| line.contains(u));
            if !ours && !line.trim().is_empty() {
                eprintln!("systemd-analyze (about another unit): {line}");
            }
            ours
        })
        .map(str::to_owned)
        .collect();
    if !output.status.success() {
        complaints.push(format!(
            "systemd-analyze verify exited with {}: {stderr}",
            output.status
        ));
    }
    complaints
}

#[test]
fn systemd_units_pass_verify_and_stay_hardened() {
    let Some(analyze) = in_path("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    };
    let defaults: toml::Table = DEFAULTS.parse().unwrap();
    let grace_ms = |section: &str| defaults[section]["shutdown_grace_ms"].as_integer().unwrap();
    // verify checks that ExecStart's binary exists: point it at this build.
    let binary = env!("CARGO_BIN_EXE_paysettle");
    let dir = tempfile::tempdir().unwrap();
    for (unit, role) in UNITS {
        let text = read(&format!("deploy/systemd/{unit}"));
        let exec = format!(
            "ExecStart=/usr/local/bin/paysettle {role} --config /etc/paysettle/paysettle.toml\n"
        );
        assert!(text.contains(&exec), "{unit} should run `{exec}`");
        assert!(
            text.contains("\nUser=paysettle\n"),
            "{unit} runs as paysettle"
        );
        // The stop timeout covers the graceful stop: the role's grace, then
        // up to 5 s for the broker connection to close.
        let timeout = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{unit} sets TimeoutStopSec=<N>s"));
        let section = if role == "receive" {
            "receiver"
        } else {
            "worker"
        };
        assert!(
            timeout * 1000 >= grace_ms(section) + 5000,
            "{unit}: TimeoutStopSec={timeout}s is shorter than the graceful stop"
        );
        let rewritten = text.replace(
            "ExecStart=/usr/local/bin/paysettle ",
            &format!("ExecStart={binary} "),
        );
        std::fs::write(dir.path().join(unit), rewritten).unwrap();
    }
    let names = UNITS.map(|(unit, _)| unit);
    let complaints = verify(&analyze, dir.path(), &names);
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify:\n{}",
        complaints.join("\n")
    );

    // The check can fail: a unit with an unknown key is flagged.
    let broken = "paysettle-broken.service";
    let text = std::fs::read_to_string(dir.path().join(names[0])).unwrap();
    let text = text.replace("[Service]\n", "[Service]\nRestartt=always\n");
    std::fs::write(dir.path().join(broken), text).unwrap();
    let complaints = verify(&analyze, dir.path(), &[broken]);
    assert!(
        complaints.iter().any(|c| c.contains("Restartt")),
        "an unknown key went unnoticed: {complaints:?}"
    );

    // The hardening holds: systemd's own exposure score stays "OK" (≤ 2.0).
    for unit in names {
        let output = Command::new(&analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(dir.path().join(unit))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{unit}: exposure above 2.0:\n{}",
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.contains('✗') || l.contains("Overall"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// compose and Kubernetes configurations

/// Every `*_file` value in `value` (the secrets a configuration names).
fn secret_files(value: &toml::Value, found: &mut Vec<(String, String)>, at: &str) {
    match value {
        toml::Value::Table(table) => {
            for (key, item) in table {
                let here = format!("{at}.{key}");
                if key.ends_with("_file")
                    && let Some(path) = item.as_str()
                {
                    found.push((here, path.to_owned()));
                } else {
                    secret_files(item, found, &here);
                }
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                secret_files(item, found, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

/// Runs `paysettle config check` on `relative` with each secret file path
/// replaced through `locate` (which also checks the deployment provides it).
fn config_check(relative: &str, locate: impl Fn(&str) -> PathBuf) {
    let text = read(relative);
    let mut files = Vec::new();
    secret_files(&toml::Value::Table(text.parse().unwrap()), &mut files, "");
    assert!(!files.is_empty(), "{relative} takes its secrets from files");
    let mut rewritten = text.clone();
    for (key, path) in &files {
        let local = locate(path);
        assert!(local.is_file(), "{relative}{key}: no secret behind {path}");
        rewritten = rewritten.replace(
            &format!("\"{path}\""),
            &format!("{:?}", local.display().to_string()),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paysettle.toml");
    std::fs::write(&config, rewritten).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
    command.args(["config", "check", "--config"]).arg(&config);
    // The file alone decides, whatever this shell exports.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PAYSETTLE") {
            command.env_remove(name);
        }
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{relative} fails config check:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("backend = \"rabbitmq\""),
        "{relative}: {stdout}"
    );
}

#[test]
fn the_compose_configuration_passes_config_check_and_its_pieces_agree() {
    let compose = read("deploy/compose.yaml");
    let secrets = repo().join("deploy/compose/secrets");
    config_check("deploy/compose/paysettle.toml", |path| {
        let name = path
            .strip_prefix("/run/secrets/")
            .expect("compose secrets are in /run/secrets");
        assert!(
            compose.contains(&format!("file: ./compose/secrets/{name}\n")),
            "compose.yaml declares no secret {name}"
        );
        secrets.join(name)
    });

    // The simulator trusts what paysettle presents, and calls the receiver.
    let sim = paysettle_sim::SimConfig::load(&repo().join("deploy/compose/sim.toml")).unwrap();
    let secret = |name: &str| {
        read(&format!("deploy/compose/secrets/{name}"))
            .trim_end()
            .to_owned()
    };
    assert_eq!(
        sim.paysys.secret_key.expose_secret(),
        secret("paysys_secret_key")
    );
    assert_eq!(
        sim.paysys.vendor_method.expose_secret(),
        secret("paysys_vendor_method")
    );
    assert_eq!(
        sim.paysys.vendor_secret_key.expose_secret(),
        secret("paysys_vendor_secret")
    );
    assert_eq!(
        sim.plutu.secret_key.expose_secret(),
        secret("plutu_secret_key")
    );
    for url in [
        &sim.portmanat.callback_url,
        &sim.paysys.notify_url,
        &sim.plutu.default_return_url,
    ] {
        assert!(url.starts_with("http://receive:8080/callbacks/"), "{url}");
    }

    // RabbitMQ's user is the one in the AMQP URL, and may use the prefix.
    let users: Value = serde_json::from_str(&read("deploy/compose/rabbitmq/users.json")).unwrap();
    let user = &users["users"][0];
    let credentials = format!(
        "{}:{}@",
        user["name"].as_str().unwrap(),
        user["password"].as_str().unwrap()
    );
    assert!(
        secret("amqp_url").contains(&credentials),
        "amqp_url and users.json disagree"
    );
    assert_eq!(users["permissions"][0]["user"], user["name"]);

    // The workers' ledger URL names the PostgreSQL user, password and
    // database the postgres service creates.
    let ledger_url = secret("ledger_url");
    let password = secret("postgres_password");
    assert!(
        ledger_url.starts_with(&format!(
            "postgres://paysettle:{}@postgres:5432/paysettle",
            password.trim()
        )),
        "ledger_url and postgres_password disagree"
    );
    assert!(
        compose.contains("POSTGRES_USER: paysettle") && compose.contains("POSTGRES_DB: paysettle"),
        "the postgres service creates another user or database than ledger_url names"
    );
}

#[test]
fn the_kubernetes_configuration_passes_config_check_with_the_secrets_it_names() {
    let secret = read("deploy/k8s/secret.yaml");
    // stringData's `  key: "value"` lines: the placeholders, written to files
    // where the configuration expects the mounted Secret.
    let placeholders: BTreeMap<&str, &str> = secret
        .split_once("stringData:\n")
        .expect("secret.yaml has stringData")
        .1
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(": "))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    config_check("deploy/k8s/paysettle.toml", |path| {
        let key = path
            .strip_prefix("/run/secrets/paysettle/")
            .expect("the Secret is mounted at /run/secrets/paysettle");
        let value = placeholders
            .get(key)
            .unwrap_or_else(|| panic!("secret.yaml has no key {key}"));
        let local = dir.path().join(key);
        std::fs::write(&local, format!("{value}\n")).unwrap();
        local
    });
}
