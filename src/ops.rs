//! The operator's subcommands: `reconcile`, `payments`, `events`, `dlq` and
//! `ledger`. Each parses its flags, opens what it needs from the
//! configuration and prints for a person (a table) or for a script (CSV,
//! JSON). Exit codes: 0 all well, 1 something found that needs a person,
//! 2 the command could not do its job.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use paysettle_core::decide::Resolution;
use paysettle_core::{Account, PaymentStatus, Provider, Reference};
use paysettle_ops::reconcile::{Fix, ReportSpec};
use paysettle_ops::report::{AmountFormat, Mapping};
use paysettle_ops::{Batch, Class, Journal, Progress, Reconciler, Summary, render};
use paysettle_queue::{DEAD_LETTER_REASON_HEADER, Message, Queue, QueueKind};
use paysettle_store::{EventFilter, Ledger, PaymentFilter, PaymentId, PaymentKey, StoreError};
use tokio_util::sync::CancellationToken;

use crate::{ConfigArg, resolve};

/// What a finished command asks the process to exit with.
pub type Exit = u8;

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// One line per row, a header first.
    Csv,
    /// One JSON document.
    Json,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this provider's payments (portmanat, paysys, plutu).
    #[arg(long, value_parser = parse_provider)]
    provider: Option<Provider>,
    /// Only this account's payments.
    #[arg(long, value_parser = parse_account)]
    account: Option<Account>,
    /// Only payments in these statuses (repeat or comma-separate); default:
    /// every payment not final, plus final ones created in the window.
    #[arg(long = "status", value_delimiter = ',', value_parser = parse_status)]
    statuses: Vec<PaymentStatus>,
    /// The window's start, on creation time: RFC 3339, a date, or an age such as 24h or 7d.
    #[arg(long, default_value = "24h", value_parser = parse_when)]
    since: Timestamp,
    /// The window's end (default: now).
    #[arg(long, value_parser = parse_when)]
    until: Option<Timestamp>,
    /// A payment not final after this long is stuck_pending.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    stuck_after: Duration,
    /// An unpublished event younger than this is still in flight.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    publish_grace: Duration,
    /// Status checks in flight at once (the configured per-provider limits still apply).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How many times a failed status check is retried, with backoff.
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Compare with this exported report (CSV, JSON or JSON lines) instead of asking the status API.
    #[arg(long, value_name = "FILE")]
    against: Option<PathBuf>,
    /// The report's column mapping and status words, as a TOML file (see --help).
    #[arg(long, value_name = "FILE", requires = "against")]
    mapping: Option<PathBuf>,
    /// A column of the report: FIELD=COLUMN, FIELD one of reference,
    /// provider_transaction_id, status, amount, currency.
    #[arg(long = "column", value_name = "FIELD=COLUMN", requires = "against")]
    columns: Vec<String>,
    /// What a status word of the report means: WORD=STATUS (succeeded, failed, canceled, refunded, pending).
    #[arg(long = "status-word", value_name = "WORD=STATUS", requires = "against")]
    status_words: Vec<String>,
    /// How the report writes amounts: decimal (19.90) or minor (1990).
    #[arg(long, value_name = "FORMAT", requires = "against", value_parser = ["decimal", "minor"])]
    amount_format: Option<String>,
    /// The currency of a report without a currency column.
    #[arg(long, value_name = "CODE", requires = "against")]
    currency: Option<String>,
    /// How to write the report.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// List every payment in the table, not only the discrepancies.
    #[arg(long)]
    all: bool,
    /// Write the corrections to the ledger (source reconcile) and publish their events.
    #[arg(long)]
    apply: bool,
    /// Do not ask before applying.
    #[arg(long, short)]
    yes: bool,
    /// Continue the interrupted batch from its journal: no payment is asked about twice.
    #[arg(long, conflicts_with_all = ["provider", "account", "statuses", "against", "fresh"])]
    resume: bool,
    /// Start a new batch even though an interrupted one's journal is there.
    #[arg(long)]
    fresh: bool,
    /// The journal that makes the batch resumable [default: beside the ledger].
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
}

pub const RECONCILE_HELP: &str = "\
Classes, most serious first: unknown_locally, missing_at_provider, currency_mismatch,
amount_mismatch, status_mismatch, check_failed, stuck_pending, unpublished_event, ok.

Exit status: 0 every payment ok; 1 discrepancies found; 2 the batch could not run
or did not finish (interrupted, or a provider could not be asked: --resume goes on).

A mapping file for --against (every key optional):
  reference = \"invoice_no\"
  provider_transaction_id = \"transaction_id\"
  status = \"state\"
  amount = \"amount\"
  currency = \"currency\"          # or: default_currency = \"LYD\"
  amount_format = \"decimal\"      # or \"minor\"
  [statuses]
  \"approved\" = \"succeeded\"

Examples:
  paysettle reconcile --config /etc/paysettle/paysettle.toml
  paysettle reconcile --provider paysys --since 2026-11-01 --until 2026-11-08 --format json -o week.json
  paysettle reconcile --against plutu-export.csv --provider plutu --column reference=invoice_no
  paysettle reconcile --apply                     # shows the findings, asks, then corrects
  paysettle reconcile --resume                    # after Ctrl-C";

#[derive(Debug, Subcommand)]
pub enum PaymentsCommand {
    /// Find payments by provider, account, status and time.
    #[command(
        after_help = "Examples:\n  paysettle payments list --status pending,stale\n  paysettle payments list --provider plutu --since 7d --format csv"
    )]
    List(ListArgs),
    /// Show one payment with its history and events.
    #[command(
        after_help = "Examples:\n  paysettle payments show --provider portmanat ORDER-1001\n  paysettle payments show --id 42 --format json"
    )]
    Show(ShowArgs),
    /// Resolve a flagged payment (a mismatch or a conflict): accept what the
    /// provider said, or keep the ledger. Kept in the history and announced
    /// to finance (`payment.resolved`, and the status event of any move).
    #[command(
        after_help = "Examples:\n  paysettle payments resolve plutu INV-1001 --accept-provider --reason \"captured per the bank statement\"\n  paysettle payments resolve portmanat ORDER-7 --keep-ledger --reason \"test-mode answer, not real money\""
    )]
    Resolve(ResolveArgs),
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The provider: portmanat, paysys or plutu.
    #[arg(value_parser = parse_provider)]
    provider: Provider,
    /// The shop's reference.
    reference: String,
    #[arg(long, value_parser = parse_account)]
    account: Option<Account>,
    /// The provider is right: its status, amount and transaction id become
    /// the ledger's.
    #[arg(
        long,
        conflicts_with = "keep_ledger",
        required_unless_present = "keep_ledger"
    )]
    accept_provider: bool,
    /// The ledger is right: the provider's claim is set aside.
    #[arg(long)]
    keep_ledger: bool,
    /// Why, for the history and for finance.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long, value_parser = parse_provider)]
    provider: Option<Provider>,
    #[arg(long, value_parser = parse_account)]
    account: Option<Account>,
    /// Any of these statuses (repeat or comma-separate).
    #[arg(long = "status", value_delimiter = ',', value_parser = parse_status)]
    statuses: Vec<PaymentStatus>,
    /// Only flagged payments (a mismatch or a conflict).
    #[arg(long)]
    mismatched: bool,
    /// Updated at or after: RFC 3339, a date, or an age such as 24h.
    #[arg(long, value_parser = parse_when)]
    since: Option<Timestamp>,
    /// Updated before.
    #[arg(long, value_parser = parse_when)]
    until: Option<Timestamp>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The shop's reference (with --provider), or nothing with --id.
    #[arg(required_unless_present = "id")]
    reference: Option<String>,
    #[arg(long, value_parser = parse_provider, required_unless_present = "id")]
    provider: Option<Provider>,
    #[arg(long, value_parser = parse_account)]
    account: Option<Account>,
    /// The ledger's id of the payment.
    #[arg(long, conflicts_with = "reference")]
    id: Option<i64>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish recorded settled events again, with their original event_id, for a finance consumer that lost its queue.
    #[command(
        after_help = "Examples:\n  paysettle events replay --since 2026-11-20 --until 2026-11-21\n  paysettle events replay --provider paysys --reference 931111111 --dry-run"
    )]
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Events created at or after: RFC 3339, a date, or an age such as 24h.
    #[arg(long, value_parser = parse_when, required_unless_present_any = ["id", "reference"])]
    since: Option<Timestamp>,
    /// Events created before.
    #[arg(long, value_parser = parse_when)]
    until: Option<Timestamp>,
    /// Only this payment's events, by the ledger's id.
    #[arg(long, conflicts_with = "reference")]
    id: Option<i64>,
    /// Only this payment's events, by the shop's reference (with --provider).
    #[arg(long, requires = "provider")]
    reference: Option<String>,
    #[arg(long, value_parser = parse_provider)]
    provider: Option<Provider>,
    #[arg(long, value_parser = parse_account)]
    account: Option<Account>,
    /// List what would be published, publish nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered callbacks (they stay where they are).
    #[command(
        after_help = "Examples:\n  paysettle dlq list\n  paysettle dlq list --limit 500 --format json"
    )]
    List(DlqListArgs),
    /// Send dead-lettered callbacks back to the worker's queue.
    #[command(
        after_help = "Examples:\n  paysettle dlq replay --id 0191f0c2-7c1e-7d2a-9a51-3f1c2b4d5e6f\n  paysettle dlq replay --all --yes"
    )]
    Replay(DlqReplayArgs),
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u16,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The message ids to replay (repeat); see `dlq list`.
    #[arg(long = "id", required_unless_present = "all")]
    ids: Vec<String>,
    /// Every dead-lettered callback.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Do not ask first.
    #[arg(long, short)]
    yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check the ledger's integrity: every history row has its payment state, outbox and history agree.
    #[command(
        after_help = "Exit status: 0 whole, 1 problems found (each printed), 2 could not check.\n\nExample:\n  paysettle ledger check --config /etc/paysettle/paysettle.toml"
    )]
    Check(ConfigArg),
    /// Copy the SQLite ledger (ledger.path) into the empty PostgreSQL ledger the configuration names (ledger.backend = "postgres", ledger.url or ledger.url_file), then check both.
    #[command(
        after_help = "Stop the worker first (the copy takes its claim on the SQLite ledger). The target must be empty: a PostgreSQL ledger that holds any payment, history, event or check is refused and nothing is written. The copy is one transaction: all of it or nothing. Afterwards both ledgers pass `ledger check` and hold the same rows; start the workers with ledger.backend = \"postgres\".\n\nExit status: 0 copied and verified, 1 refused (target not empty, a worker running, the source has problems, the copy differs), 2 could not run.\n\nExample:\n  paysettle ledger migrate --to postgres --config /etc/paysettle/paysettle.toml"
    )]
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Where to: `postgres` (the only backend a ledger moves to).
    #[arg(long, value_parser = ["postgres"])]
    to: String,
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a provider (portmanat, paysys, plutu)"))
}

fn parse_account(text: &str) -> Result<Account, String> {
    Account::parse(text).map_err(|e| e.to_string())
}

fn parse_status(text: &str) -> Result<PaymentStatus, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not a status ({})",
            PaymentStatus::ALL.map(|s| s.as_str()).join(", ")
        )
    })
}

/// `30s`, `15m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 15m, 24h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// An instant: RFC 3339, a date (midnight UTC), or an age (`24h` ago).
pub fn parse_when(text: &str) -> Result<Timestamp, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    let age = parse_duration(text).map_err(|_| {
        format!("{text:?} is not a time: give RFC 3339 (2026-11-20T10:00:00Z), a date (2026-11-20) or an age (24h, 7d)")
    })?;
    let age = jiff::SignedDuration::try_from(age).map_err(|e| e.to_string())?;
    Timestamp::now()
        .checked_sub(age)
        .map_err(|_| format!("{text:?} reaches too far back"))
}

fn init_logging() {
    crate::init_logging(false, "warn", crate::LogTo::Stderr);
}

/// Opens the configured ledger, on whichever backend (`ledger.backend`):
/// the one function the worker and every operator command open it with.
/// An operator's command never creates a SQLite ledger (`create` false): a
/// missing file is a mistaken path, not a new ledger.
pub(crate) async fn open_ledger(
    resolved: &crate::config::Resolved,
    create: bool,
) -> anyhow::Result<Ledger> {
    let target = &resolved.ledger_target;
    if let paysettle_store::LedgerTarget::Sqlite(path) = target
        && !create
        && !path.exists()
    {
        bail!(
            "there is no ledger at {} (set ledger.path in the configuration, or run from the sidecar's directory)",
            path.display()
        );
    }
    let shown = match target {
        paysettle_store::LedgerTarget::Sqlite(path) => path.display().to_string(),
        paysettle_store::LedgerTarget::Postgres(pg) => pg.shown(),
    };
    Ledger::connect(target, resolved.ledger.clone())
        .await
        .with_context(|| format!("opening the ledger {shown}"))
}

/// The configured queue, for an operator's command: no spool (the
/// receiver's), so an unreachable broker is an error here, not a detour.
async fn open_queue(
    resolved: &crate::config::Resolved,
    prefetch: Option<u16>,
) -> anyhow::Result<Queue> {
    let mut config = resolved.queue.clone();
    config.spool_path = None;
    if let Some(prefetch) = prefetch {
        config.prefetch = prefetch.max(1);
    }
    Queue::start(config).await.context("opening the queue")
}

fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question}: confirmation needs a terminal; add --yes to proceed without asking");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn mapping(args: &ReconcileArgs) -> anyhow::Result<Mapping> {
    let mut mapping = match &args.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the mapping {}", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the mapping {}: {}", path.display(), e.message()))?
        }
        None => Mapping::default(),
    };
    for pair in &args.columns {
        let (field, column) = pair
            .split_once('=')
            .with_context(|| format!("--column {pair:?}: give FIELD=COLUMN"))?;
        let column = column.to_owned();
        match field {
            "reference" => mapping.reference = column,
            "provider_transaction_id" => mapping.provider_transaction_id = Some(column),
            "status" => mapping.status = column,
            "amount" => mapping.amount = column,
            "currency" => mapping.currency = Some(column),
            other => bail!(
                "--column {other:?}: the fields are reference, provider_transaction_id, status, amount and currency"
            ),
        }
    }
    for pair in &args.status_words {
        let (word, status) = pair
            .split_once('=')
            .with_context(|| format!("--status-word {pair:?}: give WORD=STATUS"))?;
        mapping.statuses.insert(word.to_owned(), status.to_owned());
    }
    if let Some(format) = &args.amount_format {
        mapping.amount_format = if format == "minor" {
            AmountFormat::Minor
        } else {
            AmountFormat::Decimal
        };
    }
    if let Some(code) = &args.currency {
        mapping.default_currency = Some(code.to_ascii_uppercase());
        if args.columns.iter().all(|c| !c.starts_with("currency=")) {
            mapping.currency = None;
        }
    }
    mapping
        .validate()
        .map_err(|e| anyhow::anyhow!("the report mapping: {e}"))?;
    Ok(mapping)
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn total(&self, payments: u64) {
        self.0.set_length(payments);
    }
    fn advance(&self, payments: u64) {
        self.0.inc(payments);
    }
}

fn progress_bar() -> Bar {
    if !std::io::stderr().is_terminal() {
        return Bar(indicatif::ProgressBar::hidden());
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} payments  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Bar(bar)
}

/// Stops `token` at Ctrl-C or SIGTERM.
fn cancel_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        eprintln!("paysettle: stopping: finishing the checks in flight…");
        token.cancel();
    });
}

fn write_report(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => std::fs::write(path, bytes)
            .with_context(|| format!("writing the report to {}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}

pub async fn reconcile(args: ReconcileArgs) -> anyhow::Result<Exit> {
    let (_, resolved) = resolve(&args.config)?;
    init_logging();
    let journal_path = args.journal.clone().unwrap_or_else(|| {
        let mut name = resolved.ledger_path.clone().into_os_string();
        name.push(".reconcile.jsonl");
        PathBuf::from(name)
    });
    // Each way fails on its own input (journal, report) before the ledger
    // is opened, and the ledger is opened once.
    let (mut journal, batch, ledger) = if args.resume {
        let (journal, batch) = Journal::resume(&journal_path)?;
        (journal, batch, open_ledger(&resolved, false).await?)
    } else {
        let against = match &args.against {
            Some(path) => {
                let provider = args
                    .provider
                    .context("--against needs --provider: whose report is it?")?;
                Some(ReportSpec {
                    path: path.display().to_string(),
                    provider,
                    account: args.account.clone().unwrap_or_default(),
                    mapping: mapping(&args)?,
                })
            }
            None => None,
        };
        let batch = Batch {
            provider: args.provider,
            account: args.account.clone(),
            statuses: args.statuses.clone(),
            since: Some(args.since),
            until: args.until,
            stuck_after_secs: args.stuck_after.as_secs(),
            publish_grace_secs: args.publish_grace.as_secs(),
            retries: args.retries,
            against,
            started_at: Timestamp::now(),
        };
        if let Some(spec) = &batch.against {
            // Read it now, so a bad report fails before anything starts.
            paysettle_ops::Report::read(
                Path::new(&spec.path),
                spec.provider,
                spec.account.clone(),
                &spec.mapping,
            )?;
        }
        let ledger = open_ledger(&resolved, false).await?;
        let journal = Journal::start(&journal_path, &batch, args.fresh)?;
        (journal, batch, ledger)
    };
    let mut client = paysettle_worker::StatusClient::new(Arc::new(resolved.worker.clone()))
        .context("starting the HTTP client")?;
    // Beside workers on a shared ledger, a batch takes its requests from
    // the same rate buckets as they do.
    if ledger.is_shared() {
        client = client.sharing_rate_with(ledger.clone());
    }
    let reconciler = Reconciler::new(ledger.clone(), client, args.concurrency);
    let stop = CancellationToken::new();
    cancel_on_signal(&stop);
    let bar = progress_bar();
    let outcome = reconciler.run(&batch, &mut journal, &bar, &stop).await?;
    bar.0.finish_and_clear();
    let mut findings = outcome.findings;
    let mut applied = 0;
    let incomplete = outcome.interrupted || findings.iter().any(|f| f.class == Class::CheckFailed);

    if args.apply && !outcome.interrupted {
        let corrections = findings
            .iter()
            .filter(|f| f.fix == Fix::Apply && f.applied.is_none())
            .count();
        let to_publish = findings.iter().filter(|f| f.unpublished_events > 0).count();
        if corrections + to_publish > 0 {
            eprint!(
                "{}",
                render::table(&findings, &Summary::of(&findings), false, false, 0)
            );
            let question =
                format!("Apply {corrections} correction(s) to the ledger and publish the outbox?");
            if args.yes || ask(&question)? {
                applied = reconciler
                    .apply(&batch, &mut findings, &mut journal)
                    .await?;
                publish_outbox(&resolved, &ledger).await;
            } else {
                eprintln!("paysettle: nothing applied");
            }
        }
    }
    if !incomplete {
        journal.finish()?;
    }
    let summary = Summary::of(&findings);
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("writing the report to {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        Format::Table => out.write_all(
            render::table(&findings, &summary, args.all, outcome.interrupted, applied).as_bytes(),
        )?,
        Format::Csv => render::csv(&mut out, &findings)?,
        Format::Json => render::json(&mut out, &findings, &summary, outcome.interrupted, applied)?,
    }
    out.flush()?;
    drop(out);
    if args.output.is_some() || args.format != Format::Table {
        eprintln!(
            "paysettle: {} payment(s) reconciled, {} with discrepancies",
            summary.payments, summary.discrepancies
        );
    }
    if outcome.interrupted {
        eprintln!(
            "paysettle: interrupted after {} of {} payment(s); resume with: paysettle reconcile --resume{}",
            findings.len(),
            outcome.total,
            args.journal
                .as_ref()
                .map(|p| format!(" --journal {}", p.display()))
                .unwrap_or_default()
        );
        return Ok(2);
    }
    let failed = summary.count(Class::CheckFailed);
    if failed > 0 {
        eprintln!(
            "paysettle: {failed} payment(s) could not be checked at their provider; run again with --resume to ask again"
        );
        return Ok(2);
    }
    Ok(if summary.discrepancies > 0 { 1 } else { 0 })
}

/// Publishes the outbox through the configured queue: the corrections'
/// events, and any left unpublished. If the queue cannot be reached they
/// stay in the outbox, where the worker's relay finds them.
async fn publish_outbox(resolved: &crate::config::Resolved, ledger: &Ledger) {
    let result = async {
        let queue = open_queue(resolved, None).await?;
        let relay = paysettle_worker::Relay::new(ledger.clone(), queue.clone(), 256)
            .signing(Some(resolved.handoff.keys()?));
        let sent = tokio::time::timeout(Duration::from_secs(60), relay.run_until_idle())
            .await
            .context("publishing took over a minute")??;
        queue.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(sent)
    }
    .await;
    match result {
        Ok(sent) => eprintln!("paysettle: {sent} event(s) published"),
        Err(err) => eprintln!(
            "paysettle: the events wait in the outbox (the worker publishes them when it runs): {err:#}"
        ),
    }
}

pub async fn payments(command: PaymentsCommand) -> anyhow::Result<Exit> {
    match command {
        PaymentsCommand::List(args) => {
            let (_, resolved) = resolve(&args.config)?;
            init_logging();
            let ledger = open_ledger(&resolved, false).await?;
            let list = ledger
                .list(PaymentFilter {
                    provider: args.provider,
                    account: args.account,
                    statuses: args.statuses,
                    mismatched: args.mismatched,
                    since: args.since,
                    until: args.until,
                    limit: args.limit.max(1),
                    ..PaymentFilter::default()
                })
                .await?;
            let text = match args.format {
                Format::Json => serde_json::to_string_pretty(&list)? + "\n",
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(Vec::new());
                    w.write_record([
                        "id",
                        "provider",
                        "account",
                        "reference",
                        "provider_transaction_id",
                        "status",
                        "amount",
                        "currency",
                        "mismatch",
                        "version",
                        "created_at",
                        "updated_at",
                    ])?;
                    for p in &list {
                        let money = p.expected.or(p.paid);
                        w.write_record([
                            p.id.0.to_string(),
                            p.provider.to_string(),
                            p.account.to_string(),
                            p.reference.to_string(),
                            p.provider_txn_id
                                .as_ref()
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                            p.status.to_string(),
                            money.map(|m| m.minor().to_string()).unwrap_or_default(),
                            money
                                .map(|m| m.currency().code().to_owned())
                                .unwrap_or_default(),
                            p.mismatch.clone().unwrap_or_default(),
                            p.version.to_string(),
                            p.created_at.to_string(),
                            p.updated_at.to_string(),
                        ])?;
                    }
                    String::from_utf8(w.into_inner().map_err(|e| e.into_error())?)?
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|p| {
                            vec![
                                p.id.0.to_string(),
                                format!("{}/{}", p.provider, p.account),
                                p.reference.to_string(),
                                p.status.to_string(),
                                money_text(p.expected.or(p.paid)),
                                p.updated_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                                p.mismatch.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    let mut text = columns(
                        &[
                            "ID",
                            "PROVIDER",
                            "REFERENCE",
                            "STATUS",
                            "AMOUNT",
                            "UPDATED (UTC)",
                            "MISMATCH",
                        ],
                        &rows,
                    );
                    text.push_str(&format!("{} payment(s)\n", list.len()));
                    text
                }
            };
            write_report(None, text.as_bytes())?;
            Ok(0)
        }
        PaymentsCommand::Resolve(args) => resolve_payment(args).await,
        PaymentsCommand::Show(args) => {
            let (_, resolved) = resolve(&args.config)?;
            init_logging();
            let ledger = open_ledger(&resolved, false).await?;
            let payment = match (args.id, &args.reference, args.provider) {
                (Some(id), _, _) => ledger.payment_by_id(PaymentId(id)).await?,
                (None, Some(reference), Some(provider)) => {
                    let reference = Reference::parse(reference)
                        .map_err(|e| anyhow::anyhow!("the reference: {e}"))?;
                    ledger
                        .find(
                            provider,
                            args.account.unwrap_or_default(),
                            PaymentKey::Reference(reference),
                        )
                        .await?
                }
                _ => bail!("give a reference with --provider, or --id"),
            };
            let Some(payment) = payment else {
                eprintln!("paysettle: no such payment in the ledger");
                return Ok(1);
            };
            let history = ledger.history(payment.id).await?;
            let events = ledger.events_of(payment.id).await?;
            let text = if args.format == Format::Table {
                show_text(&payment, &history, &events)
            } else {
                serde_json::to_string_pretty(&serde_json::json!({
                    "payment": payment,
                    "history": history,
                    "events": events,
                }))? + "\n"
            };
            write_report(None, text.as_bytes())?;
            Ok(0)
        }
    }
}

/// `paysettle payments resolve`: exit 0 resolved, 1 no such payment or not
/// flagged (nothing changed), 2 bad input.
pub async fn resolve_payment(args: ResolveArgs) -> anyhow::Result<Exit> {
    let (_, resolved) = resolve(&args.config)?;
    init_logging();
    let reference =
        Reference::parse(&args.reference).map_err(|e| anyhow::anyhow!("the reference: {e}"))?;
    if args.reason.trim().is_empty() {
        eprintln!("paysettle: --reason is empty; say why, for the history and for finance");
        return Ok(2);
    }
    let resolution = if args.accept_provider {
        Resolution::AcceptProvider
    } else {
        Resolution::KeepLedger
    };
    let ledger = open_ledger(&resolved, false).await?;
    let account = args.account.unwrap_or_default();
    match ledger
        .resolve(
            args.provider,
            account,
            reference.clone(),
            resolution,
            args.reason,
        )
        .await
    {
        Ok(done) => {
            println!(
                "{} {}: resolved ({}), {} -> {}; {} event(s) for finance",
                args.provider,
                reference,
                resolution.code(),
                done.from,
                done.to,
                done.events.len()
            );
            Ok(0)
        }
        Err(err @ (StoreError::NotFound { .. } | StoreError::Refused { .. })) => {
            eprintln!("paysettle: {err}; nothing changed");
            Ok(1)
        }
        Err(err) => Err(err.into()),
    }
}

fn money_text(money: Option<paysettle_core::Money>) -> String {
    money.map_or_else(
        || "-".to_owned(),
        |m| format!("{} {}", m.to_decimal_string(), m.currency().code()),
    )
}

fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn show_text(
    p: &paysettle_store::PaymentRecord,
    history: &[paysettle_store::HistoryEntry],
    events: &[paysettle_store::OutboxEvent],
) -> String {
    let mut out = String::new();
    let when = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M:%S").to_string();
    out.push_str(&format!(
        "Payment {} ({}/{})\n",
        p.id.0, p.provider, p.account
    ));
    out.push_str(&format!("  reference       {}\n", p.reference));
    out.push_str(&format!(
        "  provider id     {}\n",
        p.provider_txn_id
            .as_ref()
            .map_or("-".to_owned(), |t| t.to_string())
    ));
    out.push_str(&format!("  status          {}\n", p.status));
    out.push_str(&format!("  expected        {}\n", money_text(p.expected)));
    out.push_str(&format!("  paid            {}\n", money_text(p.paid)));
    out.push_str(&format!("  refunded        {}\n", money_text(p.refunded)));
    out.push_str(&format!(
        "  registered      {}\n",
        if p.registered {
            "by the shop"
        } else {
            "no (the provider spoke first)"
        }
    ));
    if let Some(flag) = &p.flag {
        let state = if flag.awaiting_recheck {
            "awaiting its re-check"
        } else {
            "resolve with `paysettle payments resolve`"
        };
        out.push_str(&format!("  FLAG            {} ({state})\n", flag.summary()));
        out.push_str(&format!(
            "  PROVIDER SAID   {} {} (from a {})\n",
            flag.claim.status.target(),
            money_text(flag.claim.money),
            flag.claim.source
        ));
    }
    out.push_str(&format!("  version         {}\n", p.version));
    out.push_str(&format!(
        "  created         {} UTC\n  updated         {} UTC\n\n",
        when(p.created_at),
        when(p.updated_at)
    ));
    out.push_str("History\n");
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            vec![
                when(h.recorded_at),
                h.source.clone(),
                format!("{} ({})", h.observed_status, h.provider_status),
                money_text(h.money),
                h.outcome.clone(),
                match (&h.from_status, &h.to_status) {
                    (Some(f), Some(t)) => format!("{f} -> {t}"),
                    _ => h.reason.clone().unwrap_or_default(),
                },
            ]
        })
        .collect();
    out.push_str(&columns(
        &[
            "RECORDED (UTC)",
            "SOURCE",
            "SAID",
            "AMOUNT",
            "OUTCOME",
            "CHANGE",
        ],
        &rows,
    ));
    out.push_str("\nEvents\n");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.event_id.clone(),
                e.event_type.clone(),
                when(e.created_at),
                e.published_at.map_or("NOT YET".to_owned(), when),
            ]
        })
        .collect();
    out.push_str(&columns(
        &["EVENT ID", "TYPE", "CREATED (UTC)", "PUBLISHED (UTC)"],
        &rows,
    ));
    out
}

pub async fn events(command: EventsCommand) -> anyhow::Result<Exit> {
    let EventsCommand::Replay(args) = command;
    let (_, resolved) = resolve(&args.config)?;
    init_logging();
    let ledger = open_ledger(&resolved, false).await?;
    let payment = match (args.id, &args.reference, args.provider) {
        (Some(id), _, _) => Some(PaymentId(id)),
        (None, Some(reference), Some(provider)) => {
            let reference =
                Reference::parse(reference).map_err(|e| anyhow::anyhow!("the reference: {e}"))?;
            let found = ledger
                .find(
                    provider,
                    args.account.unwrap_or_default(),
                    PaymentKey::Reference(reference),
                )
                .await?
                .context("no such payment in the ledger")?;
            Some(found.id)
        }
        _ => None,
    };
    let mut selected = Vec::new();
    let mut after = None;
    loop {
        let page = ledger
            .events(EventFilter {
                payment,
                since: args.since,
                until: args.until,
                after_seq: after,
                limit: 1000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        selected.extend(page);
    }
    if selected.is_empty() {
        eprintln!("paysettle: no recorded event matches");
        return Ok(1);
    }
    if args.dry_run {
        for e in &selected {
            println!("{}  {}  {}", e.event_id, e.routing_key, e.created_at);
        }
        eprintln!(
            "paysettle: {} event(s) would be published (dry run)",
            selected.len()
        );
        return Ok(0);
    }
    let keys = resolved.handoff.keys()?;
    let queue = open_queue(&resolved, None).await?;
    let mut sent = 0;
    for e in &selected {
        let mut message = Message::json(e.event_id.clone(), e.body.clone().into_bytes())
            .with_header("event-type", e.event_type.clone())
            .with_header("replayed", "true");
        for (name, value) in keys.sign(&message.body) {
            message = message.with_header(name, value);
        }
        queue
            .publish_event(&e.routing_key, &message)
            .await
            .with_context(|| {
                format!(
                    "publishing {} ({sent} of {} sent before it)",
                    e.event_id,
                    selected.len()
                )
            })?;
        sent += 1;
    }
    queue.shutdown(Duration::from_secs(5)).await;
    println!("replayed {sent} event(s) with their original event_id");
    Ok(0)
}

/// One dead-lettered callback, as `dlq list` shows it.
#[derive(Debug, serde::Serialize)]
struct DeadLetter {
    message_id: String,
    provider: String,
    account: String,
    kind: String,
    reference: String,
    received_at: String,
    reason: String,
    deliveries: u32,
    bytes: usize,
}

fn dead_letter(delivery: &paysettle_queue::Delivery) -> DeadLetter {
    let header = |name: &str| delivery.headers().get(name).cloned().unwrap_or_default();
    let inbound: Option<paysettle_core::inbound::InboundCallback> =
        serde_json::from_slice(delivery.body()).ok();
    let (kind, reference, received_at) = match &inbound {
        Some(i) => {
            let (kind, reference) = match &i.payload {
                paysettle_core::inbound::Payload::Observation(o) => {
                    ("observation", o.reference.to_string())
                }
                paysettle_core::inbound::Payload::PortmanatHint(h) => (
                    "portmanat_hint",
                    h.client_rrn
                        .as_ref()
                        .map(|r| r.to_string())
                        .or_else(|| h.psp_rrn.as_ref().map(|t| format!("psp_rrn {t}")))
                        .unwrap_or_default(),
                ),
                paysettle_core::inbound::Payload::CardRegistered { .. } => {
                    ("card_registered", String::new())
                }
                paysettle_core::inbound::Payload::CardRegistrationFailed { .. } => {
                    ("card_registration_failed", String::new())
                }
            };
            (kind.to_owned(), reference, i.received_at.to_string())
        }
        None => ("unreadable".to_owned(), String::new(), String::new()),
    };
    DeadLetter {
        message_id: delivery.message_id().to_owned(),
        provider: header("provider"),
        account: header("account"),
        kind,
        reference,
        received_at,
        reason: header(DEAD_LETTER_REASON_HEADER),
        deliveries: delivery.delivery_count(),
        bytes: delivery.body().len(),
    }
}

/// Takes up to `limit` dead letters off the queue, unsettled.
async fn take_dead_letters(
    queue: &Queue,
    limit: usize,
) -> anyhow::Result<(paysettle_queue::Consumer, Vec<paysettle_queue::Delivery>)> {
    let mut consumer = queue.consumer(QueueKind::DeadLetters)?;
    let mut taken = Vec::new();
    while taken.len() < limit {
        let batch = consumer
            .next_batch(limit - taken.len(), Duration::from_millis(1000))
            .await?;
        if batch.is_empty() {
            break;
        }
        taken.extend(batch);
    }
    Ok((consumer, taken))
}

pub async fn dlq(command: DlqCommand) -> anyhow::Result<Exit> {
    match command {
        DlqCommand::List(args) => {
            let (_, resolved) = resolve(&args.config)?;
            init_logging();
            let queue = open_queue(&resolved, Some(args.limit)).await?;
            let total = queue.message_count(QueueKind::DeadLetters).await.ok();
            let (consumer, taken) = take_dead_letters(&queue, usize::from(args.limit)).await?;
            let letters: Vec<DeadLetter> = taken.iter().map(dead_letter).collect();
            for delivery in &taken {
                delivery.nack_requeue().await?;
            }
            drop(consumer);
            queue.shutdown(Duration::from_secs(5)).await;
            let text = match args.format {
                Format::Json => serde_json::to_string_pretty(&letters)? + "\n",
                Format::Csv | Format::Table => {
                    let rows: Vec<Vec<String>> = letters
                        .iter()
                        .map(|l| {
                            vec![
                                l.message_id.clone(),
                                format!("{}/{}", l.provider, l.account),
                                l.kind.clone(),
                                l.reference.clone(),
                                l.received_at.clone(),
                                l.deliveries.to_string(),
                                l.reason.clone(),
                            ]
                        })
                        .collect();
                    let mut text = columns(
                        &[
                            "MESSAGE ID",
                            "PROVIDER",
                            "KIND",
                            "REFERENCE",
                            "RECEIVED",
                            "DELIVERIES",
                            "REASON",
                        ],
                        &rows,
                    );
                    text.push_str(&format!(
                        "{} dead-lettered callback(s) listed{}\n",
                        letters.len(),
                        total.map(|t| format!(" of {t}")).unwrap_or_default()
                    ));
                    text
                }
            };
            write_report(None, text.as_bytes())?;
            Ok(if letters.is_empty() { 0 } else { 1 })
        }
        DlqCommand::Replay(args) => {
            let (_, resolved) = resolve(&args.config)?;
            init_logging();
            let queue = open_queue(&resolved, Some(u16::MAX)).await?;
            let (consumer, taken) = take_dead_letters(&queue, usize::from(u16::MAX)).await?;
            let (chosen, others): (Vec<_>, Vec<_>) = taken
                .into_iter()
                .partition(|d| args.all || args.ids.iter().any(|id| id == d.message_id()));
            for delivery in &others {
                delivery.nack_requeue().await?;
            }
            let missing: Vec<&String> = args
                .ids
                .iter()
                .filter(|id| chosen.iter().all(|d| d.message_id() != id.as_str()))
                .collect();
            if chosen.is_empty() {
                drop(consumer);
                queue.shutdown(Duration::from_secs(5)).await;
                eprintln!("paysettle: no dead-lettered callback matches");
                return Ok(1);
            }
            let question = format!(
                "Send {} dead-lettered callback(s) back to the worker?",
                chosen.len()
            );
            if !(args.yes || ask(&question)?) {
                for d in &chosen {
                    d.nack_requeue().await?;
                }
                drop(consumer);
                queue.shutdown(Duration::from_secs(5)).await;
                eprintln!("paysettle: nothing replayed");
                return Ok(0);
            }
            let mut replayed = 0;
            for delivery in &chosen {
                let mut message = delivery.message().clone();
                message.headers.remove(DEAD_LETTER_REASON_HEADER);
                message.headers.insert("replayed".into(), "true".into());
                // Durable on the callbacks queue first, then gone from the
                // dead letters: a crash between the two sends it twice, and
                // the ledger dedupes it.
                queue.publish(&message).await.with_context(|| {
                    format!(
                        "sending {} back ({replayed} sent before it)",
                        message.message_id
                    )
                })?;
                delivery.ack().await?;
                replayed += 1;
            }
            drop(consumer);
            queue.shutdown(Duration::from_secs(5)).await;
            println!("replayed {replayed} callback(s)");
            if !missing.is_empty() {
                eprintln!(
                    "paysettle: not in the dead letters: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(1);
            }
            Ok(0)
        }
    }
}

pub async fn ledger(command: LedgerCommand) -> anyhow::Result<Exit> {
    let config = match command {
        LedgerCommand::Check(config) => config,
        LedgerCommand::Migrate(args) => return migrate(args).await,
    };
    let (_, resolved) = resolve(&config)?;
    init_logging();
    let ledger = open_ledger(&resolved, false).await?;
    let problems = ledger.integrity_problems().await?;
    let counts = ledger.counts().await?;
    let payments: i64 = counts.iter().map(|(_, n)| n).sum();
    if problems.is_empty() {
        println!(
            "the ledger {} is whole: {payments} payment(s) ({})",
            ledger.describe(),
            counts
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(0)
    } else {
        for problem in &problems {
            println!("{problem}");
        }
        eprintln!(
            "paysettle: the ledger {} has {} problem(s)",
            ledger.describe(),
            problems.len()
        );
        Ok(1)
    }
}

/// `paysettle ledger migrate --to postgres`.
async fn migrate(args: MigrateArgs) -> anyhow::Result<Exit> {
    debug_assert_eq!(args.to, "postgres");
    let (_, resolved) = resolve(&args.config)?;
    init_logging();
    let paysettle_store::LedgerTarget::Postgres(target) = &resolved.ledger_target else {
        bail!(
            "ledger.backend is \"sqlite\": set ledger.backend = \"postgres\" and ledger.url (or ledger.url_file) to the empty PostgreSQL database to copy into; the SQLite ledger copied is ledger.path"
        );
    };
    let source_path = &resolved.ledger_path;
    if !source_path.exists() {
        bail!(
            "there is no SQLite ledger at {} (ledger.path) to copy",
            source_path.display()
        );
    }
    // No worker may write the source while it is copied.
    let _claim = match paysettle_store::WorkerClaim::acquire(source_path) {
        Ok(claim) => claim,
        Err(e) => {
            eprintln!("paysettle: {e}; stop the worker before migrating its ledger");
            return Ok(1);
        }
    };
    let source = paysettle_store::SqliteLedger::open(source_path, resolved.ledger.clone())
        .with_context(|| format!("opening the SQLite ledger {}", source_path.display()))?;
    let problems = source.integrity_problems().await?;
    if !problems.is_empty() {
        for problem in &problems {
            println!("{problem}");
        }
        eprintln!(
            "paysettle: the SQLite ledger {} has {} problem(s); nothing was copied",
            source_path.display(),
            problems.len()
        );
        return Ok(1);
    }
    let pg = paysettle_store::PgLedger::open(target, resolved.ledger.clone())
        .await
        .with_context(|| format!("opening the PostgreSQL ledger {}", target.shown()))?;
    let copied = match pg.copy_from_sqlite(&source).await {
        Ok(copied) => copied,
        Err(paysettle_store::StoreError::Refused { reason }) => {
            eprintln!("paysettle: {reason}");
            return Ok(1);
        }
        Err(e) => return Err(e).context("copying the ledger"),
    };
    // Verify: the target is whole, and holds what the source holds.
    let target_ledger = Ledger::from(pg);
    let source_ledger = Ledger::from(source);
    let mut differences = target_ledger.integrity_problems().await?;
    let (want, got) = (source_ledger.counts().await?, target_ledger.counts().await?);
    if want != got {
        differences.push(format!(
            "payments by status differ: SQLite {want:?}, PostgreSQL {got:?}"
        ));
    }
    let (want, got) = (
        every_event(&source_ledger).await?,
        every_event(&target_ledger).await?,
    );
    if want != got {
        differences.push(format!(
            "the outboxes differ: {} event(s) in SQLite, {} in PostgreSQL",
            want.len(),
            got.len()
        ));
    }
    if !differences.is_empty() {
        for difference in &differences {
            println!("{difference}");
        }
        eprintln!(
            "paysettle: the copy in {} does not check out; it stays for inspection (empty the database before trying again)",
            target_ledger.describe()
        );
        return Ok(1);
    }
    println!(
        "copied {} into {}: {}; both ledgers are whole and hold the same payments and events",
        source_path.display(),
        target_ledger.describe(),
        copied
            .tables
            .iter()
            .map(|(table, n)| format!("{n} {table}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "next: start the workers with ledger.backend = \"postgres\" (they are the only writers now)"
    );
    Ok(0)
}

/// Every event in the outbox, in order, read a page at a time.
async fn every_event(ledger: &Ledger) -> anyhow::Result<Vec<paysettle_store::OutboxEvent>> {
    let mut events = Vec::new();
    loop {
        let page = ledger
            .events(paysettle_store::EventFilter {
                after_seq: events.last().map(|e: &paysettle_store::OutboxEvent| e.seq),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        if page.is_empty() {
            return Ok(events);
        }
        events.extend(page);
    }
}
