//! podcred webhook: a drop-in replacement for `amazon-eks-pod-identity-webhook`.
//!
//! Layout (follow the names): `config` (flags → validated config), `identity` (what a pod's service
//! account resolves to), `mutate` (pure: pod JSON → JSON Patch), `admission` (AdmissionReview envelope),
//! `inject` (offline `webhook inject`), `cache` (ServiceAccount/ConfigMap cache), `container_credentials`
//! (EKS Pod Identity config file), `metrics`, `server` (HTTPS /mutate, /healthz, metrics port).

pub mod admission;
pub mod cache;
pub mod config;
pub mod container_credentials;
pub mod go;
pub mod identity;
pub mod inject;
pub mod metrics;
pub mod mutate;
pub mod server;
pub mod sidecar;
