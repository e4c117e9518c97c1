//! The gateway's domain types. They import nothing from the rest of the crate: the config compiler builds them,
//! the request pipeline reads them.
//!
//! - [`backend`]: a Lambda `Backend` as served (function, endpoint, payload modes, credentials source).
//! - [`endpoint`]: partition-aware Lambda endpoints and `endpointURL` overrides.
//! - [`filters`]: HTTPRoute filters (header modifiers, URL rewrite, redirect) and how they change a request
//!   and its reply.
//! - [`reply`]: the client's reply, Lambda's answer, and the outcome label every request ends with.

pub mod backend;
pub mod endpoint;
pub mod filters;
pub mod reply;

pub use backend::{
    AuthSource, Backend, InvocationMode, RequestEvent, ResponseMode, StaticKeys,
    ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT,
};
pub use endpoint::{Endpoint, EndpointError, Partition};
pub use filters::{
    Filters, HeaderModifier, PathModifier, Redirect, RequestFilter, Scheme, UrlRewrite,
};
pub use reply::{ClientReply, FunctionRef, GatewayError, LambdaReply, Outcome};
