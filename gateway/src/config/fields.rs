//! Typed decoding of one object, and what to say about the fields it had that its type does not read.
//!
//! Contract:
//! - [`decode`] deserializes any self-describing source (a `serde_yaml_ng::Value` from the files, a
//!   `serde_json::Value` from the API server) into a typed object. A type error comes back with the path of the
//!   failing field (`serde_path_to_error`); every field the type did not read comes back as a path too
//!   (`serde_ignored`). Decoding stops at the first type error of an object.
//! - [`Schema::of`] lists, for every struct position in a type (`spec.rules[].matches[]`), the fields that
//!   struct reads. The lists come from the serde derives themselves: a tracing deserializer walks the type once
//!   and records the `fields` each derived struct asks for. There is no second, hand-written list.
//! - [`Schema::classify`] turns each unread field into a [`Finding`]: a field one small edit (or only letter
//!   case) away from a field the struct reads is a typo (an error: it would otherwise be silently ignored);
//!   a field the struct lists but deliberately does not interpret (`serde::de::IgnoredAny`) is accepted;
//!   any other field is unsupported (a warning), except at the top level and under `metadata`, which belong
//!   to Kubernetes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::value::{Error as TraceError, StrDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// Where a field is inside an object, rendered as `spec.rules[0].backendRefs[1].weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    fn from_ignored(path: &serde_ignored::Path<'_>) -> FieldPath {
        fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
            use serde_ignored::Path;
            match path {
                Path::Root => {}
                Path::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Segment::Index(*index));
                }
                Path::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Segment::Field(key.clone()));
                }
                Path::Some { parent }
                | Path::NewtypeStruct { parent }
                | Path::NewtypeVariant { parent } => walk(parent, out),
            }
        }
        let mut segments = Vec::new();
        walk(path, &mut segments);
        FieldPath(segments)
    }

    fn from_tracked(path: &serde_path_to_error::Path) -> FieldPath {
        use serde_path_to_error::Segment as Tracked;
        FieldPath(
            path.iter()
                .filter_map(|segment| match segment {
                    Tracked::Seq { index } => Some(Segment::Index(*index)),
                    Tracked::Map { key } => Some(Segment::Field(key.clone())),
                    Tracked::Enum { variant } => Some(Segment::Field(variant.clone())),
                    Tracked::Unknown => None,
                })
                .collect(),
        )
    }

    /// The first field name (`data` for `data.secretKey`).
    pub fn first_field(&self) -> Option<&str> {
        match self.0.first() {
            Some(Segment::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// The last step, when it is a field name.
    fn last_field(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// The path of the struct holding the last field, with list indices erased: `spec.rules[].matches[]`.
    fn parent_pattern(&self) -> String {
        let parent = &self.0[..self.0.len().saturating_sub(1)];
        pattern(parent)
    }
}

fn pattern(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Index(_) => out.push_str("[]"),
        }
    }
    out
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            match segment {
                Segment::Field(name) if first => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A field whose value has the wrong type (or shape), and the deserializer's message.
#[derive(Debug, Clone)]
pub struct TypeError {
    pub path: FieldPath,
    pub message: String,
}

/// The outcome of decoding one object.
#[derive(Debug)]
pub struct Decoded<T> {
    pub result: Result<T, TypeError>,
    /// Every field present in the input that the type did not read, in input order.
    pub unread: Vec<FieldPath>,
}

/// Deserializes `T`, recording the path of a type error and of every unread field.
pub fn decode<'de, T, D>(deserializer: D) -> Decoded<T>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: fmt::Display,
{
    let mut unread = Vec::new();
    let result = {
        let mut record =
            |path: serde_ignored::Path<'_>| unread.push(FieldPath::from_ignored(&path));
        let tracking = serde_ignored::Deserializer::new(deserializer, &mut record);
        serde_path_to_error::deserialize(tracking).map_err(|error| TypeError {
            path: FieldPath::from_tracked(error.path()),
            message: plain(&error.inner().to_string()),
        })
    };
    Decoded { result, unread }
}

/// Says Rust's integer types the way a manifest author reads them (`expected i64` → `expected an integer`).
fn plain(message: &str) -> String {
    let mut out = message.to_string();
    for rust in ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"] {
        if let Some(stripped) = out.strip_suffix(&format!("expected {rust}")) {
            out = format!("{stripped}expected an integer");
        }
    }
    out
}

/// What to say about one unread field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Close to a field the struct reads: almost certainly a typo, and ignoring it would change behaviour.
    DidYouMean {
        path: FieldPath,
        known: &'static str,
    },
    /// Not read by podcred (a Gateway API / kgateway field it does not implement, or a stray field).
    Unsupported { path: FieldPath },
}

impl Finding {
    /// The problem line's text after `Kind ns/name: `.
    pub fn message(&self) -> String {
        match self {
            Finding::DidYouMean { path, known } => {
                format!("{path}: unknown field; did you mean {known}?")
            }
            Finding::Unsupported { path } => {
                format!("{path} is not supported by podcred's gateway (ignored)")
            }
        }
    }
}

/// The fields each struct of a type reads, by struct position.
#[derive(Debug, Default)]
pub struct Schema {
    /// `""` for the object itself, `spec.aws.lambda`, `spec.rules[].matches[]`, ….
    structs: HashMap<String, &'static [&'static str]>,
}

impl Schema {
    /// Walks `T`'s derived `Deserialize` once and records every struct's fields.
    pub fn of<T: de::DeserializeOwned>() -> Schema {
        let structs = RefCell::new(HashMap::new());
        let tracer = Tracer {
            path: String::new(),
            structs: &structs,
        };
        if let Err(e) = T::deserialize(tracer) {
            // Only a type the tracer cannot walk (a tuple, a data-carrying enum) gets here; the schema tests
            // trace every object type, so this is a programming error caught by `cargo test`.
            panic!(
                "cannot trace the fields of {}: {e}",
                std::any::type_name::<T>()
            );
        }
        Schema {
            structs: structs.into_inner(),
        }
    }

    /// The fields of the struct at `pattern` (`spec.aws.lambda`), if there is a struct there.
    pub fn fields_at(&self, pattern: &str) -> Option<&'static [&'static str]> {
        self.structs.get(pattern).copied()
    }

    /// Classifies unread fields; `None` for a field that is fine to ignore silently.
    pub fn classify(&self, path: &FieldPath) -> Option<Finding> {
        let parent = path.parent_pattern();
        let known = self.fields_at(&parent).unwrap_or(&[]);
        if let Some(name) = path.last_field() {
            if known.contains(&name) {
                // Listed by the type but read as `IgnoredAny`: accepted, not interpreted.
                return None;
            }
            if let Some(suggestion) = closest(name, known) {
                return Some(Finding::DidYouMean {
                    path: path.clone(),
                    known: suggestion,
                });
            }
        }
        // The top level (`status`, …) and `metadata` (labels, uid, managedFields, …) belong to Kubernetes.
        if parent.is_empty() || parent == "metadata" {
            return None;
        }
        Some(Finding::Unsupported { path: path.clone() })
    }
}

/// The known field `name` is most likely a typo of: same letters in another case, or one edit away
/// (two for long names). Short names (`ai`, `gcp`) get no guess, so real sibling fields are not mistaken.
fn closest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .filter_map(|candidate| {
            if candidate.eq_ignore_ascii_case(name) {
                return Some((0, *candidate));
            }
            let distance = strsim::damerau_levenshtein(&lower, &candidate.to_ascii_lowercase());
            let shortest = name.len().min(candidate.len());
            let allowed = match shortest {
                0..=3 => 0,
                4..=7 => 1,
                _ => 2,
            };
            (distance <= allowed).then_some((distance, *candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// A deserializer with no data: it answers every request with a placeholder value, descends into every
/// struct field, option and list element, and records each struct's `fields` under its position.
struct Tracer<'a> {
    path: String,
    structs: &'a RefCell<HashMap<String, &'static [&'static str]>>,
}

impl<'a> Tracer<'a> {
    fn child(&self, step: &str) -> Tracer<'a> {
        let path = match (self.path.is_empty(), step) {
            (_, "[]") => format!("{}[]", self.path),
            (true, _) => step.to_string(),
            (false, _) => format!("{}.{step}", self.path),
        };
        Tracer {
            path,
            structs: self.structs,
        }
    }
}

macro_rules! placeholder {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            visitor.$visit($value)
        })*
    };
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    placeholder! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_seq(OneElement {
            element: Some(self.child("[]")),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, TraceError> {
        Err(de::Error::custom("tuples are not traced"))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, TraceError> {
        Err(de::Error::custom("tuple structs are not traced"))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        // A map (labels, annotations, Secret data) accepts any key: nothing to record, nothing to descend into.
        visitor.visit_map(EveryField {
            fields: &[],
            next: 0,
            parent: self,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.structs.borrow_mut().insert(self.path.clone(), fields);
        visitor.visit_map(EveryField {
            fields,
            next: 0,
            parent: self,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        // Unit variants only: the first one stands for all.
        let first: StrDeserializer<'_, TraceError> =
            variants.first().copied().unwrap_or("").into_deserializer();
        visitor.visit_enum(first)
    }
}

struct OneElement<'a> {
    element: Option<Tracer<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        match self.element.take() {
            Some(tracer) => seed.deserialize(tracer).map(Some),
            None => Ok(None),
        }
    }
}

struct EveryField<'a> {
    fields: &'static [&'static str],
    next: usize,
    parent: Tracer<'a>,
}

impl<'de> MapAccess<'de> for EveryField<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.get(self.next) {
            Some(field) => {
                let key: StrDeserializer<'_, TraceError> = field.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.parent.child(field))
    }
}
