//! The one diagnostic type of ssmc: message, primary label, secondary labels, notes and a
//! hint, rendered with file:line:col and a caret by codespan-reporting.

use crate::ast::Span;
use crate::shown::Shown;
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};

/// Most errors, and separately most warnings, that [`Diagnostics::render`] shows.
pub const MAX_SHOWN: usize = 50;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// Worth reading; the file is accepted.
    Warning,
}

/// A span with a message written under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say there (may be empty).
    pub message: String,
}

/// One problem found in a `.ssm` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub message: String,
    /// Where it is wrong.
    pub primary: Label,
    /// Related places (an earlier declaration, ...).
    pub secondary: Vec<Label>,
    /// Extra facts.
    pub notes: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            primary: Label { span, message: label.into() },
            secondary: Vec::new(),
            notes: Vec::new(),
            hint: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message, span, label) }
    }

    /// Adds a related place.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label { span, message: message.into() });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the hint if there is one.
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    fn to_codespan(&self, shown: &Shown, len: usize) -> cs::Diagnostic<()> {
        let clamp = |s: Span| {
            let start = s.start.min(len);
            shown.map(start)..shown.map(s.end.min(len).max(start))
        };
        let mut labels = vec![cs::Label::primary((), clamp(self.primary.span)).with_message(&self.primary.message)];
        labels.extend(self.secondary.iter().map(|l| cs::Label::secondary((), clamp(l.span)).with_message(&l.message)));
        let mut notes = self.notes.clone();
        notes.extend(self.hint.iter().map(|h| format!("help: {h}")));
        let d = match self.severity {
            Severity::Error => cs::Diagnostic::error(),
            Severity::Warning => cs::Diagnostic::warning(),
        };
        d.with_message(&self.message).with_labels(labels).with_notes(notes)
    }
}

/// A source file: its display name and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Name shown in diagnostics (usually the path).
    pub name: String,
    /// The text.
    pub text: String,
}

impl SourceFile {
    /// A file named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile { name: name.into(), text: text.into() }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// All diagnostics of one file, errors and warnings, in the order found.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Renders the diagnostics as text with carets, sorted by position: the first
    /// [`MAX_SHOWN`] errors and the first [`MAX_SHOWN`] warnings, then a count of the rest.
    pub fn render(&self, file: &SourceFile, color: bool) -> String {
        self.render_at_most(file, color, MAX_SHOWN)
    }

    /// [`Diagnostics::render`] with at most `max` errors and `max` warnings shown.
    pub fn render_at_most(&self, file: &SourceFile, color: bool, max: usize) -> String {
        let shown = Shown::new(&file.text);
        let simple = SimpleFile::new(file.name.as_str(), shown.text.as_ref());
        let config = term::Config::default();
        let mut sorted: Vec<&Diagnostic> = self.0.iter().collect();
        sorted.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
        let mut out = Vec::new();
        let mut emit = |cs: &cs::Diagnostic<()>| {
            // Writing into a Vec cannot fail; a failure would only lose this diagnostic's text.
            let _ = if color {
                term::emit(&mut termcolor::Ansi::new(&mut out), &config, &simple, cs)
            } else {
                term::emit(&mut termcolor::NoColor::new(&mut out), &config, &simple, cs)
            };
        };
        let (mut errors, mut warnings) = (0usize, 0usize);
        for d in sorted {
            let seen = if d.severity == Severity::Error { &mut errors } else { &mut warnings };
            *seen += 1;
            if *seen <= max {
                emit(&d.to_codespan(&shown, file.text.len()));
            }
        }
        for (count, what, d) in
            [(errors, "error", cs::Diagnostic::error()), (warnings, "warning", cs::Diagnostic::warning())]
        {
            if count > max {
                let rest = count - max;
                emit(&d.with_message(format!("{rest} more {what}{} not shown", if rest == 1 { "" } else { "s" })));
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

/// `Some("did you mean `x`?")` for the candidate closest to `name`, if one is close.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        // Edit distance with transpositions, so that `f23` still suggests `f32`.
        let close = score > 0.8 || strsim::osa_distance(name, c) <= name.len().min(c.len()) / 3;
        if close && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("dleta", ["delta", "u"]).as_deref(), Some("did you mean `delta`?"));
        assert_eq!(did_you_mean("zzz", ["delta", "u"]), None);
        assert_eq!(did_you_mean("f23", ["f32", "f64", "bf16", "f16"]).as_deref(), Some("did you mean `f32`?"));
    }

    #[test]
    fn line_col_is_one_based() {
        let f = SourceFile::new("f", "ab\ncd");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(4), (2, 2));
    }
}
