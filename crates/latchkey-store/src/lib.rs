//! The `Store` of `latchkey-core` on SQL databases: SQLite (the default, embedded) and
//! PostgreSQL (several server replicas sharing one database).
//!
//! Policy: one implementation of the domain operations, written once against sqlx's
//! `Any` driver in portable SQL (`$N` placeholders, `RETURNING`, `ON CONFLICT`). What
//! differs between the databases is confined to [`backend`]: connection setup, pool
//! shape and the migrations, which are kept per backend with the same meaning. Ordered
//! logs (audit chain, revocations) take their sequence numbers from a row of
//! `chain_heads` that each writer locks by updating it, so numbers follow commit order
//! with no gaps on either database.

mod audit;
mod backend;
mod console;
mod error;
mod leaks;
mod oauth;
mod policy;
mod rows;
mod sql;
mod trusts;
mod usage;
mod webhooks;

pub use backend::{
    Backend, BackupError, StoreOptions, backup_sqlite, connect, spawn_revocation_listener,
};
pub use sql::SqlStore;
