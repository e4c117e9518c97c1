//! Helpers for the serverless test peer (owned by the issue that introduces it).
