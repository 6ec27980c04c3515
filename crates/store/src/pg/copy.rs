//! `paysettle ledger migrate --to postgres`: an SQLite ledger copied into an
//! empty PostgreSQL one, whole, in one transaction.
//!
//! The PostgreSQL schema is the SQLite ledger's in PostgreSQL's types, with
//! the same tables and columns, so the copy is row for row: every payment
//! keeps its id, every history row its id, every event its outbox position
//! and id, the schedule its due times and attempts, and the ledger its id
//! (an event feed cursor taken before the move still reads on after it).
//! Claims are not copied: they belong to the workers of the old ledger.

use deadpool_postgres::GenericClient;
use paysettle_sqlite::rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};

use super::PgLedger;
use crate::error::StoreError;
use crate::ledger::SqliteLedger;

/// The tables, in an order their foreign keys allow, and the identity
/// column whose sequence continues after the copied rows.
const TABLES: &[(&str, Option<&str>)] = &[
    ("meta", None),
    ("payments", Some("id")),
    ("history", Some("id")),
    ("outbox", Some("seq")),
    ("checks", None),
    ("rate_buckets", None),
];

/// Columns never copied: a claim belongs to a worker of the old ledger.
const NOT_COPIED: &[&str] = &["claimed_by", "claim_until_ms"];

/// Rows per INSERT statement.
const CHUNK: usize = 500;

/// How many rows of each table were copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyCounts {
    pub tables: Vec<(String, u64)>,
}

/// One SQLite value, read off the blocking thread.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    /// The value as the PostgreSQL column of type `ty` takes it.
    fn to_pg(
        &self,
        table: &str,
        column: &str,
        ty: &Type,
    ) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
        let wrong = || {
            StoreError::corrupt(
                "a value the PostgreSQL ledger cannot hold",
                format!("{table}.{column} ({ty}): {self:?}"),
            )
        };
        Ok(match (self, ty) {
            (Cell::Null, &Type::INT8) => Box::new(None::<i64>),
            (Cell::Null, &Type::BOOL) => Box::new(None::<bool>),
            (Cell::Null, &Type::FLOAT8) => Box::new(None::<f64>),
            (Cell::Null, &Type::TEXT) => Box::new(None::<String>),
            (Cell::Int(n), &Type::INT8) => Box::new(Some(*n)),
            (Cell::Int(n), &Type::BOOL) if *n == 0 || *n == 1 => Box::new(Some(*n == 1)),
            (Cell::Int(n), &Type::FLOAT8) => Box::new(Some(*n as f64)),
            (Cell::Real(x), &Type::FLOAT8) => Box::new(Some(*x)),
            (Cell::Text(t), &Type::TEXT) => Box::new(Some(t.clone())),
            _ => return Err(wrong()),
        })
    }
}

impl PgLedger {
    /// Copies `source` into this ledger, which must hold no payment,
    /// history, event or check (a non-empty target is refused, and nothing
    /// is written). All or nothing: one transaction.
    pub async fn copy_from_sqlite(&self, source: &SqliteLedger) -> Result<CopyCounts, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Nobody else writes while the copy runs (a worker that starts
        // meanwhile waits for the lock, then finds the ledger full).
        tx.batch_execute(
            "LOCK TABLE payments, history, outbox, checks, meta, rate_buckets IN EXCLUSIVE MODE",
        )
        .await?;
        for table in ["payments", "history", "outbox", "checks"] {
            let found: i64 = tx
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .try_get(0)?;
            if found > 0 {
                return Err(StoreError::Refused {
                    reason: format!(
                        "the PostgreSQL ledger {} is not empty ({found} row(s) in {table}); \
                         migrate copies into an empty one only",
                        self.shown()
                    ),
                });
            }
        }
        // Each table's columns and types, as PostgreSQL has them.
        let mut plan = Vec::new();
        for (table, _) in TABLES {
            let rows = tx
                .query(
                    "SELECT column_name, data_type FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    &[table],
                )
                .await?;
            let mut columns = Vec::new();
            for row in rows {
                let name: String = row.try_get(0)?;
                let data_type: String = row.try_get(1)?;
                if NOT_COPIED.contains(&name.as_str()) {
                    continue;
                }
                let ty = match data_type.as_str() {
                    "bigint" => Type::INT8,
                    "boolean" => Type::BOOL,
                    "double precision" => Type::FLOAT8,
                    "text" => Type::TEXT,
                    other => {
                        return Err(StoreError::corrupt(
                            "a PostgreSQL column type the copy does not know",
                            format!("{table}.{name}: {other}"),
                        ));
                    }
                };
                columns.push((name, ty));
            }
            plan.push(((*table).to_owned(), columns));
        }
        let names: Vec<(String, Vec<String>)> = plan
            .iter()
            .map(|(t, cols)| (t.clone(), cols.iter().map(|(n, _)| n.clone()).collect()))
            .collect();
        let dump = source.read(move |conn| dump(conn, &names)).await?;

        let mut counts = CopyCounts::default();
        for (((table, columns), rows), (_, identity)) in plan.iter().zip(dump).zip(TABLES) {
            if table == "meta" {
                // The ledger's own id and facts: the source's replace the
                // empty target's.
                tx.execute("DELETE FROM meta", &[]).await?;
            }
            for chunk in rows.chunks(CHUNK) {
                let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
                let mut tuples = Vec::new();
                for row in chunk {
                    let mut places = Vec::new();
                    for (cell, (name, ty)) in row.iter().zip(columns) {
                        values.push(cell.to_pg(table, name, ty)?);
                        places.push(format!("${}", values.len()));
                    }
                    tuples.push(format!("({})", places.join(", ")));
                }
                let list: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
                let sql = format!(
                    "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES {}",
                    list.join(", "),
                    tuples.join(", ")
                );
                let params: Vec<&(dyn ToSql + Sync)> = values
                    .iter()
                    .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(sql.as_str(), &params).await?;
            }
            if let Some(column) = identity {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                         coalesce(max({column}), 0) + 1, false) FROM {table}"
                    ),
                    &[],
                )
                .await?;
            }
            counts.tables.push((table.clone(), rows.len() as u64));
        }
        tx.commit().await?;
        Ok(counts)
    }
}

/// Every row of each table, the named columns in order, in one read
/// transaction (one snapshot of the file).
fn dump(
    conn: &paysettle_sqlite::rusqlite::Connection,
    tables: &[(String, Vec<String>)],
) -> Result<Vec<Vec<Vec<Cell>>>, StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut out = Vec::new();
        for (table, columns) in tables {
            let mut statement = conn.prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid",
                columns.join(", ")
            ))?;
            let mut rows = statement.query([])?;
            let mut cells = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(columns.len());
                for (i, column) in columns.iter().enumerate() {
                    values.push(match row.get_ref(i)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(n) => Cell::Int(n),
                        ValueRef::Real(x) => Cell::Real(x),
                        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(_) => {
                            return Err(StoreError::corrupt(
                                "a blob in the ledger",
                                format!("{table}.{column}"),
                            ));
                        }
                    });
                }
                cells.push(values);
            }
            out.push(cells);
        }
        Ok(out)
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}
