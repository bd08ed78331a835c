//! What the server and the gateway share to be operated (docs/OPERATIONS.md): request
//! ids ([`request_id`]) and metrics ([`metrics`]): lock-free cells that requests bump,
//! read and rendered in the Prometheus text format only when scraped.

pub mod metrics;
pub mod request_id;
