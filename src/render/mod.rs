//! PLACEHOLDER until the render branch lands: minimal plan rendering.

use crate::plan::Plan;

pub struct TextOptions {
    pub color: bool,
}

pub fn text(plan: &Plan, _: &TextOptions) -> String {
    let mut out = String::new();
    for change in &plan.changes {
        out.push_str(&format!(
            "~ incident {} ({}:{})\n",
            change.id, change.file, change.line
        ));
        for field in &change.fields {
            out.push_str(&format!(
                "    {}: {} → {}\n",
                field.field, field.before, field.after
            ));
        }
    }
    for error in &plan.errors {
        out.push_str(&format!(
            "{}:{}:{}: {}\n",
            error.file, error.line, error.column, error.message
        ));
    }
    out.push_str(&format!(
        "Plan: {} incidents to change, {} unchanged.\n",
        plan.summary.changed, plan.summary.unchanged
    ));
    out
}

pub fn markdown(plan: &Plan, _limit: usize) -> String {
    text(plan, &TextOptions { color: false })
}
