//! The benchmark data generator (`generate_desired_files`, used by `examples/gen-bench-data.rs`
//! and `benches/`): deterministic, valid, and planned against the sandbox's generated incidents
//! exactly as drawn.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use incidentops::api::wire::Incident;
use incidentops::plan::{self, PlanSource};
use incidentops::sandbox::{
    BENCHMARK_COMMENT, DesiredFile, generate_desired_files, generate_incidents,
};
use incidentops::source::{self, DesiredState, SourceOptions};

fn write_repo(dir: &Path, files: &[DesiredFile]) {
    fs::create_dir_all(dir.join("incidents")).unwrap();
    for file in files {
        fs::write(dir.join(&file.path), &file.text).unwrap();
    }
}

fn load(dir: &Path) -> DesiredState {
    source::load(&SourceOptions {
        repo: dir.to_path_buf(),
        ..SourceOptions::default()
    })
    .unwrap()
}

#[test]
fn desired_files_are_the_same_for_a_seed_and_differ_across_seeds() {
    let first = generate_desired_files(300, 7, 0.2);
    assert_eq!(first, generate_desired_files(300, 7, 0.2));
    assert_ne!(first, generate_desired_files(300, 8, 0.2));
    // Merged incidents are skipped, so a few of the 300 generated ones have no file.
    assert!((280..300).contains(&first.len()), "{}", first.len());
    assert!(first.iter().all(|f| f.path.starts_with("incidents/1")));
}

#[test]
fn every_generated_desired_file_validates() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate_desired_files(2_000, 3, 0.5);
    write_repo(dir.path(), &files);
    let state = load(dir.path());
    assert!(state.is_valid(), "{:?}", state.diagnostics.first());
    assert_eq!(state.files.len(), files.len());
    assert_eq!(state.incidents.len(), files.len());
}

#[test]
fn plan_against_the_generated_incidents_changes_exactly_the_drawn_share() {
    let (n, seed) = (1_500, 11);
    let dir = tempfile::tempdir().unwrap();
    let files = generate_desired_files(n, seed, 0.1);
    write_repo(dir.path(), &files);
    let desired = load(dir.path());
    let current: HashMap<u64, Incident> = generate_incidents(n, seed)
        .into_iter()
        .map(|value| serde_json::from_value::<Incident>(value).unwrap())
        .map(|incident| (incident.incident_id, incident))
        .collect();
    let plan = plan::build(plan::Inputs {
        desired: &desired,
        current: &current,
        source: PlanSource {
            repo: ".".into(),
            commit: None,
            rev: None,
            changed_since: None,
        },
        read_calls: 0,
        calls_per_minute: 50,
        calls_per_hour: 1500,
        edit_check: incidentops::apply::EditCheck::Auto,
    });
    let drawn = files
        .iter()
        .filter(|f| f.text.contains(BENCHMARK_COMMENT))
        .count();
    assert!(plan.errors.is_empty(), "{:?}", plan.errors.first());
    assert!((100..200).contains(&drawn), "about 10% of {n}: {drawn}");
    assert_eq!(plan.changes.len(), drawn);
    assert_eq!(plan.summary.unchanged, files.len() - drawn);
    // One PATCH each: the changed fields and the one new comment travel together.
    assert!(plan.changes.iter().all(|c| c.requests.len() == 1));
}
