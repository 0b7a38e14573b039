//! End-to-end tests of `incidentops validate` and `incidentops schema` through the real binary,
//! and of desired-state loading from git revisions.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use git2::{Repository, Signature};
use incidentops::source::{self, SourceOptions};
use tempfile::TempDir;

fn incidentops() -> Command {
    let mut cmd = Command::cargo_bin("incidentops").expect("binary is built");
    cmd.env_clear()
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60));
    cmd
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A plain folder (not git) with the given files below it.
fn folder(files: &[(&str, &[u8])]) -> TempDir {
    let dir = TempDir::new().unwrap();
    fs::create_dir_all(dir.path().join("incidents")).unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn validate(repo: &Path, args: &[&str]) -> Run {
    let output = incidentops()
        .current_dir(repo)
        .arg("validate")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn quickstart_example_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let run = validate(&repo, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("ok: 5 incidents in 4 files valid"),
        "{}",
        run.stderr
    );
}

#[test]
fn every_invalid_sample_fails_with_its_position_and_message() {
    let mut checked = 0;
    for entry in fs::read_dir(fixtures().join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = fs::read(&path).unwrap();
        // The first line says what to expect: `# expect: LINE:COL message`.
        let header =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap()).into_owned();
        let expect = header
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{name} has no expect header"));
        let (position, message) = expect.split_once(' ').unwrap();
        let repo = folder(&[(&format!("incidents/{name}"), &bytes)]);
        let run = validate(repo.path(), &[]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        let wanted = format!("incidents/{name}:{position}: ");
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&wanted))
            .unwrap_or_else(|| panic!("{name}: no error at {position}:\n{}", run.stderr));
        assert!(line.contains(message), "{name}: {line}");
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} samples");
}

#[test]
fn a_five_megabyte_string_is_refused_with_its_position() {
    let text = format!(
        "id: 1\ncomments:\n  - \"{}\"\n",
        "x".repeat(5 * 1024 * 1024)
    );
    let repo = folder(&[("incidents/big.yaml", text.as_bytes())]);
    let run = validate(repo.path(), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("incidents/big.yaml:3:5: a string of 5242880 bytes is longer than"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_repo_are_refused_and_links_inside_are_followed() {
    let outside = folder(&[("secret.yaml", b"id: 1\n")]);
    let repo = folder(&[("shared/inner.yaml", b"id: 2\n")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        repo.path().join("incidents/escape.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("incidents/escape-dir")).unwrap();
    std::os::unix::fs::symlink(
        repo.path().join("shared/inner.yaml"),
        repo.path().join("incidents/inner.yaml"),
    )
    .unwrap();
    let run = validate(repo.path(), &["--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for error in errors {
        assert_eq!(error["line"], 1);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("outside the repository"),
            "{error}"
        );
    }
    assert_eq!(
        report["incidents"], 1,
        "the link inside the repo is followed"
    );
}

#[test]
fn multi_document_files_yield_every_incident_and_skip_empty_documents() {
    let repo = folder(&[(
        "incidents/nested/batch.yml",
        b"---\nid: 1\nstatus: Active\n---\n---\n# only a comment\n---\nid: 2\ntags: [a]\n...\n---\nid: 3\n",
    )]);
    let state = source::load(&SourceOptions {
        repo: repo.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    assert!(state.is_valid(), "{:?}", state.diagnostics);
    let ids: Vec<u64> = state.incidents.iter().map(|i| i.incident.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(state.incidents[1].start.line, 8);
    assert_eq!(state.files[0].path, "incidents/nested/batch.yml");
}

#[test]
fn the_same_id_in_two_files_is_one_error_naming_both() {
    let repo = folder(&[
        ("incidents/a.yaml", b"id: 924565\nstatus: Active\n"),
        ("incidents/b.yaml", b"# again\nid: 924565\n"),
    ]);
    let run = validate(repo.path(), &[]);
    assert_eq!(run.code, 1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("defined more than once"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].starts_with("incidents/b.yaml:2:5: incident 924565 is defined more than once, at incidents/a.yaml:1:5 and incidents/b.yaml:2:5"),
        "{}",
        errors[0]
    );
}

#[test]
fn every_error_of_every_file_is_reported_in_one_run() {
    let repo = folder(&[
        ("incidents/a.yaml", b"id: 1\nstatus: Done\nowner: me\n"),
        ("incidents/b.yaml", b"id: [\n"),
        ("incidents/c.yaml", b"id: 3\n"),
    ]);
    let run = validate(repo.path(), &["--format", "github"]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with("::error file=incidents/a.yaml,line=2,col=9::status \"Done\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("::error file=incidents/a.yaml,line=3,col=1::unknown field `owner`"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("::error file=incidents/b.yaml,line="),
        "{}",
        lines[2]
    );
    assert!(
        run.stderr.contains("error: 3 problems in 2 files"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_report_lists_errors_with_positions_on_stdout_only() {
    let repo = folder(&[(
        "incidents/a.yaml",
        b"id: 1\nclassification: FalsePositive\ndetermination: Malware\n",
    )]);
    let run = validate(repo.path(), &["--format", "json"]);
    assert_eq!(run.code, 1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is only JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["file"], "incidents/a.yaml");
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["errors"][0]["column"], 16);
}

#[test]
fn a_missing_incidents_folder_says_what_to_do() {
    let dir = TempDir::new().unwrap();
    let run = validate(dir.path(), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no incidents/ folder"),
        "{}",
        run.stderr
    );
}

#[test]
fn committed_schema_equals_the_generated_one() {
    let output = incidentops().arg("schema").output().unwrap();
    assert!(output.status.success());
    let committed = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/incident.schema.json"),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        committed,
        "schema/incident.schema.json is stale: run `cargo run -- schema > schema/incident.schema.json`"
    );
}

#[test]
fn schema_lists_enum_members_and_describes_every_field() {
    let schema = incidentops::model::json_schema();
    for (name, property) in schema["properties"].as_object().unwrap() {
        assert!(property.get("title").is_some(), "{name} has no title");
        assert!(
            property.get("description").is_some(),
            "{name} has no description"
        );
    }
    assert_eq!(
        schema["$defs"]["Determination"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

// --- git ---------------------------------------------------------------------------------

struct GitRepo {
    dir: TempDir,
    repo: Repository,
}

impl GitRepo {
    fn new() -> GitRepo {
        let dir = TempDir::new().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        GitRepo { dir, repo }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn remove(&self, path: &str) {
        fs::remove_file(self.path().join(path)).unwrap();
    }

    /// Stages everything (additions, changes and removals) and commits it.
    fn commit(&self, message: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = Signature::now("test", "test@example.com").unwrap();
        let parents: Vec<git2::Commit> = self
            .repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
    }

    fn load(
        &self,
        repo: &str,
        rev: Option<&str>,
        changed_since: Option<&str>,
    ) -> source::DesiredState {
        source::load(&SourceOptions {
            repo: self.path().join(repo),
            rev: rev.map(str::to_string),
            changed_since: changed_since.map(str::to_string),
        })
        .unwrap()
    }
}

fn ids(state: &source::DesiredState) -> Vec<u64> {
    let mut ids: Vec<u64> = state.incidents.iter().map(|i| i.incident.id).collect();
    ids.sort();
    ids
}

#[test]
fn rev_reads_the_committed_files_not_the_working_tree() {
    let git = GitRepo::new();
    git.write("secops/incidents/a.yaml", "id: 1\nstatus: Active\n");
    let first = git.commit("first");
    // The working tree moves on: an invalid edit and a new file.
    git.write("secops/incidents/a.yaml", "id: 1\nstatus: Closed\n");
    git.write("secops/incidents/b.yaml", "id: 2\n");

    let work = validate(&git.path().join("secops"), &[]);
    assert_eq!(work.code, 1, "the working tree is invalid: {}", work.stderr);
    let committed = validate(&git.path().join("secops"), &["--rev", "HEAD"]);
    assert_eq!(committed.code, 0, "{}", committed.stderr);
    assert!(
        committed.stderr.contains("ok: 1 incident in 1 file valid"),
        "{}",
        committed.stderr
    );

    let state = git.load("secops", Some(&first), None);
    assert_eq!(state.commit.as_deref(), Some(first.as_str()));
    assert_eq!(ids(&state), vec![1]);
    assert_eq!(
        state.incidents[0].incident.status,
        Some(incidentops::model::Status::Active)
    );
}

#[test]
fn rev_works_on_a_detached_head_and_reports_unknown_revisions() {
    let git = GitRepo::new();
    git.write("incidents/a.yaml", "id: 1\n");
    let first = git.commit("first");
    git.write("incidents/b.yaml", "id: 2\n");
    git.commit("second");
    git.repo
        .set_head_detached(git2::Oid::from_str(&first).unwrap())
        .unwrap();

    assert_eq!(ids(&git.load(".", Some("HEAD"), None)), vec![1]);
    let run = validate(git.path(), &["--rev", "no-such-branch"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unknown git revision `no-such-branch`"),
        "{}",
        run.stderr
    );
}

#[test]
fn rev_in_a_shallow_clone_reads_the_commit_it_has() {
    let git = GitRepo::new();
    git.write("incidents/a.yaml", "id: 1\n");
    git.commit("first");
    git.write("incidents/b.yaml", "id: 2\n");
    git.commit("second");
    let clone = TempDir::new().unwrap();
    let status = std::process::Command::new("git")
        .args(["clone", "--quiet", "--depth=1"])
        .arg(format!("file://{}", git.path().display()))
        .arg(clone.path().join("c"))
        .status()
        .expect("git is installed");
    assert!(status.success());
    assert!(
        clone.path().join("c/.git/shallow").exists(),
        "the clone is shallow"
    );
    let state = source::load(&SourceOptions {
        repo: clone.path().join("c"),
        rev: Some("HEAD".into()),
        changed_since: None,
    })
    .unwrap();
    assert_eq!(ids(&state), vec![1, 2]);
}

#[test]
fn rev_refuses_committed_symlinks_out_of_the_repo() {
    let git = GitRepo::new();
    git.write("team/incidents/a.yaml", "id: 1\n");
    git.write("team/shared.yaml", "id: 2\n");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            "../../outside.yaml",
            git.path().join("team/incidents/escape.yaml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../shared.yaml",
            git.path().join("team/incidents/shared.yaml"),
        )
        .unwrap();
    }
    git.commit("links");
    let state = git.load("team", Some("HEAD"), None);
    assert_eq!(
        ids(&state),
        vec![1, 2],
        "the link inside --repo is followed"
    );
    assert_eq!(state.diagnostics.len(), 1, "{:?}", state.diagnostics);
    assert!(
        state.diagnostics[0]
            .message
            .contains("outside the repository")
    );
    assert_eq!(
        state.diagnostics[0].file,
        format!("{}/team/incidents/escape.yaml", git.path().display())
    );
}

#[test]
fn changed_since_selects_added_modified_and_renamed_files_and_lists_deleted_ones() {
    let git = GitRepo::new();
    git.write("incidents/modified.yaml", "id: 1\nstatus: Active\n");
    git.write("incidents/renamed.yaml", "id: 2\nstatus: Active\ntags: [a, b, c, d]\ncomments: [one long enough comment to be recognised as the same file]\n");
    git.write("incidents/deleted.yaml", "id: 3\n");
    git.write("incidents/untouched.yaml", "id: 4\n");
    let base = git.commit("base");
    git.write("incidents/modified.yaml", "id: 1\nstatus: Resolved\n");
    git.remove("incidents/renamed.yaml");
    git.write("incidents/sub/moved.yaml", "id: 2\nstatus: Active\ntags: [a, b, c, d]\ncomments: [one long enough comment to be recognised as the same file]\n");
    git.remove("incidents/deleted.yaml");
    git.write("incidents/added.yaml", "id: 5\n");
    git.commit("change");

    let state = git.load(".", Some("HEAD"), Some(&base));
    assert_eq!(ids(&state), vec![1, 2, 5]);
    assert_eq!(state.deleted, vec!["incidents/deleted.yaml".to_string()]);
    assert_eq!(state.selected_files, Some(3));

    // Against the working tree: uncommitted and untracked files count too.
    git.write("incidents/untouched.yaml", "id: 4\nstatus: Resolved\n");
    git.write("incidents/new.yaml", "id: 6\n");
    let state = git.load(".", None, Some("HEAD"));
    assert_eq!(ids(&state), vec![4, 6]);

    let run = validate(git.path(), &["--rev", "HEAD", "--changed-since", &base]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("ok: 3 incidents in 4 files valid (3 files changed since"),
        "{}",
        run.stderr
    );
}

#[test]
fn changed_since_reports_only_errors_of_changed_files() {
    let git = GitRepo::new();
    git.write("incidents/broken.yaml", "id: 1\nstatus: Done\n");
    git.write("incidents/b.yaml", "id: 2\n");
    let base = git.commit("base");
    git.write("incidents/b.yaml", "id: 2\nstatus: Resolved\n");
    let run = validate(git.path(), &["--changed-since", &base]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = validate(git.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn changed_since_outside_git_is_a_clear_error() {
    let repo = folder(&[("incidents/a.yaml", b"id: 1\n")]);
    let run = validate(repo.path(), &["--changed-since", "HEAD"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("--changed-since needs a git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn every_valid_sample_passes() {
    for entry in fs::read_dir(fixtures().join("valid")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let repo = folder(&[(&format!("incidents/{name}"), &fs::read(&path).unwrap())]);
        let run = validate(repo.path(), &[]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    }
}
