//! The problem report every compilation step writes to: errors reject the configuration (file mode) or the
//! object they name (cluster mode), warnings do not. Each entry is a [`Problem`]: the object, the field, a
//! Gateway API reason and the message; [`Problem::line`] is the one-line form the logs and `ConfigError` show
//! (`HTTPRoute ns/name: spec.rules[0]...: message`).
//!
//! Call sites that write a plain line (`report.error(format!("{what}: {field}: ..."))`) keep working: the line
//! is split back into object, field and message by [`Problem::parse`], and the reason is derived from the
//! field ([`Reason::for_field`]), so an unsupported `filters` entry becomes `UnsupportedValue` without the
//! call site knowing about status.

use std::fmt;

/// The Gateway API condition reasons a problem can carry (the route/listener reasons of
/// <https://gateway-api.sigs.k8s.io/reference/spec/>), plus `Invalid` for everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A field's value is wrong or not implemented (HTTPRoute `Accepted=False/UnsupportedValue`).
    UnsupportedValue,
    /// A `parentRef` names no listener of its Gateway (sectionName/port).
    NoMatchingParent,
    /// The listeners' `allowedRoutes` do not admit the route.
    NotAllowedByListeners,
    /// No hostname of the route intersects the listeners' hostnames.
    NoMatchingListenerHostname,
    /// A `backendRef` names a Backend that does not exist or is itself invalid.
    BackendNotFound,
    /// A cross-namespace `backendRef` without a ReferenceGrant that permits it.
    RefNotPermitted,
    /// A `backendRef` to a kind podcred does not serve.
    InvalidKind,
    /// Anything else (an object's own field is wrong).
    Invalid,
}

impl Reason {
    /// Gateway API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::InvalidKind => "InvalidKind",
            Reason::Invalid => "Invalid",
        }
    }

    /// The reason for a plain problem line about `field`: HTTPRoute filters podcred does not apply are
    /// `UnsupportedValue` (Gateway API's reason for them), as is every other error; the caller may refine.
    pub fn for_field(field: &str) -> Reason {
        if field.contains("filters") {
            Reason::UnsupportedValue
        } else {
            Reason::Invalid
        }
    }

    /// True for problems with a `backendRef` (a route stays accepted; the reference answers 500).
    pub fn is_unresolved_ref(self) -> bool {
        matches!(
            self,
            Reason::BackendNotFound | Reason::RefNotPermitted | Reason::InvalidKind
        )
    }

    /// True for problems with a `parentRef` (the route is not attached to that parent).
    pub fn is_attachment(self) -> bool {
        matches!(
            self,
            Reason::NoMatchingParent
                | Reason::NotAllowedByListeners
                | Reason::NoMatchingListenerHostname
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of the compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `Gateway`, `HTTPRoute`, `Backend`, `Secret`, … (empty when the problem names no object, e.g. a file).
    pub kind: String,
    /// `namespace/name` (or the file and document when `kind` is empty).
    pub object: String,
    /// The field path (`spec.rules[0].backendRefs[0].name`); empty when the whole object is meant.
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

/// The object kinds a problem line may start with.
const KINDS: [&str; 6] = [
    "Gateway",
    "HTTPRoute",
    "Backend",
    "Secret",
    "GatewayClass",
    "ReferenceGrant",
];

impl Problem {
    /// A problem about `kind namespace/name`.
    pub fn new(
        kind: &str,
        object: &str,
        field: &str,
        reason: Reason,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            kind: kind.to_string(),
            object: object.to_string(),
            field: field.to_string(),
            reason,
            message: message.into(),
        }
    }

    /// Splits a plain line `Kind ns/name: field: message` (or `Kind ns/name: message`) back into its parts;
    /// a line naming no object keeps the whole text as its message.
    pub fn parse(line: &str) -> Problem {
        let mut problem = Problem::new("", "", "", Reason::Invalid, line);
        let Some((head, rest)) = line.split_once(": ") else {
            return problem;
        };
        let Some((kind, object)) = head.split_once(' ') else {
            return problem;
        };
        if !KINDS.contains(&kind) || object.contains(' ') {
            return problem;
        }
        problem.kind = kind.to_string();
        problem.object = object.to_string();
        // A field path has no spaces (`spec.rules[0].matches[1].path.value`); a message usually has.
        match rest.split_once(": ") {
            Some((field, message)) if !field.contains(' ') && !field.is_empty() => {
                problem.field = field.to_string();
                problem.message = message.to_string();
            }
            _ => problem.message = rest.to_string(),
        }
        problem.reason = Reason::for_field(&problem.field);
        problem
    }

    /// True when the problem is about `kind` `object`.
    pub fn is_about(&self, kind: &str, object: &str) -> bool {
        self.kind == kind && self.object == object
    }

    /// The one-line form: `Kind ns/name: field: message`.
    pub fn line(&self) -> String {
        let mut line = String::new();
        if !self.kind.is_empty() {
            line.push_str(&self.kind);
            line.push(' ');
        }
        line.push_str(&self.object);
        if !self.object.is_empty() || !self.kind.is_empty() {
            line.push_str(": ");
        }
        if !self.field.is_empty() {
            line.push_str(&self.field);
            line.push_str(": ");
        }
        line.push_str(&self.message);
        line
    }

    /// `field: message` (what a status condition's message holds; the object is the status' own).
    pub fn field_message(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

#[derive(Debug, Default)]
pub(super) struct Report {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    /// An error given as a plain line (see [`Problem::parse`]).
    pub fn error(&mut self, line: String) {
        self.errors.push(Problem::parse(&line));
    }

    /// A warning given as a plain line.
    pub fn warn(&mut self, line: String) {
        self.warnings.push(Problem::parse(&line));
    }

    /// An error with its object, field and reason spelled out.
    pub fn problem(&mut self, problem: Problem) {
        self.errors.push(problem);
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Whether any error from index `since` on is about `kind` `object`.
    pub fn has_errors_about(&self, since: usize, kind: &str, object: &str) -> bool {
        self.errors[since..]
            .iter()
            .any(|p| p.is_about(kind, object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_split_into_object_field_and_message_and_back() {
        let cases = [
            (
                "HTTPRoute ns/r: spec.rules[0].filters[1]: RequestMirror is not supported",
                (
                    "HTTPRoute",
                    "ns/r",
                    "spec.rules[0].filters[1]",
                    Reason::UnsupportedValue,
                ),
            ),
            (
                "Backend ns/b: spec.aws.lambda.functionName: missing",
                (
                    "Backend",
                    "ns/b",
                    "spec.aws.lambda.functionName",
                    Reason::Invalid,
                ),
            ),
            (
                "HTTPRoute ns/r: the route matches nothing",
                ("HTTPRoute", "ns/r", "", Reason::Invalid),
            ),
            (
                "routes.yaml: document 2: not valid YAML: x",
                ("", "", "", Reason::Invalid),
            ),
            (
                "no HTTPRoute found: every request will get 404",
                ("", "", "", Reason::Invalid),
            ),
        ];
        for (line, (kind, object, field, reason)) in cases {
            let problem = Problem::parse(line);
            assert_eq!(
                (
                    problem.kind.as_str(),
                    problem.object.as_str(),
                    problem.field.as_str(),
                    problem.reason
                ),
                (kind, object, field, reason),
                "{line}"
            );
            assert_eq!(problem.line(), line);
        }
    }
}
