//! Validation of desired-state documents: the generated JSON Schema (compiled once per run)
//! and the determination rule, with every error mapped back to the YAML position of the
//! offending key or value.

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::model::{self, Classification, DesiredIncident, Determination};
use crate::source::yaml::{Pos, YamlDocument};

/// An error in one document, before it is attached to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub pos: Pos,
    pub message: String,
}

/// The compiled schema. Build it once and reuse it for every document.
pub struct SchemaValidator {
    schema: jsonschema::Validator,
}

impl SchemaValidator {
    pub fn new() -> Result<Self, String> {
        let schema = jsonschema::draft202012::new(&model::json_schema())
            .map_err(|error| format!("the generated schema does not compile: {error}"))?;
        Ok(SchemaValidator { schema })
    }

    /// Validates one document; on success returns the typed incident.
    pub fn check(&self, doc: &YamlDocument) -> Result<DesiredIncident, Vec<DocumentError>> {
        if !doc.value.is_object() {
            return Err(vec![DocumentError {
                pos: doc.start,
                message: format!(
                    "a document must be a mapping of incident fields such as `id: 924565`, found {}",
                    describe(&doc.value)
                ),
            }]);
        }
        let mut errors = Vec::new();
        let mut rule_reported = false;
        for error in self.schema.iter_errors(&doc.value) {
            let pointer = error.instance_path().as_str().to_string();
            let schema_path = error.schema_path().as_str();
            if schema_path.starts_with("/then") {
                // The determination rule: reported once, in the Rust rule's words.
                if !rule_reported {
                    rule_reported = true;
                    errors.push(rule_error(doc));
                }
                continue;
            }
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        let key = format!("/{}", crate::source::yaml::escape_pointer(name));
                        errors.push(DocumentError {
                            pos: doc.key_pos(&key),
                            message: unknown_field_message(name),
                        });
                    }
                }
                kind => errors.push(DocumentError {
                    pos: doc.value_pos(&pointer),
                    message: describe_error(kind, &pointer, error.instance(), &error),
                }),
            }
        }
        // The schema validates `then` only when `if` matches; if the document is otherwise
        // invalid the Rust rule still decides, so both always agree.
        if !rule_reported && breaks_rule(&doc.value) {
            errors.push(rule_error(doc));
        }
        if !errors.is_empty() {
            // One error per place: `status:` (null) is both the wrong type and not an enum
            // member; the first, most basic, says enough.
            errors.sort_by_key(|e| e.pos);
            errors.dedup_by_key(|e| e.pos);
            return Err(errors);
        }
        serde_json::from_value::<DesiredIncident>(doc.value.clone()).map_err(|error| {
            // JSON Schema counts 1e20 and 10.0 as integers; the YAML parser reads `010` and
            // numbers past u64 as floats. Say so at the id, not at the document start.
            if let Some(id) = doc.value.get("id").filter(|id| id.is_f64()) {
                return vec![DocumentError {
                    pos: doc.value_pos("/id"),
                    message: format!(
                        "id must be a plain positive integer (digits only, no leading zero or exponent, at most {}), found {id}",
                        u64::MAX
                    ),
                }];
            }
            vec![DocumentError {
                pos: doc.start,
                message: format!("invalid incident: {error}"),
            }]
        })
    }
}

/// The Rust rule applied to a raw document (values that are not valid enum members are
/// reported elsewhere; here they count as "not TruePositive").
fn breaks_rule(value: &Value) -> bool {
    let Some(determination) = value.get("determination").and_then(Value::as_str) else {
        return false;
    };
    let Some(determination) = Determination::parse(determination) else {
        return false;
    };
    let classification = value
        .get("classification")
        .and_then(Value::as_str)
        .and_then(Classification::parse);
    !model::determination_allowed(classification, Some(determination))
}

fn rule_error(doc: &YamlDocument) -> DocumentError {
    let determination = doc
        .value
        .get("determination")
        .map(short)
        .unwrap_or_default();
    let found = match doc.value.get("classification") {
        Some(Value::String(c)) => format!("found {c}"),
        Some(other) => format!("found {}", short(other)),
        None => "classification is not set".to_string(),
    };
    DocumentError {
        pos: doc.value_pos("/determination"),
        message: format!(
            "determination {determination} requires classification TruePositive ({found}); set `classification: TruePositive` or `determination: NotAvailable`"
        ),
    }
}

fn unknown_field_message(name: &str) -> String {
    let best = model::FIELD_NAMES
        .iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, candidate)) => {
            format!("unknown field `{name}`; did you mean `{candidate}`?")
        }
        None => format!(
            "unknown field `{name}`; the fields are {}",
            model::FIELD_NAMES.join(", ")
        ),
    }
}

fn describe_error(
    kind: &ValidationErrorKind,
    pointer: &str,
    instance: &Value,
    error: &dyn std::fmt::Display,
) -> String {
    let field = field_name(pointer);
    match kind {
        ValidationErrorKind::Required { property } => format!(
            "missing required field {}: every document names the incident it manages, e.g. `id: 924565`",
            short(property)
        ),
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<&str> = options
                .as_array()
                .map(|values| values.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let found = short(instance);
            let hint = instance
                .as_str()
                .and_then(|s| allowed.iter().find(|a| a.eq_ignore_ascii_case(s)))
                .map(|a| format!("; did you mean `{a}`? (values are case-sensitive)"))
                .unwrap_or_default();
            format!("{field} {found} is not one of {}{hint}", allowed.join(", "))
        }
        ValidationErrorKind::Type { .. } if pointer == "/id" => {
            format!("id must be a positive integer, found {}", short(instance))
        }
        ValidationErrorKind::Minimum { .. } if pointer == "/id" => {
            format!("id must be a positive integer, found {}", short(instance))
        }
        ValidationErrorKind::Type { kind } => {
            format!(
                "{field} must be {}, found {}",
                type_name(kind),
                short(instance)
            )
        }
        ValidationErrorKind::MinLength { .. } => format!("{field} must not be empty"),
        _ => {
            let what = if pointer.is_empty() {
                "document"
            } else {
                &field
            };
            format!("{what}: {error}")
        }
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "array" => "a list".to_string(),
        "string" => "a string".to_string(),
        "integer" => "an integer".to_string(),
        "object" => "a mapping".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        jsonschema::error::TypeKind::Single(t) => name(t),
        jsonschema::error::TypeKind::Multiple(types) => types
            .into_iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// `tags[1]` for `/tags/1`, `status` for `/status`.
fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) => "a list".into(),
        Value::Null => "nothing (null)".into(),
        Value::Object(_) => "a mapping".into(),
        other => format!("the value {}", short(other)),
    }
}

/// A value quoted for a message, cut when long.
fn short(value: &Value) -> String {
    let text = match value {
        Value::Array(_) => return "a list".into(),
        Value::Object(_) => return "a mapping".into(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yaml::parse_documents;

    fn errors(text: &str) -> Vec<DocumentError> {
        let validator = SchemaValidator::new().unwrap();
        let docs = parse_documents(text).unwrap();
        validator.check(&docs[0]).unwrap_err()
    }

    #[test]
    fn rule_error_points_at_the_determination_value() {
        let errors = errors("id: 924565\nclassification: FalsePositive\ndetermination: Malware\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].pos,
            Pos {
                line: 3,
                column: 16
            }
        );
        assert!(
            errors[0]
                .message
                .starts_with("determination \"Malware\" requires classification TruePositive (found FalsePositive)"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn typo_gets_a_suggestion_at_the_key() {
        let errors = errors("id: 1\nclasification: TruePositive\n");
        assert_eq!(errors[0].pos, Pos { line: 2, column: 1 });
        assert!(
            errors[0].message.contains("did you mean `classification`"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_case_enum_suggests_the_api_spelling() {
        let errors = errors("id: 1\nstatus: resolved\n");
        assert_eq!(errors[0].pos, Pos { line: 2, column: 9 });
        assert!(
            errors[0].message.contains("did you mean `Resolved`"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_error_of_a_document_is_reported() {
        let errors = errors("id: \"abc\"\nstatus: Done\ntags: [ok, 3]\nowner: me\n");
        let lines: Vec<u64> = errors.iter().map(|e| e.pos.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4], "{errors:?}");
        assert!(
            errors[0].message.contains("id must be a positive integer"),
            "{errors:?}"
        );
        assert!(
            errors[2].message.contains("tags[1] must be a string"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_field_and_enum_value_parses() {
        use crate::model::Status;
        let validator = SchemaValidator::new().unwrap();
        for status in Status::ALL {
            for classification in Classification::ALL {
                let text = format!(
                    "id: 9\nstatus: {status}\nassignedTo: a@b.c\nclassification: {classification}\ndetermination: NotAvailable\ntags: [x, y]\ncomments: [\"c 1\"]\n"
                );
                let doc = &parse_documents(&text).unwrap()[0];
                let incident = validator.check(doc).unwrap();
                assert_eq!(incident.id, 9);
                assert_eq!(incident.status, Some(*status));
                assert_eq!(incident.classification, Some(*classification));
                assert_eq!(incident.determination, Some(Determination::NotAvailable));
                assert_eq!(incident.assigned_to.as_deref(), Some("a@b.c"));
                assert_eq!(incident.tags, Some(vec!["x".to_string(), "y".to_string()]));
                assert_eq!(incident.comments, Some(vec!["c 1".to_string()]));
            }
        }
        for determination in Determination::ALL {
            let text =
                format!("id: 9\nclassification: TruePositive\ndetermination: {determination}\n");
            let doc = &parse_documents(&text).unwrap()[0];
            assert_eq!(
                validator.check(doc).unwrap().determination,
                Some(*determination)
            );
        }
    }

    #[test]
    fn non_mapping_document_is_an_error() {
        let errors = errors("- id: 1\n");
        assert!(
            errors[0].message.contains("must be a mapping"),
            "{errors:?}"
        );
    }
}

#[cfg(test)]
mod rule_agreement {
    use super::*;
    use crate::source::yaml::parse_documents;

    /// The Rust rule, the raw schema (`if`/`then`, judged by the validator alone) and the
    /// reported errors agree on every classification × determination, absent included.
    #[test]
    fn rust_rule_and_schema_agree_on_every_combination() {
        let schema = jsonschema::draft202012::new(&model::json_schema()).unwrap();
        let validator = SchemaValidator::new().unwrap();
        let classifications: Vec<Option<Classification>> = std::iter::once(None)
            .chain(Classification::ALL.iter().copied().map(Some))
            .collect();
        let determinations: Vec<Option<Determination>> = std::iter::once(None)
            .chain(Determination::ALL.iter().copied().map(Some))
            .collect();
        let mut combinations = 0;
        for c in &classifications {
            for d in &determinations {
                let mut text = String::from("id: 1\n");
                if let Some(c) = c {
                    text.push_str(&format!("classification: {c}\n"));
                }
                if let Some(d) = d {
                    text.push_str(&format!("determination: {d}\n"));
                }
                let doc = &parse_documents(&text).unwrap()[0];
                let rust = model::determination_allowed(*c, *d);
                assert_eq!(
                    schema.is_valid(&doc.value),
                    rust,
                    "schema vs Rust for {c:?} {d:?}"
                );
                assert_eq!(
                    validator.check(doc).is_ok(),
                    rust,
                    "validate vs Rust for {c:?} {d:?}"
                );
                combinations += 1;
            }
        }
        assert_eq!(combinations, 4 * 8);
    }
}
