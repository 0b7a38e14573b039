//! `incidentops schema`: the JSON Schema generated from the desired-state types.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::CommandError;

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub fn run(_: &SchemaArgs) -> Result<ExitCode, CommandError> {
    let text = crate::model::json_schema_text();
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`| head`) is a normal end, not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CommandError::User(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
