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
    /// Where the objects come from; decides how strict the compilation is (see `config::Findings`).
    pub source: Source,
}

/// Where a configuration's objects come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// YAML files: any error rejects the whole configuration (a typo fails the load, and the last good
    /// configuration keeps serving on reload); ReferenceGrants and `allowedRoutes.namespaces` are not
    /// enforced (the files hold no Namespaces, and one operator writes them all).
    #[default]
    Files,
    /// The API server: errors reject only the objects they are about (status says why), ReferenceGrants and
    /// `allowedRoutes` are enforced.
    Cluster,
}
