//! The product's configuration: embedded, commented defaults, then one TOML
//! file, then `PAYSETTLE__SECTION__KEY` environment variables, then
//! validation that names every problem by its key. Secrets are
//! `SecretString`s, may come from files (`*_file`), and print as
//! `[redacted]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{Account, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The embedded defaults.
pub const DEFAULTS: &str = include_str!("defaults.toml");

fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(s) if !s.expose_secret().is_empty() => serializer.serialize_str("[redacted]"),
        _ => serializer.serialize_str(""),
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ledger: LedgerSection,
    pub queue: QueueSection,
    pub receiver: ReceiverSection,
    pub shop_api: ShopApiSection,
    pub metrics: MetricsSection,
    pub worker: WorkerSection,
    pub polling: BTreeMap<String, PollingSection>,
    #[serde(default)]
    pub portmanat: BTreeMap<String, PortmanatAccount>,
    #[serde(default)]
    pub paysys: BTreeMap<String, PaysysAccount>,
    #[serde(default)]
    pub plutu: BTreeMap<String, PlutuAccount>,
    #[serde(default)]
    pub handoff: HandoffSection,
    pub log: LogSection,
}

/// The keys that sign what the receiver hands the worker and what the worker
/// hands finance (see `paysettle_core::handoff`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffSection {
    /// Every key that verifies (several during a rotation).
    #[serde(default)]
    pub keys: Vec<HandoffKey>,
    /// The id of the key that signs ("" = the only key).
    #[serde(default)]
    pub sign_with: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffKey {
    pub id: String,
    #[serde(default, serialize_with = "redacted")]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    pub backend: String,
    pub path: PathBuf,
    pub synchronous: paysettle_store::Synchronous,
    #[serde(serialize_with = "redacted")]
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub pool_size: usize,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    pub backend: String,
    pub embedded_path: PathBuf,
    #[serde(serialize_with = "redacted")]
    pub amqp_url: Option<SecretString>,
    pub amqp_url_file: Option<PathBuf>,
    pub prefix: String,
    pub prefetch: u16,
    pub delivery_limit: u32,
    pub hints_max_length: u64,
    pub confirm_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub spool_path: PathBuf,
    pub lease_ms: u64,
    pub finance_queue: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSection {
    pub listen: String,
    pub max_body_bytes: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub idle_timeout_ms: u64,
    pub max_connection_age_ms: u64,
    pub http2_max_concurrent_streams: u32,
    pub body_budget_bytes: usize,
    pub body_budget_per_client_bytes: usize,
    pub hint_dedupe_window_ms: u64,
    pub hints_per_sec: f64,
    pub hints_per_client_per_sec: f64,
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopApiSection {
    pub listen: String,
    #[serde(serialize_with = "redacted")]
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    #[serde(serialize_with = "redacted")]
    pub card_token: Option<SecretString>,
    pub card_token_file: Option<PathBuf>,
    pub card_retention_hours: u64,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub idle_timeout_ms: u64,
    pub max_connection_age_ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics` is served ("" = not served).
    pub listen: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    pub batch_size: usize,
    pub batch_wait_ms: u64,
    pub paysys_confirm: bool,
    pub relay_batch: usize,
    pub relay_interval_ms: u64,
    pub poll_idle_ms: u64,
    pub shutdown_grace_ms: u64,
    pub claim_lease_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PollingSection {
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub timeout_ms: u64,
    pub first_ms: u64,
    pub multiplier: f64,
    pub max_interval_ms: u64,
    pub jitter: f64,
    pub deadline_ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortmanatAccount {
    /// Portmanat's base URL (`/check` below it).
    pub base_url: String,
    /// Where the customer's browser is sent after its return ("" = a plain 200).
    #[serde(default)]
    pub result_page: String,
    /// Whether `/check` answers from a service in test mode count as money.
    #[serde(default)]
    pub accept_test_payments: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(default, serialize_with = "redacted")]
    pub user: Option<SecretString>,
    #[serde(default)]
    pub user_file: Option<PathBuf>,
    #[serde(default, serialize_with = "redacted")]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaysysAccount {
    /// The JSON-RPC gateway URL.
    pub gateway_url: String,
    /// The first part of the `Auth` header.
    pub service_id: String,
    #[serde(default, serialize_with = "redacted")]
    pub secret_key: Option<SecretString>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Basic-auth pairs PaySys notifications may carry (several, to rotate).
    #[serde(default)]
    pub notify_credentials: Vec<Credential>,
    /// The IANA zone PaySys's `date` fields are read in (PaySys does not say).
    #[serde(default = "paysys_time_zone")]
    pub time_zone: String,
    /// What a refund notification's `amount` is: "total" (refunded so far,
    /// the default) or "this_refund" (PaySys does not say).
    #[serde(default)]
    pub refund_amount: paysettle_core::paysys::RefundAmount,
}

fn paysys_time_zone() -> String {
    paysettle_core::paysys::NOTIFICATION_ZONE.to_owned()
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlutuAccount {
    /// The merchant's secret key (`sk_…`) that signs callbacks.
    #[serde(default, serialize_with = "redacted")]
    pub secret_key: Option<SecretString>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Where the customer's browser is sent after the callback ("" = a plain 200).
    #[serde(default)]
    pub result_page: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: String,
    pub level: String,
}

/// One problem, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Loads defaults, then `file`, then the environment.
pub fn load(file: Option<&Path>) -> Result<Config, Vec<Problem>> {
    load_with_env(file, None)
}

/// [`load`] with the environment given as a map (`None`: the process's).
///
/// Environment values are taken as the strings written: `0123` stays
/// `0123` in a string field or a secret, and only a field the schema types
/// as a number or a boolean parses it as one (no guessing by looks).
fn load_with_env(
    file: Option<&Path>,
    env: Option<config::Map<String, String>>,
) -> Result<Config, Vec<Problem>> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(file) = file {
        if !file.exists() {
            return Err(vec![Problem {
                key: "--config".into(),
                message: format!("{} does not exist", file.display()),
            }]);
        }
        builder = builder.add_source(
            config::File::from(file)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    builder = builder.add_source(
        config::Environment::with_prefix("PAYSETTLE")
            .prefix_separator("__")
            .separator("__")
            .source(env),
    );
    let loaded = builder.build().map_err(|e| {
        vec![Problem {
            key: "config".into(),
            message: e.to_string(),
        }]
    })?;
    loaded.try_deserialize::<Config>().map_err(|e| {
        vec![Problem {
            key: "config".into(),
            message: e.to_string(),
        }]
    })
}

/// The broker's address when the configuration names none.
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Reads a secret from its inline key or its `*_file` twin (one, not both).
fn secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    let problem = |message: String| Problem {
        key: key.to_owned(),
        message,
    };
    let inline = inline.as_ref().filter(|s| !s.expose_secret().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.push(problem(format!("set either {key} or {key}_file, not both")));
            None
        }
        (Some(value), None) => Some(value.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Some(SecretString::from(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )),
            Ok(_) => {
                problems.push(Problem {
                    key: format!("{key}_file"),
                    message: format!("{} is empty", path.display()),
                });
                None
            }
            Err(e) => {
                problems.push(Problem {
                    key: format!("{key}_file"),
                    message: format!("cannot read {}: {e}", path.display()),
                });
                None
            }
        },
        (None, None) => None,
    }
}

/// A secret that must be there: "is required" only when neither key is set
/// (an unreadable or empty file has already been named by [`secret`]).
fn required_secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    let unset = inline.as_ref().is_none_or(|s| s.expose_secret().is_empty()) && file.is_none();
    if unset {
        let name = key.rsplit('.').next().unwrap_or(key);
        problems.push(Problem {
            key: key.to_owned(),
            message: format!("is required (or {name}_file)"),
        });
        return None;
    }
    secret(key, inline, file, problems)
}

/// Everything the roles need, checked.
pub struct Resolved {
    /// The SQLite ledger's file; with PostgreSQL, where the card feed and
    /// the reconcile journal are kept beside.
    pub ledger_path: PathBuf,
    /// Where the ledger is (the SQLite file or the PostgreSQL database).
    pub ledger_target: paysettle_store::LedgerTarget,
    pub ledger: paysettle_store::LedgerOptions,
    pub queue: paysettle_queue::QueueConfig,
    pub receiver_listen: SocketAddr,
    pub receiver: ReceiverLimits,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub shop_listen: SocketAddr,
    pub shop_api: paysettle_worker::shop::ShopApiSettings,
    pub worker: paysettle_worker::WorkerSettings,
    pub paysys_auth: BTreeMap<Account, Vec<(SecretString, SecretString)>>,
    pub plutu_keys: BTreeMap<Account, SecretString>,
    pub result_pages: BTreeMap<(Provider, Account), String>,
    pub log_json: bool,
    pub log_level: String,
    /// Where the hand-off keys come from.
    pub handoff: Handoff,
}

/// The hand-off keys: configured, or (embedded backend, none configured) a
/// key generated once for the embedded queue file and kept beside it.
#[derive(Debug, Clone)]
pub enum Handoff {
    Configured(paysettle_core::handoff::HandoffKeys),
    Generated(PathBuf),
}

/// The id of a generated key.
const GENERATED_KEY_ID: &str = "local";

impl Handoff {
    /// The keys, generating the embedded queue's key file (mode 0600) the
    /// first time it is needed. Two processes starting at once agree: the
    /// file is written aside and linked into place, and the loser reads the
    /// winner's key.
    pub fn keys(&self) -> anyhow::Result<paysettle_core::handoff::HandoffKeys> {
        use anyhow::Context as _;
        let path = match self {
            Handoff::Configured(keys) => return Ok(keys.clone()),
            Handoff::Generated(path) => path,
        };
        if !path.exists() {
            // The data directory may not exist yet (the first `make run`).
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let aside = path.with_extension(format!("tmp-{}", std::process::id()));
            write_private(&aside, secret.as_bytes())
                .with_context(|| format!("writing the hand-off key {}", aside.display()))?;
            let linked = std::fs::hard_link(&aside, path);
            let _ = std::fs::remove_file(&aside);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated the embedded queue's hand-off key")
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating the hand-off key {}", path.display()));
                }
            }
        }
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("reading the hand-off key {}", path.display()))?;
        paysettle_core::handoff::HandoffKeys::new(
            [(
                GENERATED_KEY_ID.to_owned(),
                SecretString::from(secret.trim().to_owned()),
            )],
            GENERATED_KEY_ID,
        )
        .with_context(|| format!("the hand-off key {}", path.display()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The receiver's limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverLimits {
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub idle_timeout: Duration,
    pub max_connection_age: Duration,
    pub http2_max_concurrent_streams: u32,
    pub body_budget_bytes: usize,
    pub body_budget_per_client: usize,
    pub hints: paysettle_receiver::HintLimits,
    pub shutdown_grace: Duration,
}

/// The shortest shop API token accepted on a listener beyond loopback.
pub const MIN_SHOP_TOKEN_CHARS: usize = 32;

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn address(key: &str, text: &str, problems: &mut Vec<Problem>) -> SocketAddr {
    text.parse().unwrap_or_else(|_| {
        problems.push(Problem {
            key: key.into(),
            message: format!("{text:?} is not an address like 127.0.0.1:8080"),
        });
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn url(key: String, text: &str, problems: &mut Vec<Problem>) {
    if !(text.starts_with("http://") || text.starts_with("https://")) || text.len() < 10 {
        problems.push(Problem {
            key,
            message: format!("{text:?} is not an http(s) URL"),
        });
    }
}

impl Config {
    /// Validates and resolves, reporting every problem at once.
    pub fn resolve(&self) -> Result<Resolved, Vec<Problem>> {
        let mut problems = Vec::new();
        let p = &mut problems;
        let push = |p: &mut Vec<Problem>, key: &str, message: String| {
            p.push(Problem {
                key: key.into(),
                message,
            })
        };

        // Ledger.
        let ledger_target = self.ledger_target(p);

        // Queue.
        let backend = match self.queue.backend.as_str() {
            "embedded" => paysettle_queue::BackendKind::Embedded,
            "rabbitmq" => paysettle_queue::BackendKind::RabbitMq,
            other => {
                push(
                    p,
                    "queue.backend",
                    format!("{other:?} is neither \"embedded\" nor \"rabbitmq\""),
                );
                paysettle_queue::BackendKind::Embedded
            }
        };
        // Neither key set: the local broker's default address, which is not
        // in defaults.toml so that `amqp_url_file` alone is not "both".
        let amqp_url = secret(
            "queue.amqp_url",
            &self.queue.amqp_url,
            &self.queue.amqp_url_file,
            p,
        )
        .or_else(|| {
            (self.queue.amqp_url.is_none() && self.queue.amqp_url_file.is_none())
                .then(|| SecretString::from(DEFAULT_AMQP_URL))
        });
        if backend == paysettle_queue::BackendKind::RabbitMq {
            match &amqp_url {
                Some(u)
                    if u.expose_secret().starts_with("amqp://")
                        || u.expose_secret().starts_with("amqps://") => {}
                _ => push(
                    p,
                    "queue.amqp_url",
                    "must be an amqp:// or amqps:// URL for the rabbitmq backend".into(),
                ),
            }
        }
        let queue = paysettle_queue::QueueConfig {
            backend,
            amqp_url: amqp_url
                .map(|u| u.expose_secret().to_owned())
                .unwrap_or_default(),
            prefix: self.queue.prefix.clone(),
            prefetch: self.queue.prefetch,
            delivery_limit: self.queue.delivery_limit,
            hints_max_length: self.queue.hints_max_length,
            confirm_timeout: ms(self.queue.confirm_timeout_ms),
            connect_timeout: ms(self.queue.connect_timeout_ms),
            spool_path: (!self.queue.spool_path.as_os_str().is_empty())
                .then(|| self.queue.spool_path.clone()),
            embedded_path: self.queue.embedded_path.clone(),
            lease_duration: ms(self.queue.lease_ms),
            finance_queue: self.queue.finance_queue,
            // On one box the shop API's feeds serve events and card
            // registrations; queues nobody reads would only grow.
            embedded_event_queues: false,
            ..paysettle_queue::QueueConfig::default()
        };
        if let Err(e) = queue.validate() {
            push(p, "queue", e.to_string());
        }

        // Listeners.
        let receiver_listen = address("receiver.listen", &self.receiver.listen, p);
        let shop_listen = address("shop_api.listen", &self.shop_api.listen, p);
        if self.receiver.max_body_bytes < 1024 {
            push(p, "receiver.max_body_bytes", "must be at least 1024".into());
        }
        let r = &self.receiver;
        for (key, value) in [
            ("receiver.max_connections", r.max_connections),
            (
                "receiver.max_connections_per_client",
                r.max_connections_per_client,
            ),
            (
                "receiver.http2_max_concurrent_streams",
                r.http2_max_concurrent_streams as usize,
            ),
            ("shop_api.max_connections", self.shop_api.max_connections),
            (
                "shop_api.max_connections_per_client",
                self.shop_api.max_connections_per_client,
            ),
        ] {
            if value == 0 {
                push(p, key, "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("receiver.idle_timeout_ms", r.idle_timeout_ms),
            ("receiver.max_connection_age_ms", r.max_connection_age_ms),
            ("shop_api.idle_timeout_ms", self.shop_api.idle_timeout_ms),
            (
                "shop_api.max_connection_age_ms",
                self.shop_api.max_connection_age_ms,
            ),
        ] {
            if value == 0 {
                push(p, key, "must be positive".into());
            }
        }
        if r.body_budget_per_client_bytes < r.max_body_bytes {
            push(
                p,
                "receiver.body_budget_per_client_bytes",
                "must be at least max_body_bytes (one body must fit)".into(),
            );
        }
        if r.body_budget_bytes < r.body_budget_per_client_bytes {
            push(
                p,
                "receiver.body_budget_bytes",
                "must be at least body_budget_per_client_bytes".into(),
            );
        }
        for (key, value) in [
            ("receiver.hints_per_sec", r.hints_per_sec),
            (
                "receiver.hints_per_client_per_sec",
                r.hints_per_client_per_sec,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                push(p, key, "must be more than 0".into());
            }
        }
        if r.hint_dedupe_window_ms == 0 {
            push(
                p,
                "receiver.hint_dedupe_window_ms",
                "must be positive".into(),
            );
        }
        let metrics_listen = (!self.metrics.listen.is_empty())
            .then(|| address("metrics.listen", &self.metrics.listen, p));
        let token = secret(
            "shop_api.token",
            &self.shop_api.token,
            &self.shop_api.token_file,
            p,
        );
        if !shop_listen.ip().is_loopback() {
            match &token {
                None => push(
                    p,
                    "shop_api.token",
                    "the shop API listens beyond loopback; set a token".into(),
                ),
                Some(t) if t.expose_secret().chars().count() < MIN_SHOP_TOKEN_CHARS => push(
                    p,
                    "shop_api.token",
                    format!(
                        "the shop API listens beyond loopback; its token must have at least {MIN_SHOP_TOKEN_CHARS} characters"
                    ),
                ),
                Some(_) => {}
            }
        }
        let card_token = secret(
            "shop_api.card_token",
            &self.shop_api.card_token,
            &self.shop_api.card_token_file,
            p,
        );
        if let (Some(card), Some(shop)) = (&card_token, &token)
            && card.expose_secret() == shop.expose_secret()
        {
            push(
                p,
                "shop_api.card_token",
                "must differ from shop_api.token: the card feed carries card tokens".into(),
            );
        }
        if self.shop_api.card_retention_hours == 0 {
            push(
                p,
                "shop_api.card_retention_hours",
                "must be at least 1".into(),
            );
        }

        // Polling.
        let mut worker = paysettle_worker::WorkerSettings {
            batch_size: self.worker.batch_size,
            batch_wait: ms(self.worker.batch_wait_ms),
            paysys_confirm: self.worker.paysys_confirm,
            relay_batch: self.worker.relay_batch,
            relay_interval: ms(self.worker.relay_interval_ms),
            poll_idle: ms(self.worker.poll_idle_ms),
            shutdown_grace: ms(self.worker.shutdown_grace_ms),
            claim_lease: ms(self.worker.claim_lease_ms),
            card_retention: Duration::from_secs(
                self.shop_api.card_retention_hours.saturating_mul(3600),
            ),
            ..paysettle_worker::WorkerSettings::default()
        };
        if worker.batch_size == 0 || worker.batch_size > 10_000 {
            push(p, "worker.batch_size", "must be 1 to 10000".into());
        }
        if self.worker.claim_lease_ms < 1000 {
            push(
                p,
                "worker.claim_lease_ms",
                "must be at least 1000: a claim outlives the check or the publish it covers".into(),
            );
        }
        for (name, section) in &self.polling {
            let key = format!("polling.{name}");
            let Ok(provider) = name.parse::<Provider>() else {
                push(
                    p,
                    &key,
                    "is not a provider (portmanat, paysys, plutu)".into(),
                );
                continue;
            };
            let policy = CheckPolicy {
                first: ms(section.first_ms),
                multiplier: section.multiplier,
                max_interval: ms(section.max_interval_ms),
                jitter: section.jitter,
                deadline: ms(section.deadline_ms),
            };
            if let Err(e) = policy.validate() {
                push(p, &key, e.to_string());
            }
            if section.concurrency == 0 {
                push(
                    p,
                    &format!("{key}.concurrency"),
                    "must be at least 1".into(),
                );
            }
            if !(section.rate_per_sec > 0.0 && section.rate_per_sec.is_finite()) {
                push(
                    p,
                    &format!("{key}.rate_per_sec"),
                    "must be more than 0".into(),
                );
            }
            // A check is sent only while its claim has the request's
            // timeout and a tenth of the claim left: a shorter claim would
            // defer every check. (Plutu has no status API to ask.)
            if provider != Provider::Plutu
                && section.timeout_ms.saturating_mul(2) > self.worker.claim_lease_ms
            {
                push(
                    p,
                    &format!("{key}.timeout_ms"),
                    format!(
                        "must be at most half of worker.claim_lease_ms ({} ms): a check must fit in the claim that keeps other workers off its payment",
                        self.worker.claim_lease_ms
                    ),
                );
            }
            worker.limits.insert(
                provider,
                paysettle_worker::ProviderLimits {
                    concurrency: section.concurrency,
                    rate_per_sec: section.rate_per_sec,
                    timeout: ms(section.timeout_ms),
                    policy,
                },
            );
        }

        // Accounts.
        let account = |p: &mut Vec<Problem>, provider: &str, name: &str| -> Option<Account> {
            Account::parse(name)
                .map_err(|e| {
                    p.push(Problem {
                        key: format!("{provider}.{name}"),
                        message: e.to_string(),
                    })
                })
                .ok()
        };
        let mut result_pages = BTreeMap::new();
        let mut page = |p: &mut Vec<Problem>, provider: Provider, account: &Account, text: &str| {
            if !text.is_empty() {
                url(format!("{provider}.{account}.result_page"), text, p);
                result_pages.insert((provider, account.clone()), text.to_owned());
            }
        };
        for (name, section) in &self.portmanat {
            let Some(acct) = account(p, "portmanat", name) else {
                continue;
            };
            url(format!("portmanat.{name}.base_url"), &section.base_url, p);
            page(p, Provider::Portmanat, &acct, &section.result_page);
            worker.portmanat.insert(
                acct,
                paysettle_worker::PortmanatAccess {
                    base_url: section.base_url.clone(),
                    accept_test_payments: section.accept_test_payments,
                },
            );
        }
        let mut paysys_auth = BTreeMap::new();
        for (name, section) in &self.paysys {
            let Some(acct) = account(p, "paysys", name) else {
                continue;
            };
            let key = format!("paysys.{name}");
            url(format!("{key}.gateway_url"), &section.gateway_url, p);
            if section.service_id.is_empty() {
                push(p, &format!("{key}.service_id"), "is required".into());
            }
            let secret_key = required_secret(
                &format!("{key}.secret_key"),
                &section.secret_key,
                &section.secret_key_file,
                p,
            );
            let mut pairs = Vec::new();
            for (i, credential) in section.notify_credentials.iter().enumerate() {
                let at = format!("{key}.notify_credentials[{i}]");
                let user = required_secret(
                    &format!("{at}.user"),
                    &credential.user,
                    &credential.user_file,
                    p,
                );
                let password = required_secret(
                    &format!("{at}.password"),
                    &credential.password,
                    &credential.password_file,
                    p,
                );
                if let (Some(user), Some(password)) = (user, password) {
                    pairs.push((user, password));
                }
            }
            // Checked only when every credential was read: one already
            // reported as missing or unreadable is not reported twice.
            if pairs.len() == section.notify_credentials.len()
                && let Err(e) = paysettle_core::paysys::NotificationAuth::new(&pairs)
            {
                push(p, &format!("{key}.notify_credentials"), e.to_string());
            }
            let rules = paysettle_core::paysys::Rules {
                time_zone: section.time_zone.clone(),
                refund_amount: section.refund_amount,
            };
            if let Err(e) = rules.validate() {
                push(p, &format!("{key}.time_zone"), e.to_string());
            }
            paysys_auth.insert(acct.clone(), pairs);
            worker.paysys.insert(
                acct,
                paysettle_worker::PaysysAccess {
                    gateway_url: section.gateway_url.clone(),
                    service_id: section.service_id.clone(),
                    secret_key: secret_key.unwrap_or_else(|| SecretString::from("")),
                    rules,
                },
            );
        }
        let mut plutu_keys = BTreeMap::new();
        for (name, section) in &self.plutu {
            let Some(acct) = account(p, "plutu", name) else {
                continue;
            };
            let key = format!("plutu.{name}.secret_key");
            if let Some(k) = required_secret(&key, &section.secret_key, &section.secret_key_file, p)
            {
                plutu_keys.insert(acct.clone(), k);
            }
            page(p, Provider::Plutu, &acct, &section.result_page);
            worker.plutu.push(acct);
        }

        // Hand-off keys.
        let handoff = self.handoff(backend, p);

        // Logs.
        let log_json = match self.log.format.as_str() {
            "json" => true,
            "text" => false,
            other => {
                push(
                    p,
                    "log.format",
                    format!("{other:?} is neither \"text\" nor \"json\""),
                );
                false
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            push(
                p,
                "log.level",
                format!("{:?} is not a tracing filter", self.log.level),
            );
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let ledger = paysettle_store::LedgerOptions {
            synchronous: self.ledger.synchronous,
            policies: worker.policies(),
            rules: worker.ledger_rules(),
            // One clock for the ledger and the worker (the wall clock).
            clock: worker.clock.clone(),
            ..paysettle_store::LedgerOptions::default()
        };
        let limits = ReceiverLimits {
            max_body_bytes: self.receiver.max_body_bytes,
            header_timeout: ms(self.receiver.header_timeout_ms),
            body_timeout: ms(self.receiver.body_timeout_ms),
            max_connections: self.receiver.max_connections,
            max_connections_per_client: self.receiver.max_connections_per_client,
            idle_timeout: ms(self.receiver.idle_timeout_ms),
            max_connection_age: ms(self.receiver.max_connection_age_ms),
            http2_max_concurrent_streams: self.receiver.http2_max_concurrent_streams,
            body_budget_bytes: self.receiver.body_budget_bytes,
            body_budget_per_client: self.receiver.body_budget_per_client_bytes,
            hints: paysettle_receiver::HintLimits {
                dedupe_window: ms(self.receiver.hint_dedupe_window_ms),
                per_sec: self.receiver.hints_per_sec,
                per_client_per_sec: self.receiver.hints_per_client_per_sec,
            },
            shutdown_grace: ms(self.receiver.shutdown_grace_ms),
        };
        Ok(Resolved {
            ledger_path: self.ledger.path.clone(),
            ledger_target,
            ledger,
            queue,
            receiver_listen,
            receiver: limits,
            metrics_listen,
            shop_listen,
            shop_api: paysettle_worker::shop::ShopApiSettings {
                token,
                max_connections: self.shop_api.max_connections,
                max_connections_per_client: self.shop_api.max_connections_per_client,
                idle_timeout: ms(self.shop_api.idle_timeout_ms),
                max_connection_age: ms(self.shop_api.max_connection_age_ms),
                card_token,
                ..Default::default()
            },
            worker,
            paysys_auth,
            plutu_keys,
            result_pages,
            log_json,
            log_level: self.log.level.clone(),
            handoff,
        })
    }

    /// The configured hand-off keys; with none, a generated key beside the
    /// embedded queue file, or (RabbitMQ, where the receiver and the worker
    /// may run on different hosts and must share a key) a problem.
    /// Where the ledger is: `ledger.backend` with its keys, checked.
    fn ledger_target(&self, p: &mut Vec<Problem>) -> paysettle_store::LedgerTarget {
        let l = &self.ledger;
        let sqlite = paysettle_store::LedgerTarget::Sqlite(l.path.clone());
        match l.backend.as_str() {
            "sqlite" => sqlite,
            "postgres" => {
                if l.pool_size == 0 || l.pool_size > 64 {
                    p.push(Problem {
                        key: "ledger.pool_size".into(),
                        message: format!("{} is not between 1 and 64", l.pool_size),
                    });
                }
                let Some(url) = required_secret("ledger.url", &l.url, &l.url_file, p) else {
                    return sqlite;
                };
                if let Err(e) = paysettle_store::PgOptions::check_url(url.expose_secret()) {
                    p.push(Problem {
                        key: "ledger.url".into(),
                        message: e.to_string(),
                    });
                }
                paysettle_store::LedgerTarget::Postgres(paysettle_store::PgOptions {
                    url: url.expose_secret().to_owned(),
                    pool_size: l.pool_size.clamp(1, 64),
                    ..paysettle_store::PgOptions::default()
                })
            }
            other => {
                p.push(Problem {
                    key: "ledger.backend".into(),
                    message: format!("{other:?} is neither \"sqlite\" nor \"postgres\""),
                });
                sqlite
            }
        }
    }

    fn handoff(&self, backend: paysettle_queue::BackendKind, p: &mut Vec<Problem>) -> Handoff {
        let section = &self.handoff;
        let fallback = || {
            let mut name = self.queue.embedded_path.clone().into_os_string();
            name.push(".handoff-key");
            Handoff::Generated(PathBuf::from(name))
        };
        if section.keys.is_empty() {
            if backend == paysettle_queue::BackendKind::RabbitMq {
                p.push(Problem {
                    key: "handoff.keys".into(),
                    message: "at least one key is required for the rabbitmq backend \
                              (the receiver and the worker must share it; see the README)"
                        .into(),
                });
            } else if !section.sign_with.is_empty() {
                p.push(Problem {
                    key: "handoff.sign_with".into(),
                    message: "names a key, but no key is configured".into(),
                });
            }
            return fallback();
        }
        let mut keys = Vec::new();
        let before = p.len();
        for (i, key) in section.keys.iter().enumerate() {
            let at = format!("handoff.keys[{i}]");
            if let Some(secret) =
                required_secret(&format!("{at}.secret"), &key.secret, &key.secret_file, p)
            {
                keys.push((key.id.clone(), secret));
            }
        }
        let sign_with = if section.sign_with.is_empty() && section.keys.len() == 1 {
            section.keys[0].id.clone()
        } else if section.sign_with.is_empty() {
            p.push(Problem {
                key: "handoff.sign_with".into(),
                message: "is required when several keys are configured".into(),
            });
            return fallback();
        } else {
            section.sign_with.clone()
        };
        if p.len() > before {
            return fallback();
        }
        match paysettle_core::handoff::HandoffKeys::new(keys, &sign_with) {
            Ok(keys) => Handoff::Configured(keys),
            Err(e) => {
                p.push(Problem {
                    key: "handoff".into(),
                    message: e.to_string(),
                });
                fallback()
            }
        }
    }

    /// The effective settings as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot show the settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn environment_values_are_the_strings_written() {
        let loaded = load_with_env(
            None,
            env(&[
                (
                    "PAYSETTLE__PAYSYS__DEFAULT__GATEWAY_URL",
                    "http://gw.example/x",
                ),
                ("PAYSETTLE__PAYSYS__DEFAULT__SERVICE_ID", "0123"),
                ("PAYSETTLE__PAYSYS__DEFAULT__SECRET_KEY", "007"),
                ("PAYSETTLE__PLUTU__DEFAULT__SECRET_KEY", "1e3"),
                ("PAYSETTLE__SHOP_API__TOKEN", "True"),
                ("PAYSETTLE__QUEUE__AMQP_URL", " amqp://a b "),
                ("PAYSETTLE__QUEUE__PREFIX", "pay settle 01"),
                ("PAYSETTLE__QUEUE__PREFETCH", "007"),
                ("PAYSETTLE__WORKER__PAYSYS_CONFIRM", "True"),
                ("PAYSETTLE__POLLING__PAYSYS__RATE_PER_SEC", "1e3"),
            ]),
        )
        .unwrap();
        let paysys = &loaded.paysys["default"];
        assert_eq!(paysys.service_id, "0123");
        let expose = |s: &Option<SecretString>| s.as_ref().unwrap().expose_secret().to_owned();
        assert_eq!(expose(&paysys.secret_key), "007");
        assert_eq!(expose(&loaded.plutu["default"].secret_key), "1e3");
        assert_eq!(expose(&loaded.shop_api.token), "True");
        assert_eq!(expose(&loaded.queue.amqp_url), " amqp://a b ");
        assert_eq!(loaded.queue.prefix, "pay settle 01");
        assert_eq!(loaded.queue.prefetch, 7);
        assert!(loaded.worker.paysys_confirm);
        assert!((loaded.polling["paysys"].rate_per_sec - 1000.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_check_timeout_longer_than_half_a_claim_is_refused_by_key() {
        let loaded = load_with_env(
            None,
            env(&[
                ("PAYSETTLE__WORKER__CLAIM_LEASE_MS", "4000"),
                ("PAYSETTLE__POLLING__PAYSYS__TIMEOUT_MS", "2001"),
                ("PAYSETTLE__POLLING__PORTMANAT__TIMEOUT_MS", "2000"),
            ]),
        )
        .unwrap();
        let Err(problems) = loaded.resolve() else {
            panic!("a check longer than half its claim must be refused");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "polling.paysys.timeout_ms");
        assert!(
            problems[0]
                .message
                .contains("half of worker.claim_lease_ms (4000 ms)"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_number_field_given_words_is_an_error_by_key() {
        let err = load_with_env(None, env(&[("PAYSETTLE__QUEUE__PREFETCH", "many")])).unwrap_err();
        assert!(err[0].message.contains("many"), "{err:?}");
    }
}
