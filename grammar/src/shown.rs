//! Source text as diagnostics show it: invisible characters (control characters, zero-width
//! and bidirectional marks) replaced by visible ones, so that a caret under one has width,
//! and a leading byte-order mark dropped, as editors hide it. Spans are mapped onto it.

use std::borrow::Cow;

/// Whether `c` shows nothing (or moves text around) where it stands: control characters
/// other than tab and line ends, zero-width characters, bidirectional controls, a BOM.
pub fn is_invisible(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(
            c,
            '\u{00AD}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// `U+000B`: how a message names an invisible character.
pub fn escaped(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// The visible stand-in of an invisible character, one column wide: the Unicode control
/// picture of a C0 control or DEL (`␋` for U+000B), `�` for the others.
fn stand_in(c: char) -> char {
    match c as u32 {
        n @ 0..=0x1f => char::from_u32(0x2400 + n).unwrap_or('\u{FFFD}'),
        0x7f => '\u{2421}',
        _ => '\u{FFFD}',
    }
}

/// A text as shown, and where its replaced characters were.
pub(crate) struct Shown<'a> {
    /// The text to render.
    pub text: Cow<'a, str>,
    /// Per replaced character: its offset and length in the original text, and the total
    /// change in length up to and including it.
    edits: Vec<(usize, usize, isize)>,
}

impl<'a> Shown<'a> {
    /// `text` as shown; borrowed as it is when nothing in it is invisible.
    pub(crate) fn new(text: &'a str) -> Self {
        if !text.chars().any(is_invisible) {
            return Shown { text: Cow::Borrowed(text), edits: Vec::new() };
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut edits = Vec::new();
        let mut delta = 0isize;
        for (at, c) in text.char_indices() {
            if !is_invisible(c) {
                out.push(c);
                continue;
            }
            let shown = if at == 0 && c == '\u{FEFF}' { String::new() } else { stand_in(c).to_string() };
            delta += shown.len() as isize - c.len_utf8() as isize;
            edits.push((at, c.len_utf8(), delta));
            out.push_str(&shown);
        }
        Shown { text: Cow::Owned(out), edits }
    }

    /// The offset in the shown text of an offset in the original one; an offset inside a
    /// replaced character goes to the start of its stand-in.
    pub(crate) fn map(&self, offset: usize) -> usize {
        let done = self.edits.partition_point(|&(at, len, _)| at + len <= offset);
        let before = if done == 0 { 0 } else { self.edits[done - 1].2 };
        let inside = self.edits.get(done).is_some_and(|&(at, _, _)| at < offset);
        let base = if inside { self.edits[done].0 } else { offset };
        base.saturating_add_signed(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_get_visible_stand_ins() {
        let s = Shown::new("a\u{b}b");
        assert_eq!(s.text, "a\u{240b}b");
        assert_eq!((s.map(1), s.map(2), s.map(3)), (1, 4, 5));
    }

    #[test]
    fn a_leading_bom_is_dropped() {
        let s = Shown::new("\u{feff}layer");
        assert_eq!(s.text, "layer");
        assert_eq!((s.map(0), s.map(3), s.map(8)), (0, 0, 5));
        assert!(matches!(Shown::new("plain").text, Cow::Borrowed(_)));
    }

    #[test]
    fn names_characters_by_code_point() {
        assert_eq!(escaped('\u{b}'), "U+000B");
        assert!(is_invisible('\u{feff}') && is_invisible('\u{202e}') && !is_invisible('\t') && !is_invisible('é'));
    }
}
