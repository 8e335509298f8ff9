//! A YAML document as a small tree whose every node knows its position.
//!
//! `serde_yaml` is the project's YAML crate, but its `Value` carries no
//! positions, and every AST node needs a line and column. So the model file
//! is read as events by `saphyr-parser` (a YAML 1.2 parser whose events
//! carry exact spans, no `unsafe`) and built here into [`Node`]s. Only what
//! the model language needs is kept: scalars with their style, sequences and
//! mappings with their keys in order. Duplicate keys, aliases, complex keys,
//! several documents and nesting deeper than [`MAX_DEPTH`] are located
//! errors here, so the schema code never sees them.

use std::borrow::Cow;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

use crate::ast::Loc;
use crate::diag::{Diagnostic, Diagnostics};
use crate::frontend::codes;

/// How deep YAML collections may nest.
pub(crate) const MAX_DEPTH: usize = 64;

/// Maps positions in the source to [`Loc`]s (byte offsets, lines, columns).
#[derive(Debug)]
pub(crate) struct SourceMap<'s> {
    /// The source text.
    pub(crate) text: &'s str,
    /// The byte offset of every character, plus the length at the end.
    char_bytes: Vec<u32>,
    /// The byte offset of every line start.
    line_starts: Vec<u32>,
}

impl<'s> SourceMap<'s> {
    /// Indexes `text`. Offsets are `u32`: the caller rejects larger files.
    pub(crate) fn new(text: &'s str) -> Self {
        let mut char_bytes: Vec<u32> = text.char_indices().map(|(i, _)| i as u32).collect();
        char_bytes.push(text.len() as u32);
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        SourceMap {
            text,
            char_bytes,
            line_starts,
        }
    }

    /// The byte offset of a saphyr marker (whose index counts characters).
    fn byte_of(&self, m: &Marker) -> usize {
        let i = m.index().min(self.char_bytes.len() - 1);
        self.char_bytes[i] as usize
    }

    /// The location of the byte range `start..end`.
    pub(crate) fn loc(&self, start: usize, end: usize) -> Loc {
        let start = start.min(self.text.len());
        let end = end.clamp(start, self.text.len());
        let line = match self.line_starts.binary_search(&(start as u32)) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line] as usize;
        let col = self
            .text
            .get(line_start..start)
            .map_or(0, |s| s.chars().count());
        Loc::Text {
            line: line as u32 + 1,
            col: col as u32 + 1,
            offset: start as u32,
            len: (end - start) as u32,
        }
    }

    fn span_loc(&self, span: &Span) -> Loc {
        self.loc(self.byte_of(&span.start), self.byte_of(&span.end))
    }
}

/// A scalar: its text, its style and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    /// The scalar's value, after YAML unescaping and folding.
    pub(crate) value: String,
    /// Whether it was written plain (not quoted, not a block scalar).
    pub(crate) plain: bool,
    /// Whether it was a quoted or block scalar (always a string in YAML).
    pub(crate) quoted: bool,
    /// Where it was written, quotes included.
    pub(crate) loc: Loc,
    /// The byte offset in the source of the value's first byte, when the
    /// value is a verbatim copy of the source there (plain or quoted on one
    /// line without escapes); expression positions are exact then.
    pub(crate) verbatim_at: Option<usize>,
}

impl Scalar {
    /// Whether this is YAML's null (`~`, `null`, or nothing).
    pub(crate) fn is_null(&self) -> bool {
        self.plain && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

/// A node of the located tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence and where it starts.
    Seq(Vec<Node>, Loc),
    /// A mapping with scalar keys in source order, and where it starts.
    Map(Vec<(Scalar, Node)>, Loc),
}

impl Node {
    /// Where the node was written.
    pub(crate) fn loc(&self) -> Loc {
        match self {
            Node::Scalar(s) => s.loc,
            Node::Seq(_, loc) | Node::Map(_, loc) => *loc,
        }
    }

    /// A word for the node's kind, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(s) if s.is_null() => "nothing (null)",
            Node::Scalar(_) => "a scalar",
            Node::Seq(..) => "a list",
            Node::Map(..) => "a mapping",
        }
    }
}

/// A collection being built.
enum Frame {
    Seq(Vec<Node>, Loc),
    /// The entries, the start, and the key waiting for its value (`None`
    /// inside when the key was invalid and the entry is dropped).
    Map(Vec<(Scalar, Node)>, Loc, Option<Option<Scalar>>),
}

/// Reads `text` into a located tree: `None` when it holds no usable
/// document; every problem is pushed to `diags`.
pub(crate) fn read(map: &SourceMap<'_>, diags: &mut Diagnostics) -> Option<Node> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    for item in Parser::new_from_str(map.text) {
        let (event, span) = match item {
            Ok(pair) => pair,
            Err(e) => {
                let at = map.byte_of(e.marker());
                diags.push(Diagnostic::error(
                    codes::YAML_SYNTAX,
                    map.loc(at, at),
                    format!("invalid YAML: {}", e.info()),
                ));
                return None;
            }
        };
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents == 2 {
                    diags.push(Diagnostic::error(
                        codes::DOCUMENT_COUNT,
                        map.span_loc(&span),
                        "a model file holds one YAML document; this is a second one",
                    ));
                }
                continue;
            }
            Event::Scalar(value, style, _, tag) => {
                if tag.is_some() {
                    tag_error(map, &span, diags);
                }
                scalar(map, &span, value, style)
            }
            Event::Alias(_) => {
                diags.push(Diagnostic::error(
                    codes::YAML_ALIAS,
                    map.span_loc(&span),
                    "YAML aliases (`*name`) are not supported in model files; write the value out",
                ));
                Node::Scalar(Scalar {
                    value: String::new(),
                    plain: true,
                    quoted: false,
                    loc: map.span_loc(&span),
                    verbatim_at: None,
                })
            }
            Event::SequenceStart(_, tag) | Event::MappingStart(_, tag)
                if stack.len() >= MAX_DEPTH =>
            {
                let _ = tag;
                diags.push(Diagnostic::error(
                    codes::TOO_DEEP,
                    map.span_loc(&span),
                    format!("YAML nests deeper than {MAX_DEPTH} levels"),
                ));
                return None;
            }
            Event::SequenceStart(_, tag) => {
                if tag.is_some() {
                    tag_error(map, &span, diags);
                }
                stack.push(Frame::Seq(Vec::new(), map.span_loc(&span)));
                continue;
            }
            Event::MappingStart(_, tag) => {
                if tag.is_some() {
                    tag_error(map, &span, diags);
                }
                stack.push(Frame::Map(Vec::new(), map.span_loc(&span), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(items, loc)) => Node::Seq(items, loc),
                Some(Frame::Map(entries, loc, _)) => Node::Map(entries, loc),
                None => continue,
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
        };
        match stack.last_mut() {
            None => {
                if documents <= 1 && root.is_none() {
                    root = Some(node);
                }
            }
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, _, pending)) => match pending.take() {
                None => match node {
                    Node::Scalar(key) => *pending = Some(Some(key)),
                    other => {
                        diags.push(Diagnostic::error(
                            codes::WRONG_TYPE,
                            other.loc(),
                            format!("a mapping key must be a name, found {}", other.kind()),
                        ));
                        *pending = Some(None);
                    }
                },
                Some(None) => {}
                Some(Some(key)) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.value == key.value) {
                        diags.push(
                            Diagnostic::error(
                                codes::DUPLICATE_KEY,
                                key.loc,
                                format!("duplicate key `{}`", key.value),
                            )
                            .with_label(first.loc, "first written here"),
                        );
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
    if root.is_none() && !diags.has_errors() {
        diags.push(Diagnostic::error(
            codes::DOCUMENT_COUNT,
            map.loc(0, 0),
            "the file holds no YAML document; a model file is a mapping with `name`, `inputs`, `layers` and `outputs`",
        ));
    }
    root
}

fn tag_error(map: &SourceMap<'_>, span: &Span, diags: &mut Diagnostics) {
    diags.push(Diagnostic::error(
        codes::YAML_ALIAS,
        map.span_loc(span),
        "YAML tags (`!tag`) are not supported in model files",
    ));
}

fn scalar(map: &SourceMap<'_>, span: &Span, value: Cow<'_, str>, style: ScalarStyle) -> Node {
    let start = map.byte_of(&span.start);
    let end = map.byte_of(&span.end);
    let source = map.text.get(start..end).unwrap_or("");
    let plain = matches!(style, ScalarStyle::Plain);
    let verbatim_at = match style {
        ScalarStyle::Plain if source == value => Some(start),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
            if source.len() == value.len() + 2
                && source.get(1..source.len() - 1) == Some(&*value) =>
        {
            Some(start + 1)
        }
        _ => None,
    };
    Node::Scalar(Scalar {
        value: value.into_owned(),
        plain,
        quoted: !plain,
        loc: map.loc(start, end),
        verbatim_at,
    })
}
