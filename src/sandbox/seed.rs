//! Seed data: Microsoft's three documented incidents, followed by as many generated incidents as
//! wanted. Generation is deterministic for a seed and cheap enough for 100,000 incidents.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::rng::SplitMix64;
use super::state::format_timestamp;

const DOCUMENTED: &str = include_str!("../../tests/fixtures/incidents-list.json");

/// The first generated incident id; generated ids ascend from here.
pub const FIRST_GENERATED_ID: u64 = 1_000_000;

/// The three incidents of Microsoft's documentation example, with every field (alerts too).
pub fn documented_incidents() -> Vec<Value> {
    serde_json::from_str::<Value>(DOCUMENTED)
        .ok()
        .and_then(|mut v| match v.get_mut("value").map(Value::take) {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        })
        .unwrap_or_default()
}

const TACTICS: &[&str] = &[
    "Initial access",
    "Execution",
    "Persistence",
    "Privilege escalation",
    "Defense evasion",
    "Credential access",
    "Discovery",
    "Lateral movement",
    "Collection",
    "Command and control",
    "Exfiltration",
    "Impact",
];

const MALWARE: &[&str] = &[
    "Mimikatz",
    "Cobalt Strike",
    "Emotet",
    "Qakbot",
    "IcedID",
    "AgentTesla",
    "Lumma Stealer",
    "PsExec",
];

const COUNTRIES: &[&str] = &[
    "Nigeria", "Russia", "Brazil", "Vietnam", "Romania", "China", "Ukraine", "Iran",
];

const USERS: &[&str] = &[
    "alex.wilber",
    "megan.bowen",
    "lynne.robbins",
    "diego.siciliani",
    "isaiah.langer",
    "joni.sherman",
    "nestor.wilke",
    "patti.fernandez",
    "lee.gu",
    "adele.vance",
];

const ANALYSTS: &[&str] = &[
    "secop1@contoso.com",
    "secop2@contoso.com",
    "secop123@contoso.com",
    "soc-tier2@contoso.com",
];

const TAGS: &[&str] = &[
    "ransomware",
    "pen-test",
    "phishing",
    "vip",
    "false-alarm",
    "needs-review",
    "escalated",
    "finance",
    "server",
    "red-team",
];

const COMMENTS: &[&str] = &[
    "Investigating",
    "Escalated to tier 2",
    "Device isolated",
    "User contacted, confirmed they did not sign in",
    "Password reset done",
    "Known admin tool, approved by change CHG0042",
    "Blocked the sender domain",
    "pen testing",
    "valid incident",
];

const SEVERITIES: &[(&str, u64)] = &[
    ("Informational", 15),
    ("Low", 35),
    ("Medium", 30),
    ("High", 18),
    ("UnSpecified", 2),
];

fn host(rng: &mut SplitMix64) -> String {
    let prefix = rng
        .pick(&["WIN", "SRV", "LAPTOP", "DC"])
        .copied()
        .unwrap_or("WIN");
    let suffix: String = (0..5)
        .map(|_| {
            let alphabet = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
            let index = usize::try_from(rng.below(alphabet.len() as u64)).unwrap_or(0);
            char::from(alphabet.get(index).copied().unwrap_or(b'X'))
        })
        .collect();
    format!("{prefix}-{suffix}")
}

fn user(rng: &mut SplitMix64) -> String {
    format!("{}@contoso.com", rng.pick(USERS).copied().unwrap_or("user"))
}

fn incident_name(rng: &mut SplitMix64) -> String {
    let pick = |rng: &mut SplitMix64, items: &[&'static str]| -> &'static str {
        rng.pick(items).copied().unwrap_or_default()
    };
    match rng.below(12) {
        0 | 1 => {
            let first = pick(rng, TACTICS);
            let mut second = pick(rng, TACTICS);
            if second == first {
                second = "Lateral movement";
            }
            let scope = if rng.chance(0.5) {
                "one endpoint".to_string()
            } else {
                format!(
                    "multiple endpoints reported by {} sources",
                    2 + rng.below(4)
                )
            };
            format!("Multi-stage incident involving {first} & {second} on {scope}")
        }
        2 => format!("Suspicious PowerShell download on {}", host(rng)),
        3 => format!(
            "'{}' malware was detected on one endpoint",
            pick(rng, MALWARE)
        ),
        4 => "'Mimikatz' hacktool was detected on one endpoint".to_string(),
        5 => "Email reported by user as malware or phish".to_string(),
        6 => format!("Ransomware activity on {}", host(rng)),
        7 => format!(
            "Suspicious sign-in from {} for {}",
            pick(rng, COUNTRIES),
            user(rng)
        ),
        8 => format!("Impossible travel activity involving {}", user(rng)),
        9 => format!("Suspicious inbox forwarding rule created by {}", user(rng)),
        10 => format!("Credential theft attempt via LSASS access on {}", host(rng)),
        _ => "Mass download by a single user".to_string(),
    }
}

fn weighted(rng: &mut SplitMix64, items: &[(&'static str, u64)]) -> &'static str {
    let total: u64 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (item, weight) in items {
        if roll < *weight {
            return item;
        }
        roll -= weight;
    }
    items.first().map_or("", |(item, _)| item)
}

/// Microsoft's documented incidents followed by `n` generated ones with ids ascending from
/// [`FIRST_GENERATED_ID`]. Same `(n, seed)`, same data.
pub fn generate_incidents(n: usize, seed: u64) -> Vec<Value> {
    let mut incidents = documented_incidents();
    incidents.reserve(n);
    let mut rng = SplitMix64::new(seed);
    // Incidents arrive every few minutes from this point on, so ids ascend with createdTime.
    let mut created: DateTime<Utc> = DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(); // 2024-01-01
    for i in 0..n {
        let id = FIRST_GENERATED_ID + i as u64;
        created += Duration::milliseconds(i64::try_from(rng.below(600_000)).unwrap_or(0))
            + Duration::nanoseconds(i64::try_from(rng.below(10_000_000)).unwrap_or(0) * 100);
        let last_update =
            created + Duration::seconds(i64::try_from(rng.below(3 * 86_400)).unwrap_or(0));
        let severity = weighted(&mut rng, SEVERITIES);
        let name = incident_name(&mut rng);

        let roll = rng.below(100);
        let (status, classification, determination) = match roll {
            0..=59 => ("Active", "Unknown", "NotAvailable"),
            60..=69 => ("Resolved", "FalsePositive", "NotAvailable"),
            70..=84 => (
                "Resolved",
                "TruePositive",
                *rng.pick(&[
                    "Malware",
                    "Apt",
                    "SecurityTesting",
                    "SecurityPersonnel",
                    "UnwantedSoftware",
                    "Other",
                ])
                .unwrap_or(&"Other"),
            ),
            85..=94 => ("Active", "TruePositive", "NotAvailable"),
            95..=96 if i > 0 => ("Redirected", "Unknown", "NotAvailable"),
            // Values newer than the documentation, which the live service also returns.
            97 => ("InProgress", "Unknown", "NotAvailable"),
            98 => ("Resolved", "InformationalExpectedActivity", "NotAvailable"),
            _ => ("Active", "Unknown", "NotAvailable"),
        };
        let redirect = if status == "Redirected" {
            Value::from(FIRST_GENERATED_ID + rng.below(i as u64))
        } else {
            Value::Null
        };
        let assigned_to = if status != "Active" || rng.chance(0.4) {
            Value::from(*rng.pick(ANALYSTS).unwrap_or(&"secop1@contoso.com"))
        } else {
            Value::Null
        };
        let tags: Vec<&str> = (0..rng.below(4))
            .filter_map(|_| rng.pick(TAGS).copied())
            .fold(Vec::new(), |mut acc, t| {
                if !acc.contains(&t) {
                    acc.push(t);
                }
                acc
            });
        let span = (last_update - created).num_seconds().max(1);
        let mut comment_times: Vec<i64> = (0..rng.below(3))
            .map(|_| i64::try_from(rng.below(span as u64)).unwrap_or(0))
            .collect();
        comment_times.sort_unstable();
        let comments: Vec<Value> = comment_times
            .into_iter()
            .map(|offset| {
                json!({
                    "comment": *rng.pick(COMMENTS).unwrap_or(&"Investigating"),
                    "createdBy": *rng.pick(ANALYSTS).unwrap_or(&"secop1@contoso.com"),
                    "createdTime": format_timestamp(created + Duration::seconds(offset)),
                })
            })
            .collect();

        incidents.push(json!({
            "incidentId": id,
            "incidentUri": format!("https://security.microsoft.com/incidents/{id}?tid=8a0f5a2e-91b4-4d3e-9c4e-7b1f0c1c5e42"),
            "redirectIncidentId": redirect,
            "incidentName": name,
            "createdTime": format_timestamp(created),
            "lastUpdateTime": format_timestamp(last_update),
            "assignedTo": assigned_to,
            "classification": classification,
            "determination": determination,
            "status": status,
            "severity": severity,
            "tags": tags,
            "comments": comments,
            "alerts": [],
        }));
    }
    incidents
}

/// One desired-state file: its path below the repository (`incidents/<id>.yaml`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    pub path: String,
    pub text: String,
}

/// The comment every changed incident of [`generate_desired_files`] asks for; no generated
/// incident has it, so each changed file plans at least one request.
pub const BENCHMARK_COMMENT: &str = "Closed by the incidentops benchmark";

/// Desired-state files for the incidents that `generate_incidents(n, seed)` serves (what
/// `incidentops sandbox --generate N --seed S` starts from): one file per generated incident,
/// `incidents/<id>.yaml`, managing the fields the incident has, as `import` would write them.
/// Merged (`Redirected`) incidents are skipped: they can no longer be changed.
///
/// A share `changed` (0.0 to 1.0) of the files, drawn from `seed`, asks for a change (resolved
/// as a true positive, plus [`BENCHMARK_COMMENT`]); the others match the current state, so a
/// plan finds them unchanged. Same `(n, seed, changed)`, same files; every file is valid.
pub fn generate_desired_files(n: usize, seed: u64, changed: f64) -> Vec<DesiredFile> {
    let mut rng = SplitMix64::new(seed ^ 0x6465_7369_7265_6421); // "desired!": not the API's draw
    generate_incidents(n, seed)
        .iter()
        .filter(|incident| {
            incident["incidentId"]
                .as_u64()
                .is_some_and(|id| id >= FIRST_GENERATED_ID)
                && incident["status"] != "Redirected"
        })
        .map(|incident| desired_file(incident, rng.chance(changed)))
        .collect()
}

fn desired_file(incident: &Value, changed: bool) -> DesiredFile {
    use crate::model::{Classification, Determination, Status};
    use std::fmt::Write as _;

    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let id = incident["incidentId"].as_u64().unwrap_or_default();
    let text_of = |key: &str| incident[key].as_str().unwrap_or_default();
    let mut status = Status::parse(text_of("status"));
    let mut classification = Classification::parse(text_of("classification"));
    let mut determination = Determination::parse(text_of("determination"));
    if classification.is_none() {
        determination = None; // a value this version does not know: leave both unmanaged
    }
    let mut comments: Vec<&str> = incident["comments"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["comment"].as_str()).collect())
        .unwrap_or_default();
    if changed {
        status = Some(Status::Resolved);
        classification = Some(Classification::TruePositive);
        determination = Some(Determination::Malware);
        comments.push(BENCHMARK_COMMENT);
    }

    let mut text = String::from("# yaml-language-server: $schema=../schema/incident.schema.json\n");
    let _ = writeln!(text, "# {}", text_of("incidentName"));
    let _ = writeln!(text, "id: {id}");
    if let Some(status) = status {
        let _ = writeln!(text, "status: {status}");
    }
    if let Some(owner) = incident["assignedTo"].as_str() {
        let _ = writeln!(text, "assignedTo: {owner}");
    }
    if let Some(classification) = classification {
        let _ = writeln!(text, "classification: {classification}");
    }
    if let Some(determination) = determination {
        let _ = writeln!(text, "determination: {determination}");
    }
    let tags: Vec<String> = incident["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).map(quote).collect())
        .unwrap_or_default();
    let _ = writeln!(text, "tags: [{}]", tags.join(", "));
    if !comments.is_empty() {
        text.push_str("comments:\n");
        for comment in comments {
            let _ = writeln!(text, "  - {}", quote(comment));
        }
    }
    DesiredFile {
        path: format!("incidents/{id}.yaml"),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_incidents_come_first_and_whole() {
        let incidents = generate_incidents(2, 1);
        assert_eq!(incidents.len(), 5);
        assert_eq!(incidents[0]["incidentId"], 924565);
        assert!(
            incidents[0]["alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        assert_eq!(incidents[3]["incidentId"], FIRST_GENERATED_ID);
        assert_eq!(incidents[4]["incidentId"], FIRST_GENERATED_ID + 1);
    }

    #[test]
    fn generated_incidents_respect_the_determination_rule() {
        for incident in generate_incidents(2_000, 9).iter().skip(3) {
            let determination = incident["determination"].as_str().unwrap();
            if determination != "NotAvailable" {
                assert_eq!(incident["classification"], "TruePositive", "{incident}");
            }
            if incident["status"] == "Redirected" {
                assert!(
                    incident["redirectIncidentId"].as_u64().unwrap()
                        < incident["incidentId"].as_u64().unwrap()
                );
            }
        }
    }
}
