//! Desired-state types: what a user writes in `incidents/*.yaml`.
//!
//! These types are strict (unknown keys and enum values are errors) and are the single source
//! of the JSON Schema. The determination rule lives here, once, and is also emitted into the
//! schema as an `if`/`then` pair.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status of an incident, as the Defender API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Status",
    description = "Incident status. `Redirected` is set by Defender when an incident is merged into another."
)]
pub enum Status {
    Active,
    Resolved,
    Redirected,
}

/// How the incident was classified by the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Classification",
    description = "The analyst's classification of the incident."
)]
pub enum Classification {
    Unknown,
    FalsePositive,
    TruePositive,
}

/// What the incident turned out to be. Only meaningful for true positives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Determination",
    description = "What the incident turned out to be. Any value other than `NotAvailable` requires `classification: TruePositive`."
)]
pub enum Determination {
    NotAvailable,
    Apt,
    Malware,
    SecurityPersonnel,
    SecurityTesting,
    UnwantedSoftware,
    Other,
}

macro_rules! api_names {
    ($ty:ty { $($variant:ident),* $(,)? }) => {
        impl $ty {
            /// Every value, in the order the API documents them.
            pub const ALL: &'static [$ty] = &[$(<$ty>::$variant),*];

            /// The exact spelling the API uses (case-sensitive).
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => stringify!($variant)),* }
            }

            /// Parses the API spelling; `None` for values this version does not know.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $(stringify!($variant) => Some(<$ty>::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

api_names!(Status {
    Active,
    Resolved,
    Redirected
});
api_names!(Classification {
    Unknown,
    FalsePositive,
    TruePositive
});
api_names!(Determination {
    NotAvailable,
    Apt,
    Malware,
    SecurityPersonnel,
    SecurityTesting,
    UnwantedSoftware,
    Other
});

/// The desired state of one incident. Absent fields are not managed; present fields are owned
/// by git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "Defender XDR incident (desired state)",
    description = "The desired state of one Microsoft Defender XDR incident, managed by incidentops. Only the fields present are managed; absent fields are never touched.",
    extend(
        "if" = {
            "required": ["determination"],
            "properties": {"determination": {"not": {"const": "NotAvailable"}}}
        },
        "then" = {
            "required": ["classification"],
            "properties": {"classification": {"const": "TruePositive"}}
        }
    )
)]
// Optional fields are described by their inner type (`with = ...`): an absent field is
// unmanaged, and an explicit `null` is almost always a half-finished edit, so the schema refuses it.
pub struct DesiredIncident {
    /// The incident id (`incidentId` in the API).
    #[schemars(title = "Incident id", range(min = 1))]
    pub id: u64,

    /// The desired status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Status", with = "Status")]
    pub status: Option<Status>,

    /// The owner of the incident, usually a user principal name such as `secop2@contoso.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Assigned to", with = "String", length(min = 1))]
    pub assigned_to: Option<String>,

    /// The analyst's classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Classification", with = "Classification")]
    pub classification: Option<Classification>,

    /// What the incident turned out to be. Values other than `NotAvailable` require `classification: TruePositive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Determination", with = "Determination")]
    pub determination: Option<Determination>,

    /// The whole desired set of tags: tags not listed are removed. Order and duplicates do not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Tags", with = "Vec<String>", inner(length(min = 1)))]
    pub tags: Option<Vec<String>>,

    /// Comments that must exist on the incident. Append-only: each listed comment the incident does not have yet (exact text) is added; comments not listed are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Comments", with = "Vec<String>", inner(length(min = 1)))]
    pub comments: Option<Vec<String>>,
}

/// The API's rule: "You can set the determination property only if classification is set to
/// TruePositive." A determination of `NotAvailable` is always allowed.
pub fn determination_allowed(
    classification: Option<Classification>,
    determination: Option<Determination>,
) -> bool {
    match determination {
        None | Some(Determination::NotAvailable) => true,
        Some(_) => classification == Some(Classification::TruePositive),
    }
}

/// The JSON Schema of one desired-state document, draft 2020-12.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator
        .into_root_schema_for::<DesiredIncident>()
        .to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".into(),
            "https://github.com/incidentops/incidentops/schema/incident.schema.json".into(),
        );
    }
    schema
}

/// The schema as committed in `schema/incident.schema.json`: pretty JSON with a final newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The property names a document may use, for "did you mean" suggestions.
pub const FIELD_NAMES: &[&str] = &[
    "id",
    "status",
    "assignedTo",
    "classification",
    "determination",
    "tags",
    "comments",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn determination_rule_allows_not_available_with_any_classification() {
        for c in Classification::ALL {
            assert!(determination_allowed(
                Some(*c),
                Some(Determination::NotAvailable)
            ));
        }
        assert!(determination_allowed(
            None,
            Some(Determination::NotAvailable)
        ));
        assert!(determination_allowed(None, None));
    }

    #[test]
    fn determination_rule_requires_true_positive_for_real_determinations() {
        assert!(determination_allowed(
            Some(Classification::TruePositive),
            Some(Determination::Malware)
        ));
        assert!(!determination_allowed(
            Some(Classification::FalsePositive),
            Some(Determination::Malware)
        ));
        assert!(!determination_allowed(None, Some(Determination::Apt)));
    }

    #[test]
    fn api_names_round_trip() {
        for d in Determination::ALL {
            assert_eq!(Determination::parse(d.as_str()), Some(*d));
        }
        assert_eq!(Status::parse("InProgress"), None);
        assert_eq!(Classification::parse("truepositive"), None);
    }
}
