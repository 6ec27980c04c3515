//! paysettle's two processes as children of the harness: `paysettle receive`
//! and `paysettle work`, the real binary with a configuration written for the
//! run, killed with SIGKILL and started again on the same ports and files.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;

/// Which process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Receiver,
    Worker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Receiver => "receiver",
            Role::Worker => "worker",
        }
    }
}

/// A port nothing listens on now, outside the kernel's ephemeral range
/// (32768 and up on Linux), so the port a killed process leaves is not handed
/// to someone's outgoing connection before the process is started again.
pub fn free_port(rng: &mut impl Rng) -> u16 {
    for _ in 0..500 {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// Where the run's ledger is.
#[derive(Debug, Clone)]
pub enum LedgerSpec {
    /// One SQLite file, one worker: the soak as it always ran.
    Sqlite(PathBuf),
    /// One PostgreSQL database every worker shares (the run's own).
    Postgres { url: String },
}

/// What the configuration needs to know.
pub struct Setup<'a> {
    pub dir: &'a Path,
    pub amqp_url: String,
    pub prefix: &'a str,
    pub sim_base: &'a str,
    pub receiver_port: u16,
    pub ledger: LedgerSpec,
    /// `polling.*.rate_per_sec` of Portmanat and PaySys: for the whole
    /// deployment when the workers share a PostgreSQL ledger.
    pub check_rate: f64,
    /// `worker.claim_lease_ms`, when set (replicas: short, so a killed
    /// worker's claims come back soon).
    pub claim_lease_ms: Option<u64>,
    /// Plutu has no status API, so its deadline decides how soon a payment
    /// whose callback never came is stale: short, so the run sees it happen.
    pub plutu_deadline: Duration,
    /// Portmanat and PaySys can be asked: a long deadline, so every payment
    /// is settled by its provider's answer.
    pub deadline: Duration,
}

/// Writes `<name>.toml`: one configuration per process, differing only in the
/// spool file (each process's queue keeps its own), the shop API's port and,
/// on PostgreSQL, the file beside the ledger (each worker's card feed).
pub fn write_config(setup: &Setup<'_>, name: &str, shop_port: u16) -> PathBuf {
    let polling = |provider: &str, rate: f64, deadline: Duration| {
        format!(
            "[polling.{provider}]\nconcurrency = 8\nrate_per_sec = {rate:?}\ntimeout_ms = 2000\nfirst_ms = 200\n\
             multiplier = 2.0\nmax_interval_ms = 2000\njitter = 0.2\ndeadline_ms = {}\n\n",
            deadline.as_millis()
        )
    };
    let dir = setup.dir;
    let ledger = match &setup.ledger {
        LedgerSpec::Sqlite(path) => format!("path = \"{}\"\n", path.display()),
        LedgerSpec::Postgres { url } => format!(
            "backend = \"postgres\"\nurl = \"{url}\"\npath = \"{}\"\n",
            dir.join(format!("{name}-ledger.sqlite")).display()
        ),
    };
    let lease = setup
        .claim_lease_ms
        .map(|ms| format!("claim_lease_ms = {ms}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[ledger]
{ledger}

[queue]
backend = "rabbitmq"
amqp_url = "{url}"
prefix = "{prefix}"
delivery_limit = 5
confirm_timeout_ms = 3000
connect_timeout_ms = 3000
spool_path = "{spool}"
finance_queue = true

[receiver]
listen = "127.0.0.1:{receiver_port}"
shutdown_grace_ms = 3000
# The simulator's browser returns all come from one address, as through a
# proxy: genuine traffic, not one client flooding.
hints_per_sec = 10000.0
hints_per_client_per_sec = 10000.0

[shop_api]
listen = "127.0.0.1:{shop_port}"

[metrics]
# Not scraped here; several soak processes share the host.
listen = ""

[worker]
batch_size = 64
batch_wait_ms = 10
relay_batch = 64
relay_interval_ms = 100
poll_idle_ms = 50
shutdown_grace_ms = 5000
{lease}
[log]
format = "text"
level = "info"

{portmanat}{paysys}{plutu}
{accounts}"#,
        accounts = paysettle_testkit::config::sim_accounts(setup.sim_base),
        url = setup.amqp_url,
        prefix = setup.prefix,
        spool = dir.join(format!("{name}-spool.sqlite")).display(),
        receiver_port = setup.receiver_port,
        portmanat = polling("portmanat", setup.check_rate, setup.deadline),
        paysys = polling("paysys", setup.check_rate, setup.deadline),
        // Plutu is never asked: its rate does not matter.
        plutu = polling("plutu", 200.0, setup.plutu_deadline),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One child process, started again after every kill.
pub struct Proc {
    pub role: Role,
    /// `receiver`, `worker`, or `worker-N` among replicas.
    pub name: String,
    config: PathBuf,
    pub log: PathBuf,
    port: u16,
    child: Option<Child>,
    pub kills: u32,
}

impl Proc {
    pub fn new(role: Role, name: &str, config: PathBuf, dir: &Path, port: u16) -> Proc {
        Proc {
            role,
            name: name.to_owned(),
            config,
            log: dir.join(format!("{name}.log")),
            port,
            child: None,
            kills: 0,
        }
    }

    /// Starts it; its output is appended to its log file across restarts.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let subcommand = match self.role {
            Role::Receiver => "receive",
            Role::Worker => "work",
        };
        let child = Command::new(env!("CARGO_BIN_EXE_paysettle"))
            .args([subcommand, "--config"])
            .arg(&self.config)
            .env_remove("PAYSETTLE_CONFIG")
            .env("PAYSETTLE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until it answers `/healthz` (the receiver's, or the shop API's
    /// for the worker, which binds it once the ledger and queue are open).
    pub async fn ready(&mut self, http: &reqwest::Client, within: Duration) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.assert_running();
            if let Ok(answer) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && answer.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {} did not answer {url} within {within:?}; its log ends:\n{}",
                self.name,
                self.log_tail(4000)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails the run if the process exited without being told to.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the {} exited on its own ({status}); its log ends:\n{}",
                self.name,
                self.log_tail(4000)
            );
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// SIGTERM and up to `grace` to exit; SIGKILL after. Returns why it was
    /// not a clean stop, if it was not.
    pub async fn stop(&mut self, grace: Duration) -> Option<String> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (!status.success()).then(|| {
                    format!(
                        "the {} stopped with {status} on SIGTERM; its log ends:\n{}",
                        self.name,
                        self.log_tail(2000)
                    )
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Some(format!(
                    "the {} did not stop within {grace:?} of SIGTERM",
                    self.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `bytes` of its log.
    pub fn log_tail(&self, bytes: u64) -> String {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        text
    }

    /// Lines of its log that say a thread panicked.
    pub fn panics(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("panicked at"))
            .map(|line| format!("{}: {line}", self.name))
            .collect()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
