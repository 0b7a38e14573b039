//! Reading desired state: every `*.yaml`/`*.yml` below `<repo>/incidents/`, from the working
//! tree or from a git revision, parsed, validated and indexed by position.
//!
//! Problems in files are collected as [`Diagnostic`]s (every one, in one run); only problems
//! with the request itself (no such folder, unknown revision) are a [`SourceError`].

pub mod git;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::{DesiredIncident, FIELD_NAMES};
use crate::validate::SchemaValidator;
use yaml::Pos;

/// Incident files larger than this are refused unread.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Where to read desired state from.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// The folder that holds `incidents/` (anywhere inside a git work tree, or outside git).
    pub repo: PathBuf,
    /// Read from this git revision instead of the working tree.
    pub rev: Option<String>,
    /// Keep only incidents from files that differ between this revision and what is read.
    pub changed_since: Option<String>,
}

/// A problem with the request itself; nothing could be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no incidents/ folder in {repo}: desired state lives in {repo}/incidents/*.yaml (use --repo to point at the folder that holds it)"
    )]
    NoIncidentsFolder { repo: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Git(String),
    #[error("{0}")]
    Internal(String),
}

/// A file that was read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to `--repo`, `/`-separated: `incidents/924565.yaml`.
    pub path: String,
    /// Path as the user sees it from where they ran the command: `--repo` joined with `path`.
    pub display: String,
    pub text: String,
}

/// A valid incident definition and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedIncident {
    pub incident: DesiredIncident,
    /// Index into [`DesiredState::files`].
    pub file: usize,
    /// Position of the document (its first key).
    pub start: Pos,
    /// Position of each field's value, by API field name.
    pub fields: BTreeMap<&'static str, Pos>,
}

/// An error in desired state, located like a compiler error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The display path of the file.
    pub file: String,
    pub pos: Pos,
    pub message: String,
    /// The offending source line, for a caret display.
    pub line_text: Option<String>,
    /// Other files the error involves (the other definitions of a duplicate id).
    pub related: Vec<String>,
}

/// Everything read from the desired-state files.
#[derive(Debug, Default)]
pub struct DesiredState {
    pub files: Vec<SourceFile>,
    /// Valid incidents (after `--changed-since` selection).
    pub incidents: Vec<LoadedIncident>,
    pub diagnostics: Vec<Diagnostic>,
    /// The commit read (`--rev`), or the HEAD of the work tree; `None` outside git.
    pub commit: Option<String>,
    /// With `--changed-since`: files deleted since that revision (their incidents are no
    /// longer managed; nothing is done to them).
    pub deleted: Vec<String>,
    /// With `--changed-since`: how many files were selected.
    pub selected_files: Option<usize>,
}

impl DesiredState {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub fn file_of(&self, incident: &LoadedIncident) -> &SourceFile {
        &self.files[incident.file]
    }
}

/// Reads, parses and validates desired state.
pub fn load(options: &SourceOptions) -> Result<DesiredState, SourceError> {
    let validator = SchemaValidator::new().map_err(SourceError::Internal)?;
    let display_base = display_base(&options.repo);
    let mut state = DesiredState::default();

    let repo = git::Repo::discover(&options.repo)?;
    let raw_files = match &options.rev {
        Some(rev) => {
            let repo = repo
                .as_ref()
                .ok_or_else(|| not_in_git(&options.repo, "--rev"))?;
            let read = repo.read_incidents_at(rev)?;
            state.commit = Some(read.commit);
            read.files
        }
        None => {
            state.commit = repo.as_ref().and_then(|r| r.head_commit());
            read_work_tree(&options.repo)?
        }
    };

    let mut definitions = Vec::new();
    for raw in raw_files {
        let display = format!("{display_base}{}", raw.path);
        match raw.content {
            Ok(bytes) => check_bytes(
                &validator,
                &mut state,
                raw.path,
                display,
                &bytes,
                &mut definitions,
            ),
            Err(message) => state.diagnostics.push(Diagnostic {
                file: display,
                pos: Pos { line: 1, column: 1 },
                message,
                line_text: None,
                related: Vec::new(),
            }),
        }
    }
    report_duplicate_ids(&mut state, definitions);

    if let Some(base) = &options.changed_since {
        let repo = repo
            .as_ref()
            .ok_or_else(|| not_in_git(&options.repo, "--changed-since"))?;
        let changes = repo.changed_since(base, options.rev.as_deref())?;
        let selected_files: BTreeSet<usize> = state
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| changes.changed.contains(&f.path))
            .map(|(i, _)| i)
            .collect();
        let selected_display: BTreeSet<String> = selected_files
            .iter()
            .map(|&i| state.files[i].display.clone())
            .chain(
                changes
                    .changed
                    .iter()
                    .map(|path| format!("{display_base}{path}")),
            )
            .collect();
        state
            .incidents
            .retain(|incident| selected_files.contains(&incident.file));
        state.diagnostics.retain(|d| {
            selected_display.contains(&d.file)
                || d.related.iter().any(|file| selected_display.contains(file))
        });
        state.selected_files = Some(selected_files.len());
        state.deleted = changes.deleted;
    }

    let by_display: HashMap<&str, &SourceFile> = state
        .files
        .iter()
        .map(|f| (f.display.as_str(), f))
        .collect();
    // Each file's lines are split once: thousands of errors in one file must not rescan it
    // for each error.
    let mut lines_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for diagnostic in &mut state.diagnostics {
        if diagnostic.line_text.is_none()
            && let Some(file) = by_display.get(diagnostic.file.as_str())
        {
            let lines = lines_of
                .entry(file.display.as_str())
                .or_insert_with(|| yaml_lines(&file.text));
            diagnostic.line_text = source_line(lines, diagnostic.pos.line);
        }
    }
    state
        .diagnostics
        .sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
    Ok(state)
}

/// Parses and validates one file's bytes exactly as [`load`] does (decoding, YAML, schema,
/// ids defined twice in the file) and returns its diagnostics: the entry point of the fuzz
/// target and of anything else that checks a single file.
pub fn check_file(path: &str, bytes: &[u8]) -> Vec<Diagnostic> {
    static VALIDATOR: std::sync::OnceLock<Result<SchemaValidator, String>> =
        std::sync::OnceLock::new();
    let validator = match VALIDATOR.get_or_init(SchemaValidator::new) {
        Ok(validator) => validator,
        Err(message) => {
            return vec![Diagnostic {
                file: path.to_string(),
                pos: Pos { line: 1, column: 1 },
                message: message.clone(),
                line_text: None,
                related: Vec::new(),
            }];
        }
    };
    let mut state = DesiredState::default();
    let mut definitions = Vec::new();
    check_bytes(
        validator,
        &mut state,
        path.to_string(),
        path.to_string(),
        bytes,
        &mut definitions,
    );
    report_duplicate_ids(&mut state, definitions);
    state.diagnostics
}

/// Decodes one file, keeps its text in `state.files`, and parses and validates it.
fn check_bytes(
    validator: &SchemaValidator,
    state: &mut DesiredState,
    path: String,
    display: String,
    bytes: &[u8],
    definitions: &mut Vec<Definition>,
) {
    match decode(bytes) {
        Ok(text) => {
            state.files.push(SourceFile {
                path,
                display,
                text,
            });
            parse_file(validator, state, state.files.len() - 1, definitions);
        }
        Err((pos, message)) => state.diagnostics.push(Diagnostic {
            file: display,
            pos,
            message,
            line_text: None,
            related: Vec::new(),
        }),
    }
}

fn not_in_git(repo: &Path, flag: &str) -> SourceError {
    SourceError::Git(format!(
        "{flag} needs a git repository, and {} is not inside one",
        repo.display()
    ))
}

/// Where an id is defined: every document with an integer `id`, valid or not.
struct Definition {
    id: u64,
    file: usize,
    pos: Pos,
}

fn parse_file(
    validator: &SchemaValidator,
    state: &mut DesiredState,
    index: usize,
    definitions: &mut Vec<Definition>,
) {
    let file = &state.files[index];
    let docs = match yaml::parse_documents(&file.text) {
        Ok(docs) => docs,
        Err(error) => {
            state.diagnostics.push(Diagnostic {
                file: file.display.clone(),
                pos: error.pos,
                message: error.message,
                line_text: None,
                related: Vec::new(),
            });
            return;
        }
    };
    for doc in docs {
        if let Some(id) = doc.value.get("id").and_then(serde_json::Value::as_u64) {
            definitions.push(Definition {
                id,
                file: index,
                pos: doc.value_pos("/id"),
            });
        }
        match validator.check(&doc) {
            Ok(incident) => {
                let fields = FIELD_NAMES
                    .iter()
                    .filter_map(|name| {
                        doc.place(&format!("/{name}"))
                            .map(|place| (*name, place.value))
                    })
                    .collect();
                state.incidents.push(LoadedIncident {
                    incident,
                    file: index,
                    start: doc.start,
                    fields,
                });
            }
            Err(errors) => {
                let display = &state.files[index].display;
                state
                    .diagnostics
                    .extend(errors.into_iter().map(|error| Diagnostic {
                        file: display.clone(),
                        pos: error.pos,
                        message: error.message,
                        line_text: None,
                        related: Vec::new(),
                    }));
            }
        }
    }
}

/// The same id in two places is one error naming every place; only the first definition is
/// kept.
fn report_duplicate_ids(state: &mut DesiredState, definitions: Vec<Definition>) {
    let mut by_id: BTreeMap<u64, Vec<Definition>> = BTreeMap::new();
    for definition in definitions {
        by_id.entry(definition.id).or_default().push(definition);
    }
    let mut first_of = HashMap::new();
    for (id, places) in by_id.into_iter().filter(|(_, places)| places.len() > 1) {
        let where_: Vec<String> = places
            .iter()
            .map(|p| format!("{}:{}", state.files[p.file].display, p.pos))
            .collect();
        state.diagnostics.push(Diagnostic {
            file: state.files[places[1].file].display.clone(),
            pos: places[1].pos,
            message: format!(
                "incident {id} is defined more than once, at {}; keep exactly one definition",
                where_.join(" and ")
            ),
            line_text: None,
            related: places
                .iter()
                .map(|p| state.files[p.file].display.clone())
                .collect(),
        });
        first_of.insert(id, (places[0].file, places[0].pos));
    }
    state
        .incidents
        .retain(|incident| match first_of.get(&incident.incident.id) {
            Some(&(file, pos)) => incident.file == file && incident.fields.get("id") == Some(&pos),
            None => true,
        });
}

/// A file found below `incidents/`, before decoding.
pub(crate) struct RawFile {
    pub path: String,
    /// The bytes, or why the file was refused.
    pub content: Result<Vec<u8>, String>,
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Walks `<repo>/incidents/` on disk. Symbolic links are followed only while they stay
/// inside `--repo`.
fn read_work_tree(repo: &Path) -> Result<Vec<RawFile>, SourceError> {
    let root = fs::canonicalize(repo).map_err(|source| SourceError::Io {
        path: repo.display().to_string(),
        source,
    })?;
    let incidents = root.join("incidents");
    if !incidents.is_dir() {
        return Err(SourceError::NoIncidentsFolder {
            repo: repo.display().to_string(),
        });
    }
    let mut files = Vec::new();
    let mut visited = BTreeSet::new();
    walk(&root, &incidents, "incidents", &mut visited, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    visited: &mut BTreeSet<PathBuf>,
    files: &mut Vec<RawFile>,
) -> Result<(), SourceError> {
    let canonical = fs::canonicalize(dir).map_err(|source| SourceError::Io {
        path: rel.to_string(),
        source,
    })?;
    if !visited.insert(canonical) {
        return Ok(()); // a link cycle or a second link to the same folder
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|source| SourceError::Io {
            path: rel.to_string(),
            source,
        })?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: cannot be named in a message or a plan; not ours
        };
        let path = entry.path();
        let rel_path = format!("{rel}/{name}");
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mut target_meta = meta.clone();
        if meta.file_type().is_symlink() {
            match fs::canonicalize(&path) {
                Ok(target) if target.starts_with(root) => match fs::metadata(&target) {
                    Ok(m) => target_meta = m,
                    Err(_) => continue,
                },
                Ok(target) => {
                    if target.is_dir() || is_yaml(&name) {
                        files.push(RawFile {
                            path: rel_path,
                            content: Err(format!(
                                "is a symbolic link to {}, outside the repository; incidentops does not follow links out of --repo (copy the file in instead)",
                                target.display()
                            )),
                        });
                    }
                    continue;
                }
                Err(_) => {
                    if is_yaml(&name) {
                        files.push(RawFile {
                            path: rel_path,
                            content: Err("is a symbolic link to nothing (dangling link)".into()),
                        });
                    }
                    continue;
                }
            }
        }
        if target_meta.is_dir() {
            walk(root, &path, &rel_path, visited, files)?;
        } else if is_yaml(&name) {
            let content = if !target_meta.is_file() {
                Err("is not a regular file".to_string())
            } else if target_meta.len() > MAX_FILE_BYTES {
                Err(format!(
                    "is {} bytes; incident files are at most {MAX_FILE_BYTES} bytes",
                    target_meta.len()
                ))
            } else {
                read_capped(&path)
            };
            files.push(RawFile {
                path: rel_path,
                content,
            });
        }
    }
    Ok(())
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "is larger than {MAX_FILE_BYTES} bytes; incident files are small"
        ));
    }
    Ok(bytes)
}

/// UTF-8 with or without a BOM; anything else is an error at the first bad byte.
fn decode(bytes: &[u8]) -> Result<String, (Pos, String)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count() as u64
                + 1;
            let byte = bytes.get(error.valid_up_to()).copied().unwrap_or_default();
            Err((
                Pos { line, column },
                format!("the file is not valid UTF-8 (byte 0x{byte:02X}); save it as UTF-8"),
            ))
        }
    }
}

/// The lines as YAML counts them: a line ends at CR LF, LF, or a lone CR.
fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        lines.push(&rest[..end]);
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

fn source_line(lines: &[&str], line: u64) -> Option<String> {
    let index = usize::try_from(line.checked_sub(1)?).ok()?;
    let line = lines.get(index)?;
    Some(line.chars().take(300).collect())
}

/// `--repo` as the user typed it, as a prefix for display paths: `""` for `.`.
fn display_base(repo: &Path) -> String {
    let text = repo.to_string_lossy().replace('\\', "/");
    let trimmed = text.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_line_of_an_error_is_found_whatever_the_line_ends() {
        for (name, text) in [
            ("lf.yaml", "id: 5\nstatus: Activ\ntags: [a]\n"),
            ("crlf.yaml", "id: 5\r\nstatus: Activ\r\ntags: [a]\r\n"),
            ("cr.yaml", "id: 5\rstatus: Activ\rtags: [a]\r"),
        ] {
            let repo = tempfile::TempDir::new().unwrap();
            std::fs::create_dir(repo.path().join("incidents")).unwrap();
            std::fs::write(repo.path().join("incidents").join(name), text).unwrap();
            let state = load(&SourceOptions {
                repo: repo.path().to_path_buf(),
                rev: None,
                changed_since: None,
            })
            .unwrap();
            let [diagnostic] = &state.diagnostics[..] else {
                panic!("{name}: {:?}", state.diagnostics);
            };
            assert_eq!(diagnostic.pos, Pos { line: 2, column: 9 }, "{name}");
            assert_eq!(
                diagnostic.line_text.as_deref(),
                Some("status: Activ"),
                "{name}"
            );
        }
    }

    #[test]
    fn lines_end_at_crlf_lf_or_a_lone_cr() {
        assert_eq!(yaml_lines("a\r\nb\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(yaml_lines("a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(yaml_lines("\r\r"), ["", ""]);
        assert!(yaml_lines("").is_empty());
    }

    #[test]
    fn decode_accepts_bom_and_reports_bad_bytes_with_position() {
        assert_eq!(decode(b"\xEF\xBB\xBFid: 1\n").unwrap(), "id: 1\n");
        let (pos, message) = decode(b"id: 1\nstatus: \xFFx\n").unwrap_err();
        assert_eq!(pos, Pos { line: 2, column: 9 });
        assert!(message.contains("not valid UTF-8"));
    }

    #[test]
    fn display_base_follows_the_repo_argument() {
        assert_eq!(display_base(Path::new(".")), "");
        assert_eq!(display_base(Path::new("./")), "");
        assert_eq!(
            display_base(Path::new("examples/quickstart/")),
            "examples/quickstart/"
        );
    }
}
