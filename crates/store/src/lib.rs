//! The SQLite ledger (placeholder until the "Ledger" issue lands).
