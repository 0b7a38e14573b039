//! Hostile desired-state input through the real binary, each case in a child process confined
//! to 256 MiB of address space and 5 s of CPU (plus a wall-clock guard for anything that would
//! block): every file is either accepted (exit 0) or rejected (exit 1) with a
//! `file:line:col: message` line; never a crash, a panic (101), an abort or a hang.
//!
//! The committed corpus is `tests/fixtures/hostile/` with its verdicts in `expected.txt`; what
//! is too big to commit, or is not a plain file (symbolic links, a `.yaml` folder, a FIFO), is
//! made here. Linux only: the limits are bash's `ulimit -v` and `ulimit -t`.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

/// Address-space limit of each run (`ulimit -v`, KiB).
const MEMORY_KIB: u64 = 256 * 1024;
/// CPU-time limit of each run (`ulimit -t`, seconds): the time bound, independent of how busy
/// the machine is.
const CPU_SECONDS: u64 = 5;
/// Wall-clock guard: a run that blocks (reading a FIFO, waiting on a lock) uses no CPU.
const WALL: Duration = Duration::from_secs(30);

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// An empty repository: a folder with `incidents/`.
fn repo() -> TempDir {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("incidents")).unwrap();
    dir
}

#[derive(Debug)]
struct Run {
    /// `None`: ended by a signal (CPU limit, out of memory abort, crash, wall-clock kill).
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Exit 0 or 1 and no panic message: anything else is a bug whatever the input.
    fn assert_clean(&self, case: &str) {
        assert!(
            matches!(self.code, Some(0 | 1)),
            "{case}: exit {:?} after {:?} (a signal means a crash, an abort or a limit hit)\n{}",
            self.code,
            self.elapsed,
            tail(&self.stderr)
        );
        assert!(
            !self.stderr.contains("panicked"),
            "{case}: panicked\n{}",
            tail(&self.stderr)
        );
    }

    /// Rejected, and the first line is `incidents/<file>:LINE:COL: message`; returns LINE.
    fn rejection_line(&self, case: &str, file: &str) -> u64 {
        self.assert_clean(case);
        assert_eq!(self.code, Some(1), "{case}: expected a rejection");
        let first = self.stderr.lines().next().unwrap_or_default();
        let rest = first
            .strip_prefix(&format!("incidents/{file}:"))
            .unwrap_or_else(|| panic!("{case}: no `incidents/{file}:` prefix in {first:?}"));
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|l| l.parse::<u64>().ok());
        let column = parts.next().and_then(|c| c.parse::<u64>().ok());
        let message = parts.next().unwrap_or_default();
        match (line, column) {
            (Some(line), Some(column)) if line >= 1 && column >= 1 && message.len() > 2 => line,
            _ => panic!("{case}: not `file:line:col: message`: {first:?}"),
        }
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(2000);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// `incidentops validate --repo .` in `repo`, under the limits.
fn validate_confined(repo: &Path) -> Run {
    let script = format!(
        "ulimit -v {MEMORY_KIB} && ulimit -t {CPU_SECONDS} && exec \"$0\" validate --repo ."
    );
    let started = Instant::now();
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_incidentops"))
        .current_dir(repo)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .timeout(WALL)
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The verdicts of `expected.txt`: file name → `None` (accept) or `Some(line)` (reject).
fn expected_verdicts() -> Vec<(String, Option<u64>)> {
    let text = fs::read_to_string(hostile_dir().join("expected.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields.as_slice() {
                [name, "accept"] => (name.to_string(), None),
                [name, "reject", line] => (name.to_string(), Some(line.parse().unwrap())),
                _ => panic!("bad line in expected.txt: {l:?}"),
            }
        })
        .collect()
}

#[test]
fn every_committed_hostile_file_is_accepted_or_rejected_at_its_line_within_limits() {
    let verdicts = expected_verdicts();
    let mut on_disk: Vec<String> = fs::read_dir(hostile_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "expected.txt")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = verdicts.iter().map(|(name, _)| name.clone()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every file needs exactly one verdict in expected.txt"
    );

    let mut slowest = (Duration::ZERO, String::new());
    for (name, verdict) in &verdicts {
        let repo = repo();
        fs::copy(
            hostile_dir().join(name),
            repo.path().join("incidents").join(name),
        )
        .unwrap();
        let run = validate_confined(repo.path());
        match verdict {
            None => {
                run.assert_clean(name);
                assert_eq!(
                    run.code,
                    Some(0),
                    "{name}: expected acceptance\n{}",
                    tail(&run.stderr)
                );
            }
            Some(line) => assert_eq!(run.rejection_line(name, name), *line, "{name}"),
        }
        if run.elapsed > slowest.0 {
            slowest = (run.elapsed, name.clone());
        }
    }
    eprintln!(
        "{} hostile files; slowest {} in {:?}",
        verdicts.len(),
        slowest.1,
        slowest.0
    );
}

#[test]
fn the_whole_hostile_corpus_in_one_repository_is_rejected_within_limits() {
    let repo = repo();
    for (name, _) in expected_verdicts() {
        fs::copy(
            hostile_dir().join(&name),
            repo.path().join("incidents").join(&name),
        )
        .unwrap();
    }
    let run = validate_confined(repo.path());
    run.assert_clean("whole corpus");
    assert_eq!(run.code, Some(1));
    // Every rejected file is named in the one run, not only the first.
    for (name, verdict) in expected_verdicts() {
        if verdict.is_some() {
            assert!(
                run.stderr.contains(&format!("incidents/{name}:")),
                "{name} is not reported"
            );
        }
    }
}

#[test]
fn a_five_megabyte_string_is_rejected_at_its_position_within_limits() {
    let repo = repo();
    let text = format!(
        "id: 1\ncomments:\n  - \"{}\"\n",
        "x".repeat(5 * 1024 * 1024)
    );
    fs::write(repo.path().join("incidents/big.yaml"), text).unwrap();
    let run = validate_confined(repo.path());
    assert_eq!(run.rejection_line("5 MB string", "big.yaml"), 3);
    assert!(run.stderr.contains("longer than"), "{}", tail(&run.stderr));
}

#[test]
fn a_file_over_32_mib_is_refused_unread() {
    let repo = repo();
    let file = fs::File::create(repo.path().join("incidents/huge.yaml")).unwrap();
    file.set_len(33 * 1024 * 1024).unwrap(); // sparse: NUL bytes that are never read
    let run = validate_confined(repo.path());
    assert_eq!(run.rejection_line("33 MiB file", "huge.yaml"), 1);
    assert!(run.stderr.contains("at most"), "{}", tail(&run.stderr));
}

#[test]
fn a_file_of_almost_32_mib_of_long_comments_is_accepted_within_limits() {
    let repo = repo();
    let mut text = String::from("id: 1\ncomments:\n");
    let line = format!("  - {}\n", "y".repeat(60_000));
    while text.len() + line.len() < 32 * 1024 * 1024 {
        text.push_str(&line);
    }
    fs::write(repo.path().join("incidents/long.yaml"), text).unwrap();
    let run = validate_confined(repo.path());
    run.assert_clean("32 MiB of comments");
    assert_eq!(run.code, Some(0), "{}", tail(&run.stderr));
}

#[test]
fn one_document_more_than_the_limit_is_refused_within_limits() {
    let repo = repo();
    let text: String = (1..=100_001).map(|id| format!("---\nid: {id}\n")).collect();
    fs::write(repo.path().join("incidents/many.yaml"), text).unwrap();
    let run = validate_confined(repo.path());
    let line = run.rejection_line("100,001 documents", "many.yaml");
    assert!(line > 200_000, "reported at line {line}");
}

#[test]
fn a_million_tags_are_refused_within_limits() {
    let repo = repo();
    let tags = vec!["a"; 1_100_000].join(",");
    fs::write(
        repo.path().join("incidents/tags.yaml"),
        format!("id: 1\ntags: [{tags}]\n"),
    )
    .unwrap();
    let run = validate_confined(repo.path());
    assert_eq!(run.rejection_line("a million tags", "tags.yaml"), 2);
}

#[cfg(unix)]
#[test]
fn symbolic_links_out_of_the_repository_are_refused_at_line_one() {
    use std::os::unix::fs::symlink;
    let outside = TempDir::new().unwrap();
    fs::write(outside.path().join("secret.yaml"), "id: 1\n").unwrap();
    let repo = repo();
    let incidents = repo.path().join("incidents");
    symlink("/etc/passwd", incidents.join("passwd.yaml")).unwrap();
    symlink("/dev/zero", incidents.join("zero.yaml")).unwrap();
    symlink(
        outside.path().join("secret.yaml"),
        incidents.join("outside.yaml"),
    )
    .unwrap();
    symlink(outside.path(), incidents.join("outside-folder")).unwrap();
    symlink(
        incidents.join("nothing.yaml"),
        incidents.join("dangling.yaml"),
    )
    .unwrap();
    symlink(incidents.join("loop-b.yaml"), incidents.join("loop-a.yaml")).unwrap();
    symlink(incidents.join("loop-a.yaml"), incidents.join("loop-b.yaml")).unwrap();
    symlink(&incidents, incidents.join("cycle")).unwrap(); // a folder loop inside the repo
    fs::write(incidents.join("real.yaml"), "id: 2\n").unwrap();
    symlink(incidents.join("real.yaml"), incidents.join("alias.yml")).unwrap();

    let run = validate_confined(repo.path());
    run.assert_clean("symlinks");
    assert_eq!(run.code, Some(1));
    for file in [
        "passwd.yaml",
        "zero.yaml",
        "outside.yaml",
        "outside-folder",
        "dangling.yaml",
        "loop-a.yaml",
        "loop-b.yaml",
    ] {
        assert!(
            run.stderr.contains(&format!("incidents/{file}:1:1: ")),
            "{file} is not refused at 1:1\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("root:"), "{}", run.stderr);
    // The link inside the repository is followed: real.yaml and alias.yml both define id 2.
    assert!(
        run.stderr.contains("incident 2 is defined more than once"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_folder_named_like_a_yaml_file_is_walked_not_read() {
    let repo = repo();
    let incidents = repo.path().join("incidents");
    fs::create_dir_all(incidents.join("team.yaml")).unwrap();
    fs::write(incidents.join("team.yaml/inner.yaml"), "id: 3\n").unwrap();
    fs::create_dir_all(incidents.join("empty.yml")).unwrap();
    let run = validate_confined(repo.path());
    run.assert_clean(".yaml folder");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 incident in 1 file"),
        "{}",
        run.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_named_like_a_yaml_file_is_refused_without_blocking() {
    let repo = repo();
    let fifo = repo.path().join("incidents/pipe.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let run = validate_confined(repo.path());
    assert_eq!(run.rejection_line("fifo", "pipe.yaml"), 1);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}
