//! A provider's exported report, read through a column mapping.
//!
//! Plutu has no status API, so its payments are reconciled against the
//! report the merchant portal exports; the other providers' reports can be
//! used the same way. Reports differ in column names, status words and how
//! amounts are written, so a [`Mapping`] says which column is which; its
//! defaults fit a report with columns `reference`, `provider_transaction_id`,
//! `status`, `amount` (a decimal string such as `19.90`) and `currency`.
//!
//! Every row is checked before anything is compared: a report with one bad
//! row is refused whole, naming the line and the column, because half a
//! report reconciled looks like half the payments missing.

use std::collections::BTreeMap;
use std::path::Path;

use paysettle_core::money::{Currency, Money};
use paysettle_core::{Account, ObservedStatus, Provider, ProviderTxnId, Reference};
use serde::{Deserialize, Serialize};

/// How amounts are written in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmountFormat {
    /// `19.90`: major units with the currency's decimals (Portmanat, Plutu).
    #[default]
    Decimal,
    /// `1990`: integer minor units (PaySys).
    Minor,
}

/// Which column holds what, and what the provider's status words mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    /// The shop's order id (`invoice_no`, `client_rrn`, `partner_trans_id`).
    pub reference: String,
    /// The provider's own id; optional.
    pub provider_transaction_id: Option<String>,
    pub status: String,
    pub amount: String,
    /// The currency column; when the report has none, `default_currency`.
    pub currency: Option<String>,
    pub default_currency: Option<String>,
    pub amount_format: AmountFormat,
    /// Extra status words (matched without regard to case) and what they
    /// mean: `succeeded`, `failed`, `canceled`, `refunded` or `pending`.
    /// They add to, and override, the built-in words.
    pub statuses: BTreeMap<String, String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            reference: "reference".into(),
            provider_transaction_id: Some("provider_transaction_id".into()),
            status: "status".into(),
            amount: "amount".into(),
            currency: Some("currency".into()),
            default_currency: None,
            amount_format: AmountFormat::Decimal,
            statuses: BTreeMap::new(),
        }
    }
}

/// The status words every report is read with, unless the mapping says
/// otherwise.
const BUILT_IN_WORDS: &[(&str, &str)] = &[
    ("success", "succeeded"),
    ("successful", "succeeded"),
    ("succeeded", "succeeded"),
    ("approved", "succeeded"),
    ("paid", "succeeded"),
    ("completed", "succeeded"),
    ("captured", "succeeded"),
    ("settled", "succeeded"),
    ("failed", "failed"),
    ("failure", "failed"),
    ("declined", "failed"),
    ("rejected", "failed"),
    ("error", "failed"),
    ("canceled", "canceled"),
    ("cancelled", "canceled"),
    ("reversed", "canceled"),
    ("voided", "canceled"),
    ("refunded", "refunded"),
    ("pending", "pending"),
    ("processing", "pending"),
    ("in_progress", "pending"),
    ("created", "pending"),
    ("new", "pending"),
];

fn meaning(word: &str) -> Result<ObservedStatus, String> {
    match word {
        "succeeded" => Ok(ObservedStatus::Succeeded),
        "failed" => Ok(ObservedStatus::Failed),
        "canceled" => Ok(ObservedStatus::Canceled),
        "refunded" => Ok(ObservedStatus::Refunded { total: None }),
        "pending" => Ok(ObservedStatus::Pending),
        other => Err(format!(
            "{other:?} is not a status (succeeded, failed, canceled, refunded or pending)"
        )),
    }
}

impl Mapping {
    /// Checks the mapping itself, before any report is read.
    pub fn validate(&self) -> Result<(), String> {
        for (word, status) in &self.statuses {
            meaning(status).map_err(|e| format!("status word {word:?}: {e}"))?;
        }
        if let Some(code) = &self.default_currency {
            Currency::from_code(code).map_err(|e| format!("default_currency: {e}"))?;
        }
        for (name, column) in [
            ("reference", &self.reference),
            ("status", &self.status),
            ("amount", &self.amount),
        ] {
            if column.trim().is_empty() {
                return Err(format!("the {name} column name is empty"));
            }
        }
        if self.currency.is_none() && self.default_currency.is_none() {
            return Err("say which column holds the currency, or give a default currency".into());
        }
        Ok(())
    }

    fn status_of(&self, word: &str) -> Option<ObservedStatus> {
        let key = word.trim().to_ascii_lowercase();
        let configured = self
            .statuses
            .iter()
            .find(|(w, _)| w.trim().eq_ignore_ascii_case(&key))
            .map(|(_, s)| s.as_str());
        let built_in = || {
            BUILT_IN_WORDS
                .iter()
                .find(|(w, _)| *w == key)
                .map(|(_, s)| *s)
        };
        configured.or_else(built_in).and_then(|s| meaning(s).ok())
    }
}

/// One row of a report, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// Where it is in the file: the CSV line, or the JSON element (from 1).
    pub line: usize,
    pub reference: Reference,
    pub provider_txn_id: Option<ProviderTxnId>,
    pub status: ObservedStatus,
    /// The status word as the report wrote it.
    pub provider_status: String,
    pub money: Money,
}

/// A whole report, every row checked.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: String,
    pub provider: Provider,
    pub account: Account,
    pub rows: Vec<ReportRow>,
}

/// Why a report cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct ReportError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Report {
    /// Reads the report at `path`: CSV (`.csv`, with a header line) or JSON
    /// (`.json`: an array of objects, or an object holding one such array;
    /// `.jsonl`/`.ndjson`: one object a line).
    pub fn read(
        path: &Path,
        provider: Provider,
        account: Account,
        mapping: &Mapping,
    ) -> Result<Report, ReportError> {
        let shown = path.display().to_string();
        let fail = |line: Option<usize>, message: String| ReportError {
            path: shown.clone(),
            line,
            message,
        };
        mapping.validate().map_err(|m| fail(None, m))?;
        let bytes = std::fs::read(path).map_err(|e| fail(None, format!("cannot read it: {e}")))?;
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let records = match extension.as_str() {
            "csv" => csv_records(&bytes).map_err(|(l, m)| fail(l, m))?,
            "json" => json_records(&bytes).map_err(|(l, m)| fail(l, m))?,
            "jsonl" | "ndjson" => json_lines(&bytes).map_err(|(l, m)| fail(l, m))?,
            _ => {
                return Err(fail(
                    None,
                    "cannot tell its format from its name: use .csv, .json or .jsonl".into(),
                ));
            }
        };
        if records.is_empty() {
            return Err(fail(None, "it has no rows".into()));
        }
        let mut rows = Vec::with_capacity(records.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (line, record) in records {
            let row = read_row(line, &record, mapping).map_err(|m| fail(Some(line), m))?;
            if let Some(first) = seen.insert(row.reference.as_str().to_owned(), line) {
                return Err(fail(
                    Some(line),
                    format!(
                        "reference {} appears again (first on line {first}); a report must list each payment once",
                        row.reference
                    ),
                ));
            }
            rows.push(row);
        }
        Ok(Report {
            path: shown,
            provider,
            account,
            rows,
        })
    }
}

type Record = BTreeMap<String, String>;
type Located = Result<Vec<(usize, Record)>, (Option<usize>, String)>;

fn csv_records(bytes: &[u8]) -> Located {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| (Some(1), format!("the header line cannot be read: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut records = Vec::new();
    for result in reader.records() {
        let record = result.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize);
            (line, csv_problem(&e))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let map = headers
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        records.push((line, map));
    }
    Ok(records)
}

fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => error.to_string(),
    }
}

fn json_records(bytes: &[u8]) -> Located {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| (Some(e.line()), format!("not valid JSON: {e}")))?;
    let array = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(map) => {
            let mut arrays: Vec<Vec<serde_json::Value>> = map
                .into_iter()
                .filter_map(|(_, v)| match v {
                    serde_json::Value::Array(a) => Some(a),
                    _ => None,
                })
                .collect();
            if arrays.len() != 1 {
                return Err((
                    None,
                    "expected an array of payments, or an object holding exactly one array".into(),
                ));
            }
            arrays.remove(0)
        }
        _ => return Err((None, "expected an array of payments".into())),
    };
    array
        .into_iter()
        .enumerate()
        .map(|(i, item)| json_record(i + 1, item))
        .collect()
}

fn json_lines(bytes: &[u8]) -> Located {
    let text = std::str::from_utf8(bytes).map_err(|_| (None, "not valid UTF-8".to_owned()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let value = serde_json::from_str(line)
                .map_err(|e| (Some(i + 1), format!("not valid JSON: {e}")))?;
            json_record(i + 1, value)
        })
        .collect()
}

fn json_record(
    line: usize,
    value: serde_json::Value,
) -> Result<(usize, Record), (Option<usize>, String)> {
    let serde_json::Value::Object(map) = value else {
        return Err((Some(line), "expected an object".into()));
    };
    let mut record = Record::new();
    for (key, value) in map {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err((Some(line), format!("field {key:?} is not a plain value")));
            }
        };
        record.insert(key, text);
    }
    Ok((line, record))
}

fn read_row(line: usize, record: &Record, mapping: &Mapping) -> Result<ReportRow, String> {
    let field = |column: &str| -> Result<&str, String> {
        match record.get(column).map(|v| v.trim()) {
            Some(value) if !value.is_empty() => Ok(value),
            Some(_) => Err(format!("column {column:?} is empty")),
            None => Err(format!(
                "there is no column {column:?} (columns: {})",
                record.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    };
    let reference = Reference::parse(field(&mapping.reference)?)
        .map_err(|e| format!("column {:?}: {e}", mapping.reference))?;
    let provider_txn_id = match &mapping.provider_transaction_id {
        Some(column) => match record.get(column).map(|v| v.trim()) {
            Some(value) if !value.is_empty() => {
                Some(ProviderTxnId::parse(value).map_err(|e| format!("column {column:?}: {e}"))?)
            }
            _ => None,
        },
        None => None,
    };
    let word = field(&mapping.status)?;
    let status = mapping.status_of(word).ok_or_else(|| {
        format!(
            "column {:?}: the status {word:?} is not known; map it with --status {word}=succeeded (or failed, canceled, refunded, pending)",
            mapping.status
        )
    })?;
    let currency = match &mapping.currency {
        Some(column) if record.contains_key(column) => field(column)?.to_owned(),
        _ => mapping.default_currency.clone().ok_or_else(|| {
            format!(
                "there is no currency column {:?} and no default currency",
                mapping.currency.as_deref().unwrap_or("currency")
            )
        })?,
    };
    let currency = Currency::from_code(&currency.to_ascii_uppercase())
        .map_err(|e| format!("currency: {e}"))?;
    let amount = field(&mapping.amount)?;
    let money = match mapping.amount_format {
        AmountFormat::Decimal => Money::parse_decimal(amount, currency),
        AmountFormat::Minor => Money::parse_minor(amount, currency),
    }
    .map_err(|e| format!("column {:?}: {e}", mapping.amount))?;
    Ok(ReportRow {
        line,
        reference,
        provider_txn_id,
        status,
        provider_status: word.to_owned(),
        money,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn read(path: &Path, mapping: &Mapping) -> Result<Report, ReportError> {
        Report::read(path, Provider::Plutu, Account::default(), mapping)
    }

    #[test]
    fn a_csv_report_is_read_through_the_default_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "r.csv",
            "reference,provider_transaction_id,status,amount,currency\nINV-1,T1,Approved,19.90,LYD\nINV-2,,declined,5,USD\n",
        );
        let report = read(&path, &Mapping::default()).unwrap();
        assert_eq!(report.rows.len(), 2);
        let first = &report.rows[0];
        assert_eq!(first.line, 2);
        assert_eq!(first.reference.as_str(), "INV-1");
        assert_eq!(first.status, ObservedStatus::Succeeded);
        assert_eq!(
            first.money,
            Money::from_minor(19_900, Currency::Lyd).unwrap()
        );
        assert_eq!(report.rows[1].provider_txn_id, None);
        assert_eq!(report.rows[1].status, ObservedStatus::Failed);
        assert_eq!(report.rows[1].money.minor(), 500);
    }

    #[test]
    fn a_json_report_with_other_columns_is_read_through_a_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "r.json",
            r#"{"exported": [{"invoice": "A-1", "state": "OK", "sum": 1990}]}"#,
        );
        let mapping = Mapping {
            reference: "invoice".into(),
            provider_transaction_id: None,
            status: "state".into(),
            amount: "sum".into(),
            currency: None,
            default_currency: Some("USD".into()),
            amount_format: AmountFormat::Minor,
            statuses: [("ok".to_owned(), "succeeded".to_owned())].into(),
        };
        let report = read(&path, &mapping).unwrap();
        assert_eq!(
            report.rows[0].money,
            Money::from_minor(1990, Currency::Usd).unwrap()
        );
        assert_eq!(report.rows[0].status, ObservedStatus::Succeeded);
    }

    #[test]
    fn a_bad_row_refuses_the_whole_report_naming_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let header = "reference,status,amount,currency\n";
        let cases = [
            ("INV-1,paid,19.999,USD\n", "line 2", "\"amount\""),
            ("INV-1,weird,1.00,USD\n", "line 2", "\"weird\" is not known"),
            ("INV-1,paid,1.00,XXX\n", "line 2", "currency"),
            (
                "INV-1,paid,1.00,USD\nINV-1,paid,1.00,USD\n",
                "line 3",
                "appears again",
            ),
            ("INV-1,paid,1.00\n", "line 2", "4"),
            (",paid,1.00,USD\n", "line 2", "\"reference\" is empty"),
        ];
        for (rows, line, detail) in cases {
            let path = write(&dir, "bad.csv", &format!("{header}{rows}"));
            let err = read(&path, &Mapping::default()).unwrap_err().to_string();
            assert!(
                err.contains(line) && err.contains(detail),
                "{rows:?}: {err}"
            );
        }
        let path = write(&dir, "r.txt", "x");
        let err = read(&path, &Mapping::default()).unwrap_err().to_string();
        assert!(err.contains("use .csv, .json"), "{err}");
        let path = write(&dir, "r.csv", header);
        assert!(
            read(&path, &Mapping::default())
                .unwrap_err()
                .to_string()
                .contains("no rows")
        );
        let missing = dir.path().join("nope.csv");
        assert!(
            read(&missing, &Mapping::default())
                .unwrap_err()
                .to_string()
                .contains("cannot read it")
        );
    }

    #[test]
    fn a_mapping_naming_a_status_that_does_not_exist_is_refused() {
        let mapping = Mapping {
            statuses: [("ok".to_owned(), "great".to_owned())].into(),
            ..Mapping::default()
        };
        assert!(
            mapping
                .validate()
                .unwrap_err()
                .contains("\"great\" is not a status")
        );
    }
}
