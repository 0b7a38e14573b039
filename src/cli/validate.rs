//! `incidentops validate`: parse and validate every desired-state file, report every error
//! like a compiler (text), as JSON, or as GitHub annotations.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{CommandError, SourceArgs};
use crate::source::{self, DesiredState, Diagnostic};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// How to report: compiler-style text (stderr), JSON (stdout), or GitHub annotations.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
}

pub fn run(args: &ValidateArgs) -> Result<ExitCode, CommandError> {
    let state = source::load(&args.source.options())?;
    match args.format {
        Format::Text => {
            let snippets = std::io::stderr().is_terminal();
            let mut out = String::new();
            for diagnostic in &state.diagnostics {
                out.push_str(&format_text(diagnostic, snippets));
            }
            eprint!("{out}");
        }
        Format::Json => {
            let errors: Vec<_> = state
                .diagnostics
                .iter()
                .map(|d| {
                    json!({"file": d.file, "line": d.pos.line, "column": d.pos.column, "message": d.message})
                })
                .collect();
            let report = json!({
                "valid": state.is_valid(),
                "files": state.files.len(),
                "incidents": state.incidents.len(),
                "errors": errors,
            });
            let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
            text.push('\n');
            super::schema::write_stdout(&text)?;
        }
        Format::Github => {
            let text: String = state.diagnostics.iter().map(format_github).collect();
            super::schema::write_stdout(&text)?;
        }
    }
    eprintln!("{}", summary(&state, args));
    Ok(if state.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary(state: &DesiredState, args: &ValidateArgs) -> String {
    let scope = match (&args.source.changed_since, state.selected_files) {
        (Some(base), Some(n)) => format!(
            " ({n} {} changed since {base}{})",
            plural(n, "file", "files"),
            if state.deleted.is_empty() {
                String::new()
            } else {
                format!(", {} deleted", state.deleted.len())
            }
        ),
        _ => String::new(),
    };
    if state.is_valid() {
        format!(
            "ok: {} {} in {} {} valid{scope}",
            state.incidents.len(),
            plural(state.incidents.len(), "incident", "incidents"),
            state.files.len(),
            plural(state.files.len(), "file", "files"),
        )
    } else {
        let files: std::collections::BTreeSet<&str> =
            state.diagnostics.iter().map(|d| d.file.as_str()).collect();
        format!(
            "error: {} {} in {} {}{scope}",
            state.diagnostics.len(),
            plural(state.diagnostics.len(), "problem", "problems"),
            files.len(),
            plural(files.len(), "file", "files"),
        )
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `file:line:col: message`, then the source line and a caret when showing snippets.
pub fn format_text(d: &Diagnostic, snippets: bool) -> String {
    let mut out = format!(
        "{}:{}:{}: {}\n",
        d.file, d.pos.line, d.pos.column, d.message
    );
    if snippets && let Some(line) = &d.line_text {
        let number = d.pos.line.to_string();
        let pad = " ".repeat(number.len());
        let caret_at: String = line
            .chars()
            .take(d.pos.column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("{number} | {line}\n{pad} | {caret_at}^\n"));
    }
    out
}

/// A GitHub Actions workflow command: `::error file=...,line=...,col=...::message`.
pub fn format_github(d: &Diagnostic) -> String {
    format!(
        "::error file={},line={},col={}::{}\n",
        escape_property(&d.file),
        d.pos.line,
        d.pos.column,
        escape_data(&d.message)
    )
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yaml::Pos;

    fn diagnostic() -> Diagnostic {
        Diagnostic {
            file: "incidents/a,b.yaml".into(),
            pos: Pos {
                line: 7,
                column: 16,
            },
            message: "determination \"Malware\" requires classification TruePositive\n100%".into(),
            line_text: Some("determination: Malware".into()),
            related: vec![],
        }
    }

    #[test]
    fn text_has_a_caret_under_the_column_only_with_snippets() {
        let d = diagnostic();
        assert_eq!(format_text(&d, false).lines().count(), 2); // message holds a newline
        let with = format_text(&d, true);
        assert!(
            with.ends_with("7 | determination: Malware\n  |                ^\n"),
            "{with}"
        );
    }

    #[test]
    fn github_annotations_escape_their_properties_and_data() {
        assert_eq!(
            format_github(&diagnostic()),
            "::error file=incidents/a%2Cb.yaml,line=7,col=16::determination \"Malware\" requires classification TruePositive%0A100%25\n"
        );
    }
}
