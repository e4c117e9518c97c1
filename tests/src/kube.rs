//! Helpers for the kube test peer (owned by the issue that introduces it).
