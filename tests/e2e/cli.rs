//! The `paysettle` binary as an operator meets it: the example
//! configuration, clear one-line errors, help with examples.

use std::process::{Command, Output};

fn paysettle(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
    command.args(args).env_remove("PAYSETTLE_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/paysettle.example.toml");

#[test]
fn the_example_configuration_passes_config_check_with_secrets_redacted() {
    let out = paysettle(&["config", "check", "--config", EXAMPLE], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("[paysys.default]"), "{printed}");
    for secret in [
        "replace-with-the-paysys-secret-key",
        "replace-with-vendor-secret-key",
        "sk_replace_with_the_plutu_secret_key",
        "replace-with-a-random-hand-off-secret",
        "guest:guest",
    ] {
        assert!(
            !printed.contains(secret),
            "{secret} printed in clear:\n{printed}"
        );
    }
    assert!(printed.contains("[redacted]"));
    // The demo's configuration too.
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo.toml");
    assert!(
        paysettle(&["config", "check", "--config", demo], &[])
            .status
            .success()
    );
}

#[test]
fn every_problem_is_named_by_its_key_on_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[queue]\nbackend = \"kafka\"\n[plutu.default]\nresult_page = \"ftp://x\"\n",
    )
    .unwrap();
    let out = paysettle(&["config", "check", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("queue.backend: \"kafka\" is neither"), "{err}");
    assert!(
        err.contains("plutu.default.secret_key: is required"),
        "{err}"
    );
    assert!(err.contains("plutu.default.result_page"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    // The PaySys account's settings where PaySys's documents are silent.
    let paysys = dir.path().join("paysys.toml");
    std::fs::write(
        &paysys,
        "[paysys.default]\ngateway_url = \"https://paysys.example/gateway\"\nservice_id = \"1\"\n\
         secret_key = \"s\"\ntime_zone = \"Mars/Olympus\"\nrefund_amount = \"half\"\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", paysys.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("refund_amount"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        &paysys,
        "[paysys.default]\ngateway_url = \"https://paysys.example/gateway\"\nservice_id = \"1\"\n\
         secret_key = \"s\"\ntime_zone = \"Mars/Olympus\"\nrefund_amount = \"this_refund\"\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", paysys.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("paysys.default.time_zone: unknown time zone \"Mars/Olympus\""),
        "{}",
        text(&out.stderr)
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[queue]\nbakend = \"rabbitmq\"\n").unwrap();
    let out = paysettle(
        &["config", "check", "--config", typo.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown field `bakend`"),
        "{}",
        text(&out.stderr)
    );

    let out = paysettle(
        &["config", "check"],
        &[("PAYSETTLE__QUEUE__BACKEND", "bogus")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("queue.backend"),
        "environment overrides apply: {}",
        text(&out.stderr)
    );
}

#[test]
fn secrets_can_come_from_files_but_not_from_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("plutu.key");
    std::fs::write(&key, "sk_from_a_file\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[plutu.default]\nsecret_key_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("sk_from_a_file"));

    std::fs::write(
        &config,
        format!(
            "[plutu.default]\nsecret_key = \"x\"\nsecret_key_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "set either plutu.default.secret_key or plutu.default.secret_key_file, not both"
        ),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        &config,
        "[plutu.default]\nsecret_key_file = \"/nonexistent/key\"\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("plutu.default.secret_key_file: cannot read /nonexistent/key"),
        "{}",
        text(&out.stderr)
    );
    // Named once: not also "is required", which it was set.
    assert!(
        !text(&out.stderr).contains("is required"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).matches("plutu.default").count(), 1);
}

#[test]
fn an_unset_secret_is_required_once_and_a_credential_names_its_missing_half() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paysettle.toml");
    std::fs::write(
        &config,
        "[paysys.default]
gateway_url = \"http://127.0.0.1:9/gateway\"
service_id = \"2001\"
\
         [[paysys.default.notify_credentials]]
user = \"shop\"
\
         [plutu.default]
",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for line in [
        "paysys.default.secret_key: is required (or secret_key_file)",
        "paysys.default.notify_credentials[0].password: is required (or password_file)",
        "plutu.default.secret_key: is required (or secret_key_file)",
    ] {
        assert_eq!(err.matches(line).count(), 1, "{line} once in:\n{err}");
    }
    assert!(!err.contains("notify_credentials:"), "{err}");
}

#[test]
fn a_missing_file_or_a_wrong_flag_gives_one_clear_line() {
    let out = paysettle(&["serve", "--config", "/nonexistent/paysettle.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/paysettle.toml does not exist"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "{err}");

    let out = paysettle(&["serve", "--colour"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unexpected argument '--colour'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    for args in [
        &["serve", "--help"][..],
        &["receive", "--help"],
        &["work", "--help"],
        &["config", "check", "--help"],
    ] {
        let out = paysettle(args, &[]);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Example"), "{args:?} has no example:\n{help}");
    }
}

#[test]
fn the_product_binary_has_no_simulator() {
    // The simulator, with its code that forges callbacks, is its own binary
    // (`paysettle-sim`); `paysettle` neither offers nor links it.
    let out = paysettle(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("sim")),
        "{help}"
    );
    let out = paysettle(&["sim", "--help"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unrecognized subcommand 'sim'"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 17: a shop API beyond loopback needs a token an attacker cannot
/// guess; `shop_api.token = "a"` used to pass. On loopback any token does.
#[test]
fn a_shop_api_beyond_loopback_needs_a_long_token() {
    let check = |env: &[(&str, &str)]| {
        let mut all = vec![("PAYSETTLE__SHOP_API__LISTEN", "0.0.0.0:8081")];
        all.extend_from_slice(env);
        paysettle(&["config", "check"], &all)
    };
    let short = check(&[("PAYSETTLE__SHOP_API__TOKEN", "a")]);
    assert_eq!(short.status.code(), Some(2));
    let stderr = text(&short.stderr);
    assert!(
        stderr.contains("shop_api.token: ") && stderr.contains("at least 32 characters"),
        "{stderr}"
    );
    let long = check(&[(
        "PAYSETTLE__SHOP_API__TOKEN",
        "0123456789abcdef0123456789abcdef",
    )]);
    assert!(long.status.success(), "{}", text(&long.stderr));
    let loopback = paysettle(&["config", "check"], &[("PAYSETTLE__SHOP_API__TOKEN", "a")]);
    assert!(loopback.status.success(), "{}", text(&loopback.stderr));
}

/// Issue 17: the new connection limits are checked by key.
#[test]
fn connection_limits_that_cannot_work_are_named() {
    let out = paysettle(
        &["config", "check"],
        &[
            ("PAYSETTLE__RECEIVER__MAX_CONNECTIONS_PER_CLIENT", "0"),
            ("PAYSETTLE__RECEIVER__BODY_BUDGET_PER_CLIENT_BYTES", "1024"),
            ("PAYSETTLE__SHOP_API__IDLE_TIMEOUT_MS", "0"),
            ("PAYSETTLE__METRICS__LISTEN", "not-an-address"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for key in [
        "receiver.max_connections_per_client: must be at least 1",
        "receiver.body_budget_per_client_bytes: must be at least max_body_bytes",
        "shop_api.idle_timeout_ms: must be positive",
        "metrics.listen: ",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}

#[test]
fn the_broker_address_may_come_from_a_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("amqp_url");
    std::fs::write(&secret, "amqp://user:s3cret-pass@broker:5672/%2f\n").unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[queue]\nbackend = \"rabbitmq\"\namqp_url_file = \"{}\"\n{}",
            secret.display(),
            paysettle_testkit::config::handoff()
        ),
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("s3cret-pass"));
    // Both at once is still refused, by key.
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[(
            "PAYSETTLE__QUEUE__AMQP_URL",
            "amqp://guest:guest@localhost:5672/%2f",
        )],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not both"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_second_worker_on_the_same_ledger_is_refused_and_may_start_once_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let env = |command: &mut Command| {
        command
            .env_remove("PAYSETTLE_CONFIG")
            .env("PAYSETTLE__LEDGER__PATH", &ledger)
            .env(
                "PAYSETTLE__QUEUE__EMBEDDED_PATH",
                dir.path().join("queue.sqlite"),
            )
            .env("PAYSETTLE__SHOP_API__LISTEN", "127.0.0.1:0")
            .env("PAYSETTLE__RECEIVER__LISTEN", "127.0.0.1:0");
    };
    let start = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
        command
            .arg("work")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        env(&mut command);
        command.spawn().unwrap()
    };
    let mut first = start();
    // Wait until the first worker has claimed the ledger and started.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(first.stdout.take().unwrap()));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("worker starting"))),
        "the first worker did not start"
    );

    for role in ["work", "serve"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
        command.arg(role);
        env(&mut command);
        let out = command.output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{role}: {err}");
        assert!(
            err.contains("another paysettle worker is already running on the ledger")
                && err.contains("ledger.sqlite.worker.lock"),
            "{role}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{role}: one line: {err}");
    }
    // The receiver alone does not touch the ledger and is not refused.
    let mut receiver = Command::new(env!("CARGO_BIN_EXE_paysettle"));
    receiver
        .arg("receive")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    env(&mut receiver);
    let mut receiver = receiver.spawn().unwrap();
    // Listening comes after the point where a second worker is refused.
    let mut said =
        std::io::BufRead::lines(std::io::BufReader::new(receiver.stdout.take().unwrap()));
    assert!(
        said.any(|l| l.is_ok_and(|l| l.contains("receiver listening"))),
        "the receiver did not start beside the worker"
    );
    assert!(
        receiver.try_wait().unwrap().is_none(),
        "the receiver kept running beside the worker"
    );
    receiver.kill().unwrap();
    receiver.wait().unwrap();

    // However the first one ends, the kernel releases its claim.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = start();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(second.stdout.take().unwrap()));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("worker starting"))),
        "a worker could not start after the first was killed"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn environment_values_are_taken_as_written_and_typed_by_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        "[paysys.default]\ngateway_url = \"http://127.0.0.1:9/gateway\"\nsecret_key = \"x\"\n\
         [[paysys.default.notify_credentials]]\nuser = \"shop\"\npassword = \"pw\"\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[
            // String fields: exactly what was written.
            ("PAYSETTLE__PAYSYS__DEFAULT__SERVICE_ID", "0123"),
            ("PAYSETTLE__QUEUE__PREFIX", "007"),
            (
                "PAYSETTLE__LEDGER__PATH",
                "/tmp/a ledger with spaces.sqlite",
            ),
            ("PAYSETTLE__QUEUE__EMBEDDED_PATH", "True"),
            ("PAYSETTLE__QUEUE__SPOOL_PATH", "1e3"),
            // Numbers and booleans where the schema says so.
            ("PAYSETTLE__QUEUE__PREFETCH", "0123"),
            ("PAYSETTLE__WORKER__PAYSYS_CONFIRM", "False"),
            ("PAYSETTLE__POLLING__PAYSYS__RATE_PER_SEC", "1e3"),
        ],
    );
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "service_id = \"0123\"",
        "prefix = \"007\"",
        "path = \"/tmp/a ledger with spaces.sqlite\"",
        "embedded_path = \"True\"",
        "spool_path = \"1e3\"",
        "prefetch = 123",
        "paysys_confirm = false",
        "rate_per_sec = 1000.0",
    ] {
        assert!(printed.contains(line), "{line} not in:\n{printed}");
    }
}

#[test]
fn hand_off_keys_are_required_on_rabbitmq_and_generated_once_for_the_embedded_queue() {
    let dir = tempfile::tempdir().unwrap();
    // RabbitMQ: the receiver and the worker must share a configured key.
    let out = paysettle(
        &["config", "check"],
        &[("PAYSETTLE__QUEUE__BACKEND", "rabbitmq")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("handoff.keys: at least one key is required for the rabbitmq backend"),
        "{err}"
    );
    // A short secret, or sign_with naming no key, is named by its key.
    let config = dir.path().join("keys.toml");
    std::fs::write(
        &config,
        "[handoff]\nsign_with = \"b\"\n[[handoff.keys]]\nid = \"a\"\nsecret = \"short\"\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("handoff: key \"a\" is 5 bytes"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("short"),
        "{}",
        text(&out.stderr)
    );

    // Embedded, no key: `serve` generates one beside the queue file, private,
    // and keeps it across restarts.
    // In a data directory that does not exist yet, as on the first `make run`.
    let queue = dir.path().join("data").join("queue.sqlite");
    let key = dir.path().join("data").join("queue.sqlite.handoff-key");
    let mut first = None;
    for _ in 0..2 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paysettle"))
            .arg("serve")
            .env_remove("PAYSETTLE_CONFIG")
            .env("PAYSETTLE__LEDGER__PATH", dir.path().join("ledger.sqlite"))
            .env("PAYSETTLE__QUEUE__EMBEDDED_PATH", &queue)
            .env("PAYSETTLE__SHOP_API__LISTEN", "127.0.0.1:0")
            .env("PAYSETTLE__RECEIVER__LISTEN", "127.0.0.1:0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("worker starting"))),
            "serve did not start"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let secret = std::fs::read_to_string(&key).unwrap();
        assert_eq!(secret.trim().len(), 64, "32 random bytes in hex");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            first.get_or_insert(secret.clone()) == &secret,
            "the same key"
        );
    }
}

/// Issue 20: the ledger's backend and its PostgreSQL keys are checked by
/// key, and the URL (it carries a password) is never printed.
#[test]
fn the_ledger_backend_and_its_postgres_url_are_checked_by_key() {
    let out = paysettle(
        &["config", "check"],
        &[("PAYSETTLE__LEDGER__BACKEND", "mysql")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ledger.backend: \"mysql\" is neither \"sqlite\" nor \"postgres\""),
        "{err}"
    );

    let out = paysettle(
        &["config", "check"],
        &[
            ("PAYSETTLE__LEDGER__BACKEND", "postgres"),
            ("PAYSETTLE__LEDGER__POOL_SIZE", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ledger.url: is required (or url_file)"),
        "{err}"
    );
    assert!(
        err.contains("ledger.pool_size: 0 is not between 1 and 64"),
        "{err}"
    );

    let out = paysettle(
        &["config", "check"],
        &[
            ("PAYSETTLE__LEDGER__BACKEND", "postgres"),
            (
                "PAYSETTLE__LEDGER__URL",
                "postgres://u:s3cret-pw@db:notaport/x",
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ledger.url: ") && err.contains("not a PostgreSQL connection string"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("ledger_url");
    std::fs::write(
        &secret,
        "postgres://paysettle:s3cret-pw@db.internal:5432/ledger?sslmode=require\n",
    )
    .unwrap();
    let out = paysettle(
        &["config", "check"],
        &[
            ("PAYSETTLE__LEDGER__BACKEND", "postgres"),
            ("PAYSETTLE__LEDGER__URL_FILE", secret.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("s3cret-pw"),
        "{}",
        text(&out.stdout)
    );
    let out = paysettle(
        &["config", "check"],
        &[
            ("PAYSETTLE__LEDGER__BACKEND", "postgres"),
            (
                "PAYSETTLE__LEDGER__URL",
                "postgres://paysettle:s3cret-pw@db.internal/ledger",
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(!printed.contains("s3cret-pw"), "{printed}");
    assert!(printed.contains("[redacted]"), "{printed}");
}

/// Issue 20: an operator's command on a PostgreSQL ledger it cannot reach
/// fails with one line naming the database, never its password.
#[test]
fn a_postgres_ledger_that_cannot_be_reached_is_one_line_without_the_password() {
    // A port nothing listens on (the server's own, plus one).
    let out = paysettle(
        &["ledger", "check"],
        &[
            ("PAYSETTLE__LEDGER__BACKEND", "postgres"),
            (
                "PAYSETTLE__LEDGER__URL",
                "postgres://paysettle:s3cret-pw@127.0.0.1:1/ledger?connect_timeout=5",
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("opening the ledger postgres://paysettle@127.0.0.1:1/ledger"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
