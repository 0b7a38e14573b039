//! Writes generated desired-state files for the benchmarks (`scripts/bench.sh`): the incidents
//! that `incidentops sandbox --generate N --seed S` serves, as `DIR/incidents/<id>.yaml`.
//!
//!   cargo run --release --example gen-bench-data -- --out DIR --count N [--seed S]
//!       [--changed FRACTION] [--every K]
//!
//! `--changed`: share of files that ask for a change (default 0.1); `--every K`: keep only every
//! K-th file (a repository that manages few of the tenant's incidents).

use std::path::PathBuf;
use std::process::ExitCode;

use incidentops::sandbox::generate_desired_files;

struct Options {
    out: PathBuf,
    count: usize,
    seed: u64,
    changed: f64,
    every: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        out: PathBuf::new(),
        count: 0,
        seed: 1,
        changed: 0.1,
        every: 1,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--out" => options.out = PathBuf::from(&value),
            "--count" => options.count = value.parse().map_err(|e| bad(&e))?,
            "--seed" => options.seed = value.parse().map_err(|e| bad(&e))?,
            "--changed" => options.changed = value.parse().map_err(|e| bad(&e))?,
            "--every" => options.every = value.parse::<usize>().map_err(|e| bad(&e))?.max(1),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.out.as_os_str().is_empty() {
        return Err("--out DIR is required".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("gen-bench-data: {message}");
            return ExitCode::from(2);
        }
    };
    let folder = options.out.join("incidents");
    if let Err(e) = std::fs::create_dir_all(&folder) {
        eprintln!("gen-bench-data: cannot create {}: {e}", folder.display());
        return ExitCode::FAILURE;
    }
    let files = generate_desired_files(options.count, options.seed, options.changed);
    let mut written = 0;
    for file in files.iter().step_by(options.every) {
        if let Err(e) = std::fs::write(options.out.join(&file.path), &file.text) {
            eprintln!("gen-bench-data: cannot write {}: {e}", file.path);
            return ExitCode::FAILURE;
        }
        written += 1;
    }
    eprintln!(
        "gen-bench-data: wrote {written} files to {}",
        folder.display()
    );
    ExitCode::SUCCESS
}
