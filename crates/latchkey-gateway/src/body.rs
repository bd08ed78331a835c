//! The bodies the gateway sends: one boxed type for requests upstream and answers to
//! clients alike, whether the gateway made them itself or streams them through.

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::error::Error as StdError;

/// Any error a body may carry.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The body type of every request and response the gateway sends.
pub(crate) type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`, in one frame.
pub(crate) fn full(bytes: impl Into<Bytes>) -> GatewayBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
