//! Import: turn incidents that already exist in Defender into desired-state files, so a team can
//! start managing them from git. What is written validates as it is and plans to zero changes:
//! a value the desired-state schema cannot hold is left out (with a YAML comment saying why)
//! rather than written in a way that would change the incident on the next apply.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::api::wire::Incident;
use crate::api::{ApiError, Client};
use crate::model::{Classification, Determination, Status, determination_allowed};
use crate::source::yaml::{MAX_STRING_BYTES, parse_documents};
use crate::source::{SourceError, SourceOptions};

/// Header lines taken from the API (names, links) are cut to this many characters.
const MAX_HEADER_CHARS: usize = 200;

/// Which incidents to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These incidents, read one by one (`--id`, repeatable).
    Ids(Vec<u64>),
    /// The incidents matching an OData `$filter` on `lastUpdateTime`, `createdTime`, `status`
    /// or `assignedTo` (`--filter`).
    Filter(String),
    /// The incidents updated at or after a time (`--since`): an RFC 3339 timestamp, or a date
    /// meaning midnight UTC.
    Since(String),
}

/// Why an import could not be done, or why one incident cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The incident was merged into another; it can no longer be managed.
    #[error("incident {id} is {}; it cannot be managed, so it is not imported", redirected_into(*into))]
    Redirected { id: u64, into: Option<u64> },
    /// The API sent an id the desired-state schema does not allow.
    #[error("incident id {id} is not a valid desired-state id (ids start at 1)")]
    InvalidId { id: u64 },
    /// Files exist, or ids are defined elsewhere: nothing was written.
    #[error("nothing was imported:\n  {}", conflicts.join("\n  "))]
    Conflicts { conflicts: Vec<String> },
    /// The existing desired state could not be read.
    #[error("cannot read the existing desired state: {0}")]
    Source(#[from] SourceError),
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn redirected_into(into: Option<u64>) -> String {
    match into {
        Some(into) => format!("merged into incident {into} (status Redirected)"),
        None => "Redirected (merged into another incident)".to_string(),
    }
}

/// An incident that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: u64,
    pub reason: String,
}

/// A value an imported file does not manage, and why (also written as a YAML comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub id: u64,
    pub field: &'static str,
    pub reason: String,
}

/// What [`write_files`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The files written, in incident order: `<repo>/incidents/<id>.yaml`.
    pub written: Vec<PathBuf>,
    /// Incidents not imported (merged ones), with the reason, to show as warnings.
    pub skipped: Vec<Skipped>,
    /// Current values left unmanaged in the written files, to show as notes.
    pub left_out: Vec<LeftOut>,
}

/// Reads the selected incidents from the API. Unknown ids are one error naming all of them.
pub async fn fetch(client: &Client, selection: &Selection) -> Result<Vec<Incident>, ApiError> {
    match selection {
        Selection::Ids(ids) => {
            if ids.is_empty() {
                return Err(ApiError::Config("no incident id given to import".into()));
            }
            let mut seen = BTreeSet::new();
            let mut incidents = Vec::new();
            let mut missing = Vec::new();
            for &id in ids.iter().filter(|id| seen.insert(**id)) {
                match client.get(id).await? {
                    Some(incident) => incidents.push(incident),
                    None => missing.push(id),
                }
            }
            if let Some(first) = missing.first() {
                let names: Vec<String> = missing.iter().map(u64::to_string).collect();
                return Err(ApiError::Api {
                    method: "GET",
                    path: format!("/api/incidents/{first}"),
                    status: 404,
                    code: Some("NotFound".into()),
                    message: Some(format!(
                        "no incident with id {} exists; nothing was imported",
                        names.join(", ")
                    )),
                    target: None,
                });
            }
            Ok(incidents)
        }
        Selection::Filter(filter) => {
            let filter = filter.trim();
            if filter.is_empty() {
                return Err(ApiError::Config(
                    "the import filter is empty; give an OData $filter such as \"status eq 'Active'\""
                        .into(),
                ));
            }
            client.list(Some(filter)).await
        }
        Selection::Since(time) => {
            let since = since_timestamp(time)?;
            client
                .list(Some(&format!("lastUpdateTime ge {since}")))
                .await
        }
    }
}

/// `--since` as the UTC timestamp the API's `$filter` expects. Parsing it here keeps the
/// filter well-formed whatever the user typed.
fn since_timestamp(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    let time = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| {
            ApiError::Config(format!(
                "--since {:?} is not a time; use an RFC 3339 timestamp such as 2024-06-01T08:00:00Z, or a date such as 2024-06-01",
                one_line(text, 60)
            ))
        })?;
    Ok(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The desired-state file for one incident: a comment header (name, severity, created, link)
/// and every managed field the incident has. A merged (`Redirected`) incident is
/// [`ImportError::Redirected`]: the caller skips it with a warning.
pub fn render_yaml(incident: &Incident) -> Result<String, ImportError> {
    render(incident, None).map(|rendered| rendered.text)
}

/// Like [`render_yaml`], with a `# yaml-language-server: $schema=<schema>` first line so that
/// editors validate the file (`schema` relative to the file, e.g. `../schema/incident.schema.json`).
pub fn render_yaml_with_schema(
    incident: &Incident,
    schema: Option<&str>,
) -> Result<String, ImportError> {
    render(incident, schema).map(|rendered| rendered.text)
}

struct Rendered {
    text: String,
    left_out: Vec<LeftOut>,
}

fn render(incident: &Incident, schema: Option<&str>) -> Result<Rendered, ImportError> {
    let id = incident.incident_id;
    if incident.redirect_incident_id.is_some()
        || incident.status.as_deref() == Some(Status::Redirected.as_str())
    {
        return Err(ImportError::Redirected {
            id,
            into: incident.redirect_incident_id,
        });
    }
    if id == 0 {
        return Err(ImportError::InvalidId { id });
    }

    // `write!` into a String cannot fail: its results are ignored below.
    let mut out = String::new();
    let mut left_out = Vec::new();
    let mut leave_out = |out: &mut String, fields: &[&'static str], reason: String| {
        let _ = writeln!(out, "# {}", one_line(&reason, 2 * MAX_HEADER_CHARS));
        for field in fields {
            left_out.push(LeftOut {
                id,
                field,
                reason: reason.clone(),
            });
        }
    };

    if let Some(schema) = schema {
        let _ = writeln!(
            out,
            "# yaml-language-server: $schema={}",
            one_line(schema, 4 * MAX_HEADER_CHARS)
        );
    }
    let name = incident.incident_name.as_deref().unwrap_or("(no name)");
    let _ = writeln!(out, "# {}", one_line(name, MAX_HEADER_CHARS));
    let mut facts = Vec::new();
    if let Some(severity) = &incident.severity {
        facts.push(format!("severity: {severity}"));
    }
    if let Some(created) = &incident.created_time {
        facts.push(format!("created: {created}"));
    }
    if !facts.is_empty() {
        let _ = writeln!(out, "# {}", one_line(&facts.join(" · "), MAX_HEADER_CHARS));
    }
    let link = incident
        .incident_uri
        .clone()
        .filter(|uri| !uri.trim().is_empty())
        .unwrap_or_else(|| format!("https://security.microsoft.com/incidents/{id}"));
    let _ = writeln!(out, "# {}", one_line(&link, 4 * MAX_HEADER_CHARS));

    let _ = writeln!(out, "id: {id}");

    match incident.status.as_deref() {
        None => {}
        Some(status) => match Status::parse(status) {
            Some(status) => {
                let _ = writeln!(out, "status: {status}");
            }
            None => leave_out(
                &mut out,
                &["status"],
                format!("status: {status} — not a value the API accepts in an update; not managed"),
            ),
        },
    }

    match incident.assigned_to.as_deref() {
        None | Some("") => {}
        Some(owner) if owner.len() > MAX_STRING_BYTES => leave_out(
            &mut out,
            &["assignedTo"],
            format!("assignedTo: longer than {MAX_STRING_BYTES} bytes; not managed"),
        ),
        Some(owner) => {
            let _ = writeln!(out, "assignedTo: {}", scalar(owner));
        }
    }

    // The API refuses a change that leaves a determination on anything but a true positive,
    // and `plan` checks that rule on the effective state. An incident that already breaks it
    // (only possible with values this version does not know, or data from elsewhere) cannot
    // have either field managed without the plan refusing it, so both stay unmanaged.
    let classification = incident.classification.as_deref();
    let determination = incident.determination.as_deref();
    let rule_holds = match determination {
        None => true,
        Some(d) => {
            d == Determination::NotAvailable.as_str()
                || classification == Some(Classification::TruePositive.as_str())
        }
    };
    if !rule_holds {
        let reason = format!(
            "classification: {}, determination: {} — breaks the API's rule (a determination needs classification TruePositive); not managed",
            classification.unwrap_or("(not set)"),
            determination.unwrap_or("(not set)"),
        );
        leave_out(&mut out, &["classification", "determination"], reason);
    }
    let mut written_classification = None;
    if rule_holds && let Some(classification) = classification {
        match Classification::parse(classification) {
            Some(c) => {
                written_classification = Some(c);
                let _ = writeln!(out, "classification: {c}");
            }
            None => leave_out(
                &mut out,
                &["classification"],
                format!(
                    "classification: {classification} — not a value the API accepts in an update; not managed"
                ),
            ),
        }
    }
    if rule_holds && let Some(determination) = determination {
        match Determination::parse(determination) {
            Some(d) if determination_allowed(written_classification, Some(d)) => {
                let _ = writeln!(out, "determination: {d}");
            }
            Some(d) => leave_out(
                &mut out,
                &["determination"],
                format!(
                    "determination: {d} — needs classification TruePositive in this file, and the classification is not managed; not managed"
                ),
            ),
            None => leave_out(
                &mut out,
                &["determination"],
                format!(
                    "determination: {determination} — not a value the API accepts in an update; not managed"
                ),
            ),
        }
    }

    // `tags` is the whole set: one tag the schema cannot hold makes the field unmanageable.
    if !incident.tags.is_empty() {
        if incident
            .tags
            .iter()
            .any(|t| t.is_empty() || t.len() > MAX_STRING_BYTES)
        {
            leave_out(
                &mut out,
                &["tags"],
                format!(
                    "tags: one tag is empty or longer than {MAX_STRING_BYTES} bytes, which a file cannot hold; not managed"
                ),
            );
        } else {
            out.push_str("tags:\n");
            for tag in &incident.tags {
                let _ = writeln!(out, "  - {}", scalar(tag));
            }
        }
    }

    // The existing comments are listed: comments are append-only and all of these exist, so
    // they plan to nothing, and the file reads as the incident's history to which a reviewer
    // appends one line to add a comment. A comment a file cannot hold is simply not listed;
    // an unlisted comment is left alone.
    let mut seen = BTreeSet::new();
    let mut listable = Vec::new();
    let mut unlistable = 0usize;
    for comment in &incident.comments {
        let text = comment.comment.as_str();
        if text.is_empty() || text.len() > MAX_STRING_BYTES {
            unlistable += 1;
        } else if seen.insert(text) {
            listable.push(text);
        }
    }
    if unlistable > 0 {
        leave_out(
            &mut out,
            &["comments"],
            format!(
                "comments: {unlistable} existing comment(s) not listed (empty or longer than {MAX_STRING_BYTES} bytes); they stay on the incident"
            ),
        );
    }
    if !listable.is_empty() {
        out.push_str("comments:\n");
        for text in listable {
            let _ = writeln!(out, "  - {}", scalar(text));
        }
    }

    Ok(Rendered {
        text: out,
        left_out,
    })
}

/// Writes `<repo>/incidents/<id>.yaml` for each incident (creating `incidents/`), atomically.
///
/// Everything is checked before anything is written: an existing target file (unless
/// `force`), an id already defined in another file (even with `force`: that would be a
/// duplicate definition), or a target that also defines other incidents refuses the whole
/// import, naming every conflict. Merged incidents are skipped and reported.
pub fn write_files(
    repo: &Path,
    incidents: &[Incident],
    force: bool,
) -> Result<ImportReport, ImportError> {
    let schema = repo
        .join("schema/incident.schema.json")
        .is_file()
        .then_some("../schema/incident.schema.json");

    let mut report = ImportReport::default();
    let mut planned: Vec<(u64, String, String)> = Vec::new(); // id, relative path, text
    let mut ids = BTreeSet::new();
    for incident in incidents {
        let id = incident.incident_id;
        if !ids.insert(id) {
            continue; // listed twice (a list that shifted while paging): the first is enough
        }
        match render(incident, schema) {
            Ok(rendered) => {
                report.left_out.extend(rendered.left_out);
                planned.push((id, format!("incidents/{id}.yaml"), rendered.text));
            }
            Err(error @ (ImportError::Redirected { .. } | ImportError::InvalidId { .. })) => {
                report.skipped.push(Skipped {
                    id,
                    reason: error.to_string(),
                });
            }
            Err(other) => return Err(other),
        }
    }

    let definitions = existing_definitions(repo)?;
    let mut conflicts = Vec::new();
    for (id, rel, _) in &planned {
        let path = repo.join(rel);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if !force {
                conflicts.push(format!(
                    "{} already exists (use --force to overwrite it)",
                    path.display()
                ));
            } else if !meta.is_file() {
                conflicts.push(format!(
                    "{} exists and is not a regular file; not overwriting it",
                    path.display()
                ));
            }
        }
        for (other_id, files) in &definitions {
            if other_id != id && files.contains(rel) {
                conflicts.push(format!(
                    "{} also defines incident {other_id}; overwriting it would drop that definition",
                    path.display()
                ));
            }
        }
        if let Some(files) = definitions.get(id) {
            for file in files.iter().filter(|f| *f != rel) {
                conflicts.push(format!(
                    "incident {id} is already defined in {}; importing it to {} would define it twice",
                    repo.join(file).display(),
                    path.display()
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ImportError::Conflicts { conflicts });
    }

    let dir = repo.join("incidents");
    if !planned.is_empty() {
        fs::create_dir_all(&dir).map_err(|source| ImportError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    for (_, rel, text) in &planned {
        let path = repo.join(rel);
        write_atomically(&dir, &path, text, force)?;
        report.written.push(path);
    }
    Ok(report)
}

/// Every id defined below `<repo>/incidents/`, with the files (relative, `/`-separated) that
/// define it. Documents that do not validate count too: a broken definition is still one.
fn existing_definitions(repo: &Path) -> Result<BTreeMap<u64, BTreeSet<String>>, ImportError> {
    let state = match crate::source::load(&SourceOptions {
        repo: repo.to_path_buf(),
        ..SourceOptions::default()
    }) {
        Ok(state) => state,
        Err(SourceError::NoIncidentsFolder { .. }) => return Ok(BTreeMap::new()),
        Err(error) => return Err(error.into()),
    };
    let mut definitions: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for file in &state.files {
        // A file that does not parse defines nothing we can see; `validate` reports it.
        let Ok(docs) = parse_documents(&file.text) else {
            continue;
        };
        for doc in docs {
            if let Some(id) = doc.value.get("id").and_then(serde_json::Value::as_u64) {
                definitions.entry(id).or_default().insert(file.path.clone());
            }
        }
    }
    Ok(definitions)
}

/// A temporary file in the same folder, flushed, then renamed over the target: a reader sees
/// the old file or the new one, never half of one. Without `overwrite`, a file that appeared
/// since the check is not replaced.
fn write_atomically(
    dir: &Path,
    path: &Path,
    text: &str,
    overwrite: bool,
) -> Result<(), ImportError> {
    let io_error = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".incidentops-import-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Files in a repository are readable by everyone; tempfile's default is 0600.
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    let mut file = builder.tempfile_in(dir).map_err(io_error)?;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.as_file().sync_all().map_err(io_error)?;
    let persisted = if overwrite {
        file.persist(path)
    } else {
        file.persist_noclobber(path)
    };
    persisted.map(drop).map_err(|e| io_error(e.error))
}

/// Words a YAML parser may read as something other than a string when unquoted.
const RESERVED_WORDS: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf",
];

/// A string as a YAML scalar: plain when it is unmistakably a string (letters, digits and a
/// few punctuation marks that mean nothing in block context), else double-quoted.
fn scalar(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !text.ends_with(' ')
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '@' | '-' | ',' | '/' | '+')
        })
        && !RESERVED_WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        double_quoted(text)
    }
}

/// A YAML double-quoted scalar using only JSON's escapes (`\"`, `\\`, `\n`, `\uXXXX`, ...),
/// which YAML shares. Characters YAML does not allow unescaped (controls, line and paragraph
/// separators, the byte order mark, non-characters) are escaped.
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters outside YAML's printable set, or that some parsers read as line breaks. All are
/// in the Basic Multilingual Plane, so `\uXXXX` covers them.
fn must_escape(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// Text from the API made safe for a YAML comment: one line (a line break would end the
/// comment and turn the rest into YAML), no control characters, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if must_escape(c) { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    match clean.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &clean[..end]),
        None => clean.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::Comment;

    fn incident(id: u64) -> Incident {
        Incident {
            incident_id: id,
            incident_uri: None,
            redirect_incident_id: None,
            incident_name: Some("Ransomware activity".into()),
            created_time: Some("2020-09-06T14:46:57.0733333Z".into()),
            last_update_time: None,
            assigned_to: None,
            classification: Some("Unknown".into()),
            determination: Some("NotAvailable".into()),
            status: Some("Active".into()),
            severity: Some("Medium".into()),
            tags: Vec::new(),
            comments: Vec::new(),
        }
    }

    fn parse_one(text: &str) -> serde_json::Value {
        let docs = parse_documents(text).expect("valid YAML");
        assert_eq!(docs.len(), 1, "{text}");
        docs[0].value.clone()
    }

    #[test]
    fn render_writes_header_and_managed_fields_in_order() {
        let mut i = incident(924565);
        i.tags = vec!["ransomware".into(), "pen-test".into()];
        i.comments = vec![Comment {
            comment: "test comment for docs".into(),
            created_by: None,
            created_time: None,
        }];
        assert_eq!(
            render_yaml(&i).unwrap(),
            "# Ransomware activity\n\
             # severity: Medium · created: 2020-09-06T14:46:57.0733333Z\n\
             # https://security.microsoft.com/incidents/924565\n\
             id: 924565\n\
             status: Active\n\
             classification: Unknown\n\
             determination: NotAvailable\n\
             tags:\n  - ransomware\n  - pen-test\n\
             comments:\n  - test comment for docs\n"
        );
    }

    #[test]
    fn render_prefers_the_incident_uri_and_takes_a_schema_line() {
        let mut i = incident(7);
        i.incident_uri = Some("https://security.microsoft.com/incidents/7?tid=abc".into());
        let text = render_yaml_with_schema(&i, Some("../schema/incident.schema.json")).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# yaml-language-server: $schema=../schema/incident.schema.json")
        );
        assert!(text.contains("\n# https://security.microsoft.com/incidents/7?tid=abc\n"));
    }

    #[test]
    fn render_refuses_redirected_incidents() {
        let mut i = incident(9);
        i.status = Some("Redirected".into());
        i.redirect_incident_id = Some(3);
        let error = render_yaml(&i).unwrap_err();
        assert!(matches!(
            error,
            ImportError::Redirected {
                id: 9,
                into: Some(3)
            }
        ));
        assert!(error.to_string().contains("merged into incident 3"));
    }

    #[test]
    fn render_leaves_unknown_enum_values_out_with_a_comment() {
        let mut i = incident(5);
        i.status = Some("InProgress".into());
        i.classification = Some("InformationalExpectedActivity".into());
        let text = render_yaml(&i).unwrap();
        assert!(text.contains("# status: InProgress — not a value the API accepts"));
        assert!(text.contains("# classification: InformationalExpectedActivity — "));
        assert!(text.contains("\ndetermination: NotAvailable\n"), "{text}");
        let value = parse_one(&text);
        assert!(value.get("status").is_none());
        assert!(value.get("classification").is_none());
    }

    #[test]
    fn render_keeps_a_determination_only_with_a_managed_true_positive() {
        let mut i = incident(5);
        i.classification = Some("TruePositive".into());
        i.determination = Some("Malware".into());
        assert!(
            render_yaml(&i)
                .unwrap()
                .contains("\ndetermination: Malware\n")
        );

        i.determination = Some("MultiStagedAttack".into());
        let text = render_yaml(&i).unwrap();
        assert!(text.contains("\nclassification: TruePositive\n"));
        assert!(text.contains("# determination: MultiStagedAttack — "));

        // Current state that already breaks the rule: neither field can be managed.
        i.classification = Some("FalsePositive".into());
        i.determination = Some("Malware".into());
        let value = parse_one(&render_yaml(&i).unwrap());
        assert!(value.get("classification").is_none());
        assert!(value.get("determination").is_none());
    }

    #[test]
    fn header_text_from_the_api_cannot_break_out_of_its_comment() {
        let mut i = incident(5);
        i.incident_name = Some("evil\nstatus: Resolved\r\u{2028}x".into());
        i.severity = Some("High\nassignedTo: me".into());
        let value = parse_one(&render_yaml(&i).unwrap());
        assert_eq!(value["status"], "Active");
        assert!(value.get("assignedTo").is_none());
    }

    #[test]
    fn scalars_are_plain_only_when_unmistakable() {
        assert_eq!(scalar("secop2@contoso.com"), "secop2@contoso.com");
        assert_eq!(scalar("Escalated to tier 2"), "Escalated to tier 2");
        for tricky in [
            "*alias",
            "&anchor",
            "!tag",
            "#hash",
            "a: b",
            "a #b",
            "yes",
            "No",
            "null",
            "~",
            "123",
            "-dash",
            "",
            " lead",
            "trail ",
            "[x]",
            "{x}",
            "'q'",
            "\"q\"",
            "a\nb",
            "%x",
            "@at",
            "`b`",
            "|",
            ">",
            "?",
            "tab\tx",
            "nul\u{0}x",
            "bom\u{feff}x",
            "nel\u{85}x",
        ] {
            let quoted = scalar(tricky);
            assert!(quoted.starts_with('"'), "{tricky:?} → {quoted}");
            let value = parse_one(&format!("x: {quoted}\n"));
            assert_eq!(value["x"], tricky, "{tricky:?} → {quoted}");
        }
    }

    #[test]
    fn since_accepts_timestamps_and_dates_and_refuses_anything_else() {
        assert_eq!(
            since_timestamp("2024-06-01T10:00:00+02:00").unwrap(),
            "2024-06-01T08:00:00Z"
        );
        assert_eq!(
            since_timestamp("2024-06-01").unwrap(),
            "2024-06-01T00:00:00Z"
        );
        let error = since_timestamp("2024-06-01 or status eq 'Active'").unwrap_err();
        assert!(matches!(error, ApiError::Config(_)));
        assert!(error.to_string().contains("not a time"));
    }
}
