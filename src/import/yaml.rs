//! YAML text as a small tree that remembers where each node and key stands, so that every
//! warning about it can name its file:line:column.
//!
//! saphyr parses (YAML 1.2, so `no` is a string and `8123:8123` is not a number); this module
//! copies its marked nodes into [`Node`] so the importers never see the crate's types. The
//! merge key `<<` (compose files share settings through anchors with it) is applied here:
//! keys the mapping sets itself win over the merged ones. Aliases are expanded by saphyr
//! within its node budget, so a "billion laughs" document fails instead of filling memory.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A 1-based line and column in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub at: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text and where it stands.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub at: Pos,
}

/// Why a text is not YAML we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub at: Pos,
    pub message: String,
}

/// The first document of `text` (an empty text is an empty mapping).
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| YamlError {
        at: Pos {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    match docs.into_iter().next() {
        Some(doc) => Ok(convert(&doc)),
        None => Ok(Node {
            at: Pos { line: 1, column: 1 },
            value: Value::Map(Vec::new()),
        }),
    }
}

fn pos(node: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(node: &MarkedYaml<'_>) -> Node {
    let at = pos(node);
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Sequence(items) => Value::Seq(items.iter().map(convert).collect()),
        YamlData::Mapping(map) => {
            let mut own: Vec<(Key, Node)> = Vec::new();
            let mut merged: Vec<(Key, Node)> = Vec::new();
            for (k, v) in map {
                let key = Key {
                    name: key_text(k),
                    at: pos(k),
                };
                let value = convert(v);
                if key.name == "<<" {
                    // `<<: *base` or `<<: [*a, *b]` (the earlier one wins).
                    let sources = match value.value {
                        Value::Seq(items) => items,
                        other => vec![Node {
                            at: value.at,
                            value: other,
                        }],
                    };
                    for source in sources {
                        if let Value::Map(entries) = source.value {
                            for (mk, mv) in entries {
                                if !merged.iter().any(|(k, _)| k.name == mk.name) {
                                    merged.push((mk, mv));
                                }
                            }
                        }
                    }
                } else {
                    own.push((key, value));
                }
            }
            for (mk, mv) in merged {
                if !own.iter().any(|(k, _)| k.name == mk.name) {
                    own.push((mk, mv));
                }
            }
            Value::Map(own)
        }
        YamlData::Tagged(_, inner) => convert(inner).value,
        YamlData::Alias(_) | YamlData::BadValue => Value::Null,
    };
    Node { at, value }
}

fn scalar_value(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

fn key_text(node: &MarkedYaml<'_>) -> String {
    match convert(node).value {
        Value::Str(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
    }
}

impl Node {
    /// What kind of value this is, in words, for "expected …, found …".
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A scalar as text (`1` → "1", `true` → "true"); None for null, lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_carry_one_based_lines_and_columns() {
        let doc = parse("services:\n  db:\n    image: x\n    ports: [\"1:2\", 3]\n").unwrap();
        let (key, db) = &doc.get("services").unwrap().as_map().unwrap()[0];
        assert_eq!(
            (key.name.as_str(), key.at),
            ("db", Pos { line: 2, column: 3 })
        );
        let (image_key, image) = &db.as_map().unwrap()[0];
        assert_eq!(image_key.at, Pos { line: 3, column: 5 });
        assert_eq!(
            image.at,
            Pos {
                line: 3,
                column: 12
            }
        );
        let ports = db.get("ports").unwrap().as_seq().unwrap();
        assert_eq!(ports[0].scalar_text().as_deref(), Some("1:2"));
        assert!(matches!(ports[1].value, Value::Int(3)));
    }

    #[test]
    fn yaml_1_2_scalars_and_the_merge_key() {
        let doc = parse(
            "x-base: &base\n  restart: always\n  init: true\ns:\n  <<: *base\n  init: false\n  v: no\n  p: 8123:8123\n",
        )
        .unwrap();
        let s = doc.get("s").unwrap();
        assert!(matches!(s.get("restart").unwrap().value, Value::Str(ref r) if r == "always"));
        assert!(matches!(s.get("init").unwrap().value, Value::Bool(false)));
        assert!(matches!(s.get("v").unwrap().value, Value::Str(ref r) if r == "no"));
        assert!(matches!(s.get("p").unwrap().value, Value::Str(ref r) if r == "8123:8123"));
    }

    #[test]
    fn a_syntax_error_has_its_place_and_duplicate_keys_are_errors() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.at.line >= 1, "{e:?}");
        assert!(parse("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn an_alias_bomb_fails_instead_of_filling_memory() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        assert!(parse(&text).is_err());
    }
}
