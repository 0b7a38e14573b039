//! YAML documents with positions: parse a file into JSON values (what the schema validates)
//! plus an index from JSON pointer to the `line:column` of each key and value, so that schema
//! errors point at the offending text.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

/// Longest string value accepted: comments and owners are short; megabytes are an attack or a
/// mistake.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// More nesting than any incident file needs; also keeps recursion shallow.
const MAX_DEPTH: usize = 32;

/// Longest list and largest mapping accepted: an incident has seven fields and a few dozen
/// tags or comments; a million items is an attack, refused before it costs seconds.
pub const MAX_ITEMS: usize = 10_000;

/// A file holds at most this many documents.
pub const MAX_DOCUMENTS: usize = 100_000;

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl From<Location> for Pos {
    fn from(location: Location) -> Self {
        Pos {
            line: location.line(),
            column: location.column(),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where a value sits in the file: its key (for mapping entries) and the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// One YAML document converted to JSON, with the positions of everything in it.
#[derive(Debug, Clone)]
pub struct YamlDocument {
    pub value: Value,
    /// Position of the document's root node.
    pub start: Pos,
    places: HashMap<String, Place>,
}

impl YamlDocument {
    /// The place of the value at a JSON pointer (`""` is the root, `/tags/1` the second tag).
    pub fn place(&self, pointer: &str) -> Option<Place> {
        if pointer.is_empty() {
            return Some(Place {
                key: None,
                value: self.start,
            });
        }
        self.places.get(pointer).copied()
    }

    /// The position to report for a JSON pointer: the value's, else its nearest ancestor's.
    pub fn value_pos(&self, pointer: &str) -> Pos {
        let mut pointer = pointer;
        loop {
            if let Some(place) = self.place(pointer) {
                return place.value;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return self.start,
            }
        }
    }

    /// The position of a mapping key, falling back to its value's position.
    pub fn key_pos(&self, pointer: &str) -> Pos {
        match self.place(pointer) {
            Some(Place { key: Some(key), .. }) => key,
            _ => self.value_pos(pointer),
        }
    }
}

/// A YAML error located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses every document of a file. Empty documents are skipped. The whole file fails on the
/// first syntax error: YAML offers no reliable way to resynchronise after one.
pub fn parse_documents(text: &str) -> Result<Vec<YamlDocument>, YamlError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 2_000_000,
            max_total_scalar_bytes: 32 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 8,
        },
        strict_booleans: true,
    };
    let nodes: Vec<Spanned<Node>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|error| {
            // Errors our own visitor raises carry their place in the message; saphyr cannot
            // locate them.
            let pos = error
                .location()
                .map(Pos::from)
                .filter(|pos| pos.line > 0)
                .or_else(|| location_in(&error.without_snippet().to_string()))
                .unwrap_or(Pos { line: 1, column: 1 });
            YamlError {
                pos,
                message: error_message(&error),
            }
        })?;
    nodes.into_iter().map(convert_document).collect()
}

/// saphyr's message without its own location prefix or snippet: we print positions ourselves.
fn error_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    let stripped = strip_locations(first);
    let message = stripped.trim_start_matches("error: ");
    if message.starts_with("budget breached") || message.contains("limit exceeded") {
        let detail = message.split(" (defined").next().unwrap_or(message);
        format!(
            "{detail}: the file goes beyond what an incident file needs (YAML aliases, nesting or size); write the values out plainly"
        )
    } else if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        format!("duplicate key `{key}`: each field may appear only once per incident")
    } else {
        message.to_string()
    }
}

/// The first " at line L, column C" in a message: where an error raised by our own visitor
/// (which saphyr cannot locate) happened.
fn location_in(message: &str) -> Option<Pos> {
    let tail = &message[message.find(" at line ")? + " at line ".len()..];
    let (line, tail) = tail.split_once(", column ")?;
    let column: String = tail.chars().take_while(char::is_ascii_digit).collect();
    Some(Pos {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// Removes saphyr's " at line L, column C" fragments: the position is already in our prefix.
fn strip_locations(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at line ".len()..];
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let tail = &tail[digits..];
        rest = match tail.strip_prefix(", column ") {
            Some(col) => &col[col.find(|c: char| !c.is_ascii_digit()).unwrap_or(col.len())..],
            None => tail,
        };
    }
    out.push_str(rest);
    out
}

fn convert_document(node: Spanned<Node>) -> Result<YamlDocument, YamlError> {
    let start = Pos::from(node.referenced);
    let mut places = HashMap::new();
    let value = convert(node.value, String::new(), &mut places)?;
    Ok(YamlDocument {
        value,
        start,
        places,
    })
}

fn convert(
    node: Node,
    pointer: String,
    places: &mut HashMap<String, Place>,
) -> Result<Value, YamlError> {
    Ok(match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        Node::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let child = format!("{pointer}/{index}");
                places.insert(
                    child.clone(),
                    Place {
                        key: None,
                        value: item.referenced.into(),
                    },
                );
                out.push(convert(item.value, child, places)?);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::with_capacity(entries.len());
            for (key, value) in entries {
                let name = match key.value {
                    Node::Str(s) => s,
                    Node::Int(i) => i.to_string(),
                    Node::UInt(u) => u.to_string(),
                    Node::Bool(b) => b.to_string(),
                    Node::Float(f) => f.to_string(),
                    Node::Null => "null".to_string(),
                    Node::Seq(_) | Node::Map(_) => {
                        return Err(YamlError {
                            pos: key.referenced.into(),
                            message: "a mapping key must be a plain name, not a list or mapping"
                                .into(),
                        });
                    }
                };
                let child = format!("{pointer}/{}", escape_pointer(&name));
                places.insert(
                    child.clone(),
                    Place {
                        key: Some(key.referenced.into()),
                        value: value.referenced.into(),
                    },
                );
                let converted = convert(value.value, child, places)?;
                out.insert(name, converted);
            }
            Value::Object(out)
        }
    })
}

/// JSON pointer escaping (RFC 6901), as the validator reports instance paths.
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A YAML node as the parser delivers it, every child with its position.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer is out of range"))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(Node::UInt)
            .map_err(|_| E::custom("integer is out of range"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        check_length(v.len())?;
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        check_length(v.len())?;
        Ok(Node::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values are not supported"))
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            if items.len() == MAX_ITEMS {
                return Err(de::Error::custom(format_args!(
                    "a list of more than {MAX_ITEMS} items is longer than any incident needs at line {}, column {}",
                    item.referenced.line(),
                    item.referenced.column()
                )));
            }
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            if entries.len() == MAX_ITEMS {
                return Err(de::Error::custom(format_args!(
                    "a mapping of more than {MAX_ITEMS} keys is larger than any incident needs at line {}, column {}",
                    key.referenced.line(),
                    key.referenced.column()
                )));
            }
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

fn check_length<E: de::Error>(len: usize) -> Result<(), E> {
    if len > MAX_STRING_BYTES {
        Err(E::custom(format_args!(
            "a string of {len} bytes is longer than the {MAX_STRING_BYTES} bytes allowed"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_keys_and_values() {
        let docs = parse_documents("id: 5\nstatus: Active\ntags:\n  - a\n  - b\n").unwrap();
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!(doc.value["id"], 5);
        assert_eq!(doc.key_pos("/status"), Pos { line: 2, column: 1 });
        assert_eq!(doc.value_pos("/status"), Pos { line: 2, column: 9 });
        assert_eq!(doc.value_pos("/tags/1"), Pos { line: 5, column: 5 });
        assert_eq!(doc.value_pos("/nope"), doc.start);
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs = parse_documents("---\nid: 1\n---\n---\nid: 2\n...\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].start.line, 5);
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_position() {
        let err = parse_documents("id: 1\nstatus: Active\nstatus: Resolved\n").unwrap_err();
        assert_eq!(err.pos.line, 3, "{err:?}");
        assert!(err.message.contains("duplicate"), "{err:?}");
    }
}
