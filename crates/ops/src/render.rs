//! What an operator reads: a table for the terminal, CSV and JSON for
//! everything else. The JSON's shape is a contract (scripts parse it): keys
//! in a fixed order, every class present in the counts, amounts as integer
//! minor units beside their currency.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use paysettle_core::Money;
use paysettle_core::money::Currency;
use serde::Serialize;

use crate::reconcile::{Class, Finding, Fix, Summary};

/// One finding, flat: a CSV line or a JSON object.
#[derive(Debug, Serialize)]
struct Row<'a> {
    key: &'a str,
    class: Class,
    classes: Vec<Class>,
    payment_id: Option<i64>,
    provider: &'a str,
    account: &'a str,
    reference: &'a str,
    provider_transaction_id: Option<&'a str>,
    ledger_status: Option<&'a str>,
    ledger_amount: Option<i64>,
    ledger_currency: Option<&'a str>,
    provider_status: Option<&'a str>,
    provider_said: Option<&'a str>,
    provider_amount: Option<i64>,
    provider_currency: Option<&'a str>,
    checked: bool,
    unpublished_events: u32,
    detail: &'a str,
    fix: Fix,
    applied: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn of(f: &'a Finding) -> Row<'a> {
        Row {
            key: &f.key,
            class: f.class,
            classes: f.classes.clone(),
            payment_id: f.payment_id,
            provider: f.provider.as_str(),
            account: f.account.as_str(),
            reference: f.reference.as_str(),
            provider_transaction_id: f.provider_transaction_id.as_deref(),
            ledger_status: f.ledger_status.map(|s| s.as_str()),
            ledger_amount: f.ledger_amount.map(Money::minor),
            ledger_currency: f.ledger_amount.map(|m| m.currency().code()),
            provider_status: f.provider_status.map(|s| s.as_str()),
            provider_said: f.provider_said.as_deref(),
            provider_amount: f.provider_amount.map(Money::minor),
            provider_currency: f.provider_amount.map(|m| m.currency().code()),
            checked: f.checked,
            unpublished_events: f.unpublished_events,
            detail: &f.detail,
            fix: f.fix,
            applied: f.applied.as_deref(),
        }
    }
}

/// The batch's counts as JSON.
#[derive(Debug, Serialize)]
struct SummaryJson {
    payments: usize,
    discrepancies: usize,
    not_checked: usize,
    interrupted: bool,
    applied: usize,
    by_class: BTreeMap<&'static str, usize>,
    /// Per class, per currency, the sum in minor units.
    money: BTreeMap<&'static str, BTreeMap<&'static str, i128>>,
}

fn summary_json(summary: &Summary, interrupted: bool, applied: usize) -> SummaryJson {
    SummaryJson {
        payments: summary.payments,
        discrepancies: summary.discrepancies,
        not_checked: summary.not_checked,
        interrupted,
        applied,
        by_class: Class::ALL
            .into_iter()
            .map(|c| (c.as_str(), summary.count(c)))
            .collect(),
        money: summary
            .money
            .iter()
            .map(|(class, sums)| {
                (
                    class.as_str(),
                    sums.iter().map(|(c, sum)| (c.code(), *sum)).collect(),
                )
            })
            .collect(),
    }
}

/// The whole report as JSON, `{"summary": {…}, "findings": [...]}`,
/// written as it is made (a batch of 100,000 payments is never held twice).
pub fn json(
    out: impl std::io::Write,
    findings: &[Finding],
    summary: &Summary,
    interrupted: bool,
    applied: usize,
) -> Result<(), serde_json::Error> {
    struct Rows<'a>(&'a [Finding]);
    impl Serialize for Rows<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(Row::of))
        }
    }
    #[derive(Serialize)]
    struct Whole<'a> {
        summary: SummaryJson,
        findings: Rows<'a>,
    }
    let mut out = std::io::BufWriter::new(out);
    serde_json::to_writer_pretty(
        &mut out,
        &Whole {
            summary: summary_json(summary, interrupted, applied),
            findings: Rows(findings),
        },
    )?;
    std::io::Write::write_all(&mut out, b"\n").map_err(serde_json::Error::io)?;
    std::io::Write::flush(&mut out).map_err(serde_json::Error::io)
}

/// Every finding as CSV, a header line first; `classes` joined by `|`.
pub fn csv(out: impl std::io::Write, findings: &[Finding]) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "key",
        "class",
        "classes",
        "payment_id",
        "provider",
        "account",
        "reference",
        "provider_transaction_id",
        "ledger_status",
        "ledger_amount",
        "ledger_currency",
        "provider_status",
        "provider_said",
        "provider_amount",
        "provider_currency",
        "checked",
        "unpublished_events",
        "detail",
        "fix",
        "applied",
    ])?;
    let text = |v: Option<&str>| v.unwrap_or("").to_owned();
    let number = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    for f in findings {
        let r = Row::of(f);
        writer.write_record([
            r.key.to_owned(),
            r.class.as_str().to_owned(),
            r.classes
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("|"),
            number(r.payment_id),
            r.provider.to_owned(),
            r.account.to_owned(),
            r.reference.to_owned(),
            text(r.provider_transaction_id),
            text(r.ledger_status),
            number(r.ledger_amount),
            text(r.ledger_currency),
            text(r.provider_status),
            text(r.provider_said),
            number(r.provider_amount),
            text(r.provider_currency),
            r.checked.to_string(),
            r.unpublished_events.to_string(),
            r.detail.to_owned(),
            fix_name(r.fix).to_owned(),
            text(r.applied),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

fn fix_name(fix: Fix) -> &'static str {
    match fix {
        Fix::None => "none",
        Fix::Apply => "apply",
        Fix::Publish => "publish",
    }
}

/// A sum of minor units as a decimal amount of `currency`.
pub fn decimal(sum: i128, currency: Currency) -> String {
    let exponent = currency.exponent();
    let negative = sum < 0;
    let digits = sum.unsigned_abs().to_string();
    let width = exponent as usize + 1;
    let digits = format!("{digits:0>width$}");
    let (major, minor) = digits.split_at(digits.len() - exponent as usize);
    let sign = if negative { "-" } else { "" };
    if exponent == 0 {
        format!("{sign}{major} {}", currency.code())
    } else {
        format!("{sign}{major}.{minor} {}", currency.code())
    }
}

fn money(m: Option<Money>) -> String {
    m.map_or_else(
        || "-".to_owned(),
        |m| format!("{} {}", m.to_decimal_string(), m.currency().code()),
    )
}

/// The terminal table: every discrepancy (every payment with `all`), then
/// the summary.
pub fn table(
    findings: &[Finding],
    summary: &Summary,
    all: bool,
    interrupted: bool,
    applied: usize,
) -> String {
    // DETAIL is not a column: an error is read whole, so it goes on its own
    // line under its row, never cut to a column's width.
    let header = [
        "CLASS",
        "PROVIDER",
        "REFERENCE",
        "LEDGER",
        "PROVIDER SAYS",
        "AMOUNT",
        "FIX",
    ];
    // Most serious first, then by provider and reference, whatever order
    // the checks finished in.
    let mut shown: Vec<&Finding> = findings
        .iter()
        .filter(|f| all || f.class != Class::Ok)
        .collect();
    shown.sort_by(|a, b| {
        (
            a.class,
            a.provider,
            a.account.as_str(),
            a.reference.as_str(),
        )
            .cmp(&(
                b.class,
                b.provider,
                b.account.as_str(),
                b.reference.as_str(),
            ))
    });
    let rows: Vec<([String; 7], &str)> = shown
        .into_iter()
        .map(|f| {
            let says = match (&f.provider_status, &f.provider_said) {
                (Some(status), Some(word)) => format!("{status} ({word})"),
                _ if !f.checked => "not asked".into(),
                _ => "-".into(),
            };
            let amount = if f.provider_amount.is_some() && f.provider_amount != f.ledger_amount {
                format!("{} / {}", money(f.ledger_amount), money(f.provider_amount))
            } else {
                money(f.ledger_amount.or(f.provider_amount))
            };
            let fix = match (&f.applied, f.fix) {
                (Some(done), _) => done.clone(),
                (None, fix) => fix_name(fix).to_owned(),
            };
            (
                [
                    f.class.as_str().to_owned(),
                    format!("{}/{}", f.provider, f.account),
                    f.reference.as_str().to_owned(),
                    f.ledger_status
                        .map_or("-".into(), |s| s.as_str().to_owned()),
                    says,
                    amount,
                    fix,
                ],
                f.detail.as_str(),
            )
        })
        .collect();
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No discrepancies.\n");
    } else {
        // Columns as wide as their widest cell: nothing is cut.
        let mut widths = header.map(str::len);
        for (row, _) in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<w$}  ");
                }
            }
            text.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(&header.map(str::to_owned)));
        for (row, detail) in &rows {
            out.push_str(&line(row));
            if !detail.is_empty() {
                let _ = writeln!(out, "    {detail}");
            }
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{} payment(s) reconciled, {} with discrepancies{}.",
        summary.payments,
        summary.discrepancies,
        if interrupted { " (interrupted)" } else { "" }
    );
    for class in Class::ALL {
        let n = summary.count(class);
        if n == 0 {
            continue;
        }
        let sums = summary
            .money
            .get(&class)
            .map(|by| {
                by.iter()
                    .map(|(c, s)| decimal(*s, *c))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(out, "  {:<20} {:>7}  {}", class.as_str(), n, sums);
    }
    if summary.not_checked > 0 {
        let _ = writeln!(
            out,
            "  {} payment(s) could not be asked (no status API or no provider id yet); reconcile Plutu with --against REPORT.",
            summary.not_checked
        );
    }
    if applied > 0 {
        let _ = writeln!(out, "  {applied} correction(s) applied.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_shown_whole_on_its_own_line() {
        let error = "request failed: error sending request for url (http://127.0.0.1:8090/portmanat/check): \
                     client error (Connect): tcp connect error: Connection refused (os error 111)";
        let finding = Finding {
            key: "payment:1".into(),
            class: Class::CheckFailed,
            classes: vec![Class::CheckFailed],
            payment_id: Some(1),
            provider: paysettle_core::Provider::Portmanat,
            account: paysettle_core::Account::default(),
            reference: paysettle_core::Reference::parse("ORDER-1").unwrap(),
            provider_transaction_id: None,
            ledger_status: Some(paysettle_core::PaymentStatus::Pending),
            ledger_amount: None,
            ledger_refunded: None,
            provider_status: None,
            provider_said: None,
            provider_amount: None,
            provider_refunded: None,
            checked: true,
            unpublished_events: 0,
            detail: error.into(),
            fix: Fix::None,
            applied: None,
        };
        let findings = [finding];
        let text = table(&findings, &Summary::of(&findings), false, false, 0);
        assert!(text.contains(error), "the error is cut:\n{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("check_failed"), "{text}");
        assert_eq!(lines[2].trim(), error, "on its own line under its row");
    }

    #[test]
    fn sums_are_written_with_the_currencys_decimals() {
        assert_eq!(decimal(1990, Currency::Usd), "19.90 USD");
        assert_eq!(decimal(5, Currency::Lyd), "0.005 LYD");
        assert_eq!(decimal(-150, Currency::Azn), "-1.50 AZN");
        assert_eq!(decimal(1_139_000, Currency::Uzs), "11390.00 UZS");
        assert_eq!(
            decimal(i128::from(i64::MAX) * 3, Currency::Usd),
            "276701161105643274.21 USD"
        );
    }
}
