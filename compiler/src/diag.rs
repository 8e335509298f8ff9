//! Diagnostics: collected, never thrown.
//!
//! Every user error is a [`Diagnostic`] with a stable code (`K0001`), a
//! message that names the layer and the shapes involved, and the [`Loc`] of
//! the offending layer or attribute. Stages push into a [`Diagnostics`] and
//! keep going where they can, so a run reports all its errors together. The
//! macro turns each into a `compile_error!` at its span; `kilnc` renders them
//! with file, line, column and the source line. `kilnc explain CODE` prints
//! [`Code::explanation`].

use crate::ast::Loc;

/// A stable diagnostic code.
///
/// Codes are never renumbered or reused; new kinds get new codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u16);

impl Code {
    /// The long explanation `kilnc explain CODE` prints (what the error
    /// means, an example and the fix), or `None` for an unknown code.
    pub fn explanation(self) -> Option<String> {
        crate::explain::explain(self)
    }
}

/// A secondary location with a short message ("the input comes from here").
#[derive(Debug, Clone)]
pub struct Label {
    /// Where.
    pub loc: Loc,
    /// What to say there.
    pub message: String,
}

/// One error (or warning) about the user's network.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The stable code.
    pub code: Code,
    /// Whether this is an error (compilation fails) or a warning.
    pub severity: Severity,
    /// One sentence naming the layer and both shapes where shapes are
    /// involved: "conv2d `c2`: expected 6 input channels, found 3 (input
    /// shape [3, 14, 14])".
    pub message: String,
    /// The offending layer or attribute.
    pub loc: Loc,
    /// Secondary locations.
    pub labels: Vec<Label>,
    /// Extra lines: hints, the fix.
    pub notes: Vec<String>,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Compilation fails.
    Error,
    /// Reported; compilation goes on.
    Warning,
}

impl Diagnostic {
    /// An error with a code, a message and a location.
    pub fn error(code: Code, loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            loc,
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, loc: Loc, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            loc,
            message: message.into(),
        });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The diagnostics of one run, in the order they were found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// The number recorded.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none were recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Moves every diagnostic of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// The diagnostics as a vector.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}
