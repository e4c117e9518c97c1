//! Gateway API `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`): which kinds in other namespaces may
//! refer to objects in the grant's namespace. Read in cluster mode only; file mode serves cross-namespace
//! `backendRefs` without one (the files are one operator's, one trust domain).

use serde::Deserialize;

use super::meta::ObjectMeta;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<ReferenceGrantSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    /// None: every object of the kind in the grant's namespace.
    pub name: Option<String>,
}

/// A reference from an object of `from_kind` (`from_group`) in `from_namespace` to the object
/// `to_group`/`to_kind` `to_namespace/to_name`.
#[derive(Debug, Clone, Copy)]
pub struct CrossReference<'a> {
    pub from_group: &'a str,
    pub from_kind: &'a str,
    pub from_namespace: &'a str,
    pub to_group: &'a str,
    pub to_kind: &'a str,
    pub to_namespace: &'a str,
    pub to_name: &'a str,
}

/// Whether a reference is allowed: same namespace, or a grant in the target's namespace lists the source
/// (group, kind, namespace) in `from` and the target (group, kind, and name if given) in `to`.
pub fn permits(grants: &[ReferenceGrantObject], reference: &CrossReference<'_>) -> bool {
    if reference.from_namespace == reference.to_namespace {
        return true;
    }
    grants
        .iter()
        .filter(|g| g.metadata.namespace() == reference.to_namespace)
        .filter_map(|g| g.spec.as_ref())
        .any(|spec| {
            spec.from.iter().any(|f| {
                f.group == reference.from_group
                    && f.kind == reference.from_kind
                    && f.namespace == reference.from_namespace
            }) && spec.to.iter().any(|t| {
                t.group == reference.to_group
                    && t.kind == reference.to_kind
                    && t.name.as_deref().is_none_or(|n| n == reference.to_name)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(namespace: &str, from_ns: &str, to_name: Option<&str>) -> ReferenceGrantObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "namespace": namespace},
            "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": from_ns}],
                "to": [{"group": "gateway.kgateway.dev", "kind": "Backend", "name": to_name}],
            }
        }))
        .expect("grant")
    }

    #[test]
    fn a_grant_in_the_targets_namespace_permits_exactly_what_it_lists() {
        let reference = CrossReference {
            from_group: "gateway.networking.k8s.io",
            from_kind: "HTTPRoute",
            from_namespace: "apps",
            to_group: "gateway.kgateway.dev",
            to_kind: "Backend",
            to_namespace: "lambdas",
            to_name: "echo",
        };
        let same_ns = CrossReference {
            to_namespace: "apps",
            ..reference
        };
        assert!(permits(&[], &same_ns), "same namespace needs no grant");
        assert!(!permits(&[], &reference));
        assert!(permits(&[grant("lambdas", "apps", None)], &reference));
        assert!(permits(
            &[grant("lambdas", "apps", Some("echo"))],
            &reference
        ));
        assert!(!permits(
            &[grant("lambdas", "apps", Some("other"))],
            &reference
        ));
        assert!(!permits(&[grant("lambdas", "elsewhere", None)], &reference));
        assert!(
            !permits(&[grant("apps", "apps", None)], &reference),
            "a grant in the route's namespace permits nothing"
        );
    }
}
