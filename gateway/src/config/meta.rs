//! The part of a Kubernetes object every kind shares: `metadata`, and the `namespace/name` id problems name.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The namespace of an object that names none (kubectl's default).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `metadata`, the fields podcred reads. Other metadata fields (uid, labels, managedFields, …) are accepted
/// silently: they belong to Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ObjectMeta {
    /// The namespace, `default` when none is given.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `namespace/name`, how problems and references name the object.
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            self.namespace(),
            self.name.as_deref().unwrap_or("")
        )
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}
