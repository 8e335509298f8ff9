//! Renders diagnostics for a text file: `file:line:col`, the source line, a
//! caret under the offending span, the message, labels and notes.
//!
//! Rendering is done by `codespan-reporting`, in plain text (no colour) so
//! the output is the same on a terminal, in a log and in a snapshot.
//! Diagnostics whose location is not in the file (macro spans, compiler-made
//! nodes) are printed without a source snippet.

use crate::ast::Loc;
use crate::codes::code_str;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config};
use std::ops::Range;

/// Renders every diagnostic of `diags` against `source`, the text of `file`.
pub fn render(file: &str, source: &str, diags: &Diagnostics) -> String {
    let files = SimpleFile::new(file, source);
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = String::new();
    for d in diags.iter() {
        let cs = to_codespan(file, d, source);
        match term::emit_into_string(&config, &files, &cs) {
            Ok(s) => out.push_str(&s),
            Err(_) => out.push_str(&fallback(file, d)),
        }
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        out.push_str(&format!(
            "error: {file}: {errors} error{} found\n",
            if errors == 1 { "" } else { "s" }
        ));
    }
    out
}

/// The byte range a location covers in `source`, if it is a text location
/// that lies inside it. An empty span grows to the rest of its token.
fn range(loc: Loc, source: &str) -> Option<Range<usize>> {
    let Loc::Text { offset, len, .. } = loc else {
        return None;
    };
    let start = offset as usize;
    if start > source.len() || !source.is_char_boundary(start) {
        return None;
    }
    let mut end = start.saturating_add(len as usize).min(source.len());
    if end == start {
        end = source[start..]
            .find(|c: char| c.is_whitespace())
            .map(|n| start + n)
            .unwrap_or(source.len());
    }
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    Some(start..end)
}

fn to_codespan(file: &str, d: &Diagnostic, source: &str) -> CsDiagnostic<()> {
    let base = match d.severity {
        Severity::Error => CsDiagnostic::error(),
        Severity::Warning => CsDiagnostic::warning(),
    };
    let mut labels = Vec::new();
    let mut message = d.message.clone();
    match range(d.loc, source) {
        Some(r) => labels.push(CsLabel::primary((), r)),
        // Without a place in the file, the header still names the file.
        None => message = format!("{file}: {message}"),
    }
    for l in &d.labels {
        if let Some(r) = range(l.loc, source) {
            labels.push(CsLabel::secondary((), r).with_message(l.message.clone()));
        }
    }
    base.with_code(code_str(d.code))
        .with_message(message)
        .with_labels(labels)
        .with_notes(d.notes.clone())
}

fn fallback(file: &str, d: &Diagnostic) -> String {
    let place = match d.loc {
        Loc::Text { line, col, .. } => format!("{file}:{line}:{col}"),
        _ => file.to_string(),
    };
    format!("error[{}]: {place}: {}\n", code_str(d.code), d.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    /// Renders one error at `loc` against `source` and compares with `expect`.
    fn check(source: &str, loc: Loc, expect: &str) {
        let mut diags = Diagnostics::new();
        diags.push(
            Diagnostic::error(codes::UNKNOWN_OP, loc, "unknown op or block `rleu`")
                .with_note("did you mean `relu`?"),
        );
        assert_eq!(render("m.yaml", source, &diags).trim_end(), expect.trim());
    }

    #[test]
    fn text_locations_get_a_snippet() {
        let text = |line, col, offset, len| Loc::Text {
            line,
            col,
            offset,
            len,
        };
        check(
            "layers:\n  - rleu\n",
            text(2, 5, 12, 4),
            "
error[K0100]: unknown op or block `rleu`
  --> m.yaml:2:5
  |
2 |   - rleu
  |     ^^^^
  |
  = did you mean `relu`?

error: m.yaml: 1 error found",
        );
        // A zero length grows to the end of the token.
        check(
            "layers:\n  - rleu\n",
            text(2, 5, 12, 0),
            "
error[K0100]: unknown op or block `rleu`
  --> m.yaml:2:5
  |
2 |   - rleu
  |     ^^^^
  |
  = did you mean `relu`?

error: m.yaml: 1 error found",
        );
    }

    #[test]
    fn other_locations_render_without_a_snippet() {
        let expect = "
error[K0100]: m.yaml: unknown op or block `rleu`
 = did you mean `relu`?

error: m.yaml: 1 error found";
        check("layers: []\n", Loc::Synthetic, expect);
        // An offset outside the file is not trusted either.
        let outside = Loc::Text {
            line: 9,
            col: 1,
            offset: 999,
            len: 3,
        };
        check("layers: []\n", outside, expect);
    }
}
