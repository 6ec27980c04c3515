//! The batch's journal: a JSON-lines file that makes an interrupted batch
//! resumable without asking any provider about a payment twice.
//!
//! The first line holds the [`Batch`] (so `--resume` repeats the same
//! selection and the same "now"), then one line per judged payment, one per
//! correction applied, and a last line when the batch finished. Each line is
//! handed to the operating system as soon as it is written, so a Ctrl-C or
//! a killed process loses nothing already judged; a torn last line (a power
//! cut mid-write) is ignored on resume.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::OpsError;
use crate::reconcile::{Batch, Finding};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Batch { batch: Box<Batch> },
    Finding { finding: Box<Finding> },
    Applied { key: String, outcome: String },
    Done { at: Timestamp },
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    findings: Vec<Finding>,
    done: BTreeSet<String>,
    applied: HashMap<String, String>,
}

impl Journal {
    /// Starts the journal of a new batch at `path`. An unfinished batch's
    /// journal there is kept (resume it) unless `fresh`.
    pub fn start(path: &Path, batch: &Batch, fresh: bool) -> Result<Journal, OpsError> {
        if !fresh && path.exists() && !Self::read(path)?.finished {
            return Err(OpsError::Invalid(format!(
                "an interrupted batch's journal is at {}: resume it with --resume, or start afresh with --fresh",
                path.display()
            )));
        }
        let file = File::create(path).map_err(|e| journal_error(path, &e))?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            findings: Vec::new(),
            done: BTreeSet::new(),
            applied: HashMap::new(),
        };
        journal.write(&Line::Batch {
            batch: Box::new(batch.clone()),
        })?;
        Ok(journal)
    }

    /// Reopens the unfinished batch at `path`: its batch, what it judged and
    /// what it applied.
    pub fn resume(path: &Path) -> Result<(Journal, Batch), OpsError> {
        if !path.exists() {
            return Err(OpsError::Invalid(format!(
                "there is no batch to resume: {} does not exist",
                path.display()
            )));
        }
        let read = Self::read(path)?;
        if read.finished {
            return Err(OpsError::Invalid(format!(
                "the batch in {} has finished; there is nothing to resume",
                path.display()
            )));
        }
        let batch = read.batch.ok_or_else(|| OpsError::Journal {
            path: path.display().to_string(),
            message: "it does not start with a batch".into(),
        })?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| journal_error(path, &e))?;
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            done: read.findings.iter().map(|f| f.key.clone()).collect(),
            findings: read.findings,
            applied: read.applied,
        };
        Ok((journal, batch))
    }

    /// The findings of an earlier run of this batch.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The keys of the payments already judged.
    pub fn done(&self) -> &BTreeSet<String> {
        &self.done
    }

    /// What applying the correction of `key` did, if it was applied.
    pub fn applied(&self, key: &str) -> Option<&str> {
        self.applied.get(key).map(String::as_str)
    }

    /// Remembers a judged payment.
    pub fn record(&mut self, finding: &Finding) -> Result<(), OpsError> {
        self.write(&Line::Finding {
            finding: Box::new(finding.clone()),
        })
    }

    /// Remembers an applied correction.
    pub fn record_applied(&mut self, key: &str, outcome: &str) -> Result<(), OpsError> {
        self.applied.insert(key.to_owned(), outcome.to_owned());
        self.write(&Line::Applied {
            key: key.to_owned(),
            outcome: outcome.to_owned(),
        })
    }

    /// Marks the batch finished: it can no longer be resumed.
    pub fn finish(&mut self) -> Result<(), OpsError> {
        self.write(&Line::Done {
            at: Timestamp::now(),
        })
    }

    fn write(&mut self, line: &Line) -> Result<(), OpsError> {
        let mut text = serde_json::to_string(line).map_err(|e| OpsError::Journal {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| journal_error(&self.path, &e))
    }

    fn read(path: &Path) -> Result<Read, OpsError> {
        let file = File::open(path).map_err(|e| journal_error(path, &e))?;
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|e| journal_error(path, &e))?;
        let mut read = Read::default();
        let last = lines.len();
        for (n, text) in lines.into_iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            let line = match serde_json::from_str::<Line>(&text) {
                Ok(line) => line,
                // The last line may be torn by a crash mid-write.
                Err(_) if n + 1 == last => break,
                Err(e) => {
                    return Err(OpsError::Journal {
                        path: path.display().to_string(),
                        message: format!("line {} cannot be read: {e}", n + 1),
                    });
                }
            };
            match line {
                Line::Batch { batch } => read.batch = Some(*batch),
                Line::Finding { finding } => read.findings.push(*finding),
                Line::Applied { key, outcome } => {
                    read.applied.insert(key, outcome);
                }
                Line::Done { .. } => read.finished = true,
            }
        }
        // A payment judged in two runs (it failed a check, then succeeded)
        // keeps its last verdict only.
        let mut seen = BTreeSet::new();
        read.findings.reverse();
        read.findings.retain(|f| seen.insert(f.key.clone()));
        read.findings.reverse();
        Ok(read)
    }
}

#[derive(Debug, Default)]
struct Read {
    batch: Option<Batch>,
    findings: Vec<Finding>,
    applied: HashMap<String, String>,
    finished: bool,
}

fn journal_error(path: &Path, error: &std::io::Error) -> OpsError {
    OpsError::Journal {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}
