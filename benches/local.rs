//! `cargo bench --bench local`: the local work of incidentops, in process, without HTTP or
//! process start-up: loading + validating generated files, parsing list pages of current state,
//! diffing (the plan), and rendering the JSON plan. Each measurement runs `RUNS` times and
//! prints min / median / max, total and per incident. No harness: `std::time::Instant` only.
//!
//!   cargo bench --bench local               # 1,000 and 10,000 incidents
//!   BENCH_SIZES=1000,10000,100000 cargo bench --bench local

use std::collections::HashMap;
use std::fs;
use std::hint::black_box;
use std::time::{Duration, Instant};

use incidentops::api::wire::{Incident, IncidentPage};
use incidentops::plan::{self, PlanSource};
use incidentops::sandbox::{generate_desired_files, generate_incidents};
use incidentops::source::{self, SourceOptions};

const RUNS: usize = 5;
const SEED: u64 = 1;
/// The share of generated files that ask for a change.
const CHANGED: f64 = 0.1;

fn measure<T>(mut work: impl FnMut() -> T) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(work());
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, n: usize, times: &[Duration]) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    println!(
        "| {what} | {n} | {:.1} / {:.1} / {:.1} ms | {:.2} / {:.2} / {:.2} µs |",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        per(min),
        per(median),
        per(max),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "runs: {RUNS}, seed {SEED}, {:.0}% of files changed",
        CHANGED * 100.0
    );
    println!(
        "| measurement | incidents | total min / median / max | per incident min / median / max |"
    );
    println!("|---|---|---|---|");
    for n in sizes {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("cannot create a temporary folder: {e}");
                return;
            }
        };
        let files = generate_desired_files(n, SEED, CHANGED);
        let written = fs::create_dir_all(dir.path().join("incidents")).and_then(|()| {
            files
                .iter()
                .try_for_each(|f| fs::write(dir.path().join(&f.path), &f.text))
        });
        if let Err(e) = written {
            eprintln!("cannot write the generated files: {e}");
            return;
        }
        let options = SourceOptions {
            repo: dir.path().to_path_buf(),
            ..SourceOptions::default()
        };
        let Ok(desired) = source::load(&options) else {
            eprintln!("cannot load the generated files");
            return;
        };
        report(
            "load + validate files",
            files.len(),
            &measure(|| source::load(&options).map(|s| s.incidents.len())),
        );

        // Current state as the list API pages it: 100 incidents per page.
        let pages: Vec<String> = generate_incidents(n, SEED)
            .chunks(100)
            .map(|chunk| serde_json::json!({ "value": chunk }).to_string())
            .collect();
        report(
            "parse list pages (current state)",
            n,
            &measure(|| {
                pages
                    .iter()
                    .filter_map(|p| serde_json::from_str::<IncidentPage>(p).ok())
                    .map(|p| p.value.len())
                    .sum::<usize>()
            }),
        );

        let current: HashMap<u64, Incident> = pages
            .iter()
            .filter_map(|p| serde_json::from_str::<IncidentPage>(p).ok())
            .flat_map(|p| p.value)
            .map(|i| (i.incident_id, i))
            .collect();
        let build = || {
            plan::build(plan::Inputs {
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
            })
        };
        report(
            "diff + plan",
            desired.incidents.len(),
            &measure(|| build().changes.len()),
        );
        let built = build();
        report(
            "render JSON plan (as `--format json`)",
            desired.incidents.len(),
            &measure(|| serde_json::to_string_pretty(&built).map(|t| t.len())),
        );
    }
}
