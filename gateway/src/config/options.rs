//! What a compilation needs besides the objects.

use std::path::PathBuf;
use std::time::Duration;

/// Inputs that are not part of the YAML.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding mounted Secrets: `<dir>/<secret name>/{accessKey,secretKey,sessionToken}`.
    pub secrets_dir: Option<PathBuf>,
    /// Global Lambda endpoint override (`AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`), used by Backends
    /// without `endpointURL`.
    pub endpoint_override: Option<String>,
    pub default_timeout: Option<Duration>,
}
