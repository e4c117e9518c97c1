//! credproxy: reads a web-identity token file, calls STS `AssumeRoleWithWebIdentity`, caches and
//! refreshes the credentials, and serves them on a local container-credentials endpoint.
//!
//! Layout: pure cores ([`schedule`], [`credentials`], [`config`]), the refresher ([`role`]) behind
//! the [`exchange::Exchanger`] seam, and thin I/O layers ([`server`], [`run`]).

pub mod auth_token;
pub mod config;
pub mod credentials;
pub mod exchange;
pub mod metrics;
pub mod role;
pub mod run;
pub mod schedule;
pub mod server;
