//! Helpers for the moto test peer (owned by the issue that introduces it).
