//! latchkey's domain: identifiers, token formats and their checksums, secret hashing,
//! permissions and the rules for granting them, the token model, the audit chain and the
//! `Store` trait that the storage backends implement.
//!
//! Policy: nothing here performs I/O, reads the clock or draws randomness on its own.
//! Time arrives as a [`Timestamp`] argument and randomness as a `&dyn SecureRandom`, so
//! every rule is testable with pinned inputs. The [`clock`] module defines where the
//! crates above take that `Timestamp` from; its [`SystemClock`] is the only reader of
//! the wall clock, and no rule here calls it.

pub mod audit;
pub mod bearer;
pub mod cidr;
pub mod clock;
pub mod country;
pub mod encoding;
pub mod forwarded;
pub mod ids;
pub mod jwt;
pub mod network;
pub mod permission;
pub mod policy;
pub mod secret;
pub mod store;
pub mod timestamp;
pub mod token;
pub mod trust;
pub mod usable;
pub mod usage;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{FieldError, RoleName, TenantId, TokenId, UserId};
pub use permission::{Permission, PermissionSet};
pub use timestamp::Timestamp;

/// The randomness source every generator in this crate takes.
pub use aws_lc_rs::rand::SecureRandom;
