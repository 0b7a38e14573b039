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
