//! A pest parse error turned into one readable diagnostic: what was expected, in words
//! ("an operator", "a statement", "`]`"), what was found, and which bracket is unclosed.

use crate::ast::Span;
use crate::diag::did_you_mean;
use crate::diag::Diagnostic;
use crate::parse::Rule;
use crate::shown::{escaped, is_invisible};
use pest::error::{Error, ErrorVariant, InputLocation};

/// Keywords that start a statement of a layer body.
const STATEMENT_KEYWORDS: [&str; 10] =
    ["dims", "input", "output", "discretize", "skip", "gate", "direction", "reverse", "initial_state", "final_state"];

/// The diagnostic for a failed parse of `src`.
pub(crate) fn syntax_error(src: &str, e: &Error<Rule>) -> Diagnostic {
    let (pos, mut expected) = expected_at(src, e);
    let found = found_at(src, pos);
    let before = previous_word(src, pos);
    let open = open_brackets(src, pos);
    // `discretize zoh` in a `reverse` block reads as a role named `discretize`: `=` is noise.
    let keyword_misplaced = STATEMENT_KEYWORDS.contains(&before) && expected.iter().any(|w| w == "`=`");
    if keyword_misplaced && expected.len() > 1 {
        expected.retain(|w| w != "`=`");
    }
    let sp = Span::new(pos, (pos + found.len().max(1)).min(src.len()).max(pos));
    let expected_text = match expected.as_slice() {
        [] => "something else".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    };
    let invisible = found.chars().next().filter(|c| is_invisible(*c));
    let found_text = match invisible {
        _ if found.is_empty() => "end of file".to_string(),
        // White space inside a token (`- 4` in a number): named, never quoted raw.
        _ if found == "\n" || found == "\r" => "the end of the line".to_string(),
        _ if found == "\t" => "a tab".to_string(),
        _ if found == " " => "a space".to_string(),
        Some(c) => format!("the invisible character {}", escaped(c)),
        None => format!("`{found}`"),
    };
    let unclosed = open
        .last()
        .copied()
        .filter(|(o, at)| expected.contains(&format!("`{}`", closer(*o))) && never_closed(src).contains(at));
    let in_reverse = open.last().is_some_and(|(o, at)| *o == '{' && previous_word(src, *at) == "reverse");
    if keyword_misplaced && in_reverse {
        let at = src[..pos].trim_end().len() - before.len();
        return Diagnostic::error(
            format!("syntax error: `{before}` cannot appear in a `reverse` block"),
            Span::new(at, at + before.len()),
            "not allowed here",
        )
        .with_note("a `reverse` block holds only the roles x, dt, A, B, C, and `skip` and `gate`")
        .with_hint(format!("move `{before}` to the layer body"));
    }
    let mut d = match unclosed {
        Some((o, at)) if found.is_empty() => Diagnostic::error(
            format!("syntax error: `{o}` is never closed"),
            sp,
            format!("expected `{}` before the end of the file", closer(o)),
        )
        .with_secondary(Span::new(at, at + 1), "opened here")
        .with_hint(format!("add the missing `{}`", closer(o))),
        _ => Diagnostic::error(
            format!("syntax error: expected {expected_text}, found {found_text}"),
            sp,
            format!("expected {expected_text}"),
        ),
    };
    if let (Some((o, at)), false) = (unclosed, found.is_empty()) {
        d = d.with_secondary(Span::new(at, at + 1), format!("this `{o}` is never closed"));
    }
    if let Some(c @ (')' | ']' | '}')) = found.chars().next() {
        if !open.iter().any(|(o, _)| closer(*o) == c) {
            d = d.with_hint(format!("this `{c}` has no matching opening bracket"));
        }
    } else if found.starts_with('.') && before.ends_with(|c: char| c.is_ascii_digit()) {
        d = d.with_hint("sizes and divisors are whole numbers");
    }
    if let Some(c) = invisible {
        let hint = if c == '\u{FEFF}' {
            "a byte-order mark is allowed only at the very start of the file; remove this one".to_string()
        } else {
            format!("remove the {} character; it shows nothing, so it may have come in with pasted text", escaped(c))
        };
        d = d.with_hint(hint);
    }
    if let Some(hint) = keyword_typo(src, pos, before, &expected, found) {
        d = d.with_hint(hint);
    }
    if before == "layer" && expected == ["a name"] {
        d = d.with_hint("a layer is written `layer NAME { ... }`");
    }
    if expected.iter().any(|w| w == "`layer`") && !found.is_empty() && d.hint.is_none() {
        d = d.with_hint("a file holds layers: `layer NAME { ... }`");
    }
    d
}

/// "did you mean `input`?" for a misspelt keyword: a statement `inptu u: ...` reads as a
/// role `inptu` missing its `=`, and a file `layr l { ... }` as a missing `layer`.
fn keyword_typo(src: &str, pos: usize, before: &str, expected: &[String], found: &str) -> Option<String> {
    let typo = if expected.iter().any(|w| w == "`layer`") {
        found
    } else if expected.iter().any(|w| w == "`=`") && !found.starts_with('=') && starts_statement(src, pos, before) {
        before
    } else {
        return None;
    };
    if typo.is_empty() || STATEMENT_KEYWORDS.contains(&typo) || typo == "layer" {
        return None;
    }
    let candidates = if expected.iter().any(|w| w == "`layer`") { &["layer"][..] } else { &STATEMENT_KEYWORDS[..] };
    did_you_mean(typo, candidates.iter().copied()).map(|h| format!("`{typo}` is not a keyword; {h}"))
}

/// Whether the word `before`, ending just before `pos` (after whitespace), is the first
/// word of a statement: what precedes it is `{`, `}`, `;` or the end of a line.
fn starts_statement(src: &str, pos: usize, before: &str) -> bool {
    let head = src[..pos.min(src.len())].trim_end();
    let Some(start) = head.len().checked_sub(before.len()) else { return false };
    let prior = &head[..start];
    let line_start = prior.rfind('\n').map_or(0, |i| i + 1);
    prior[line_start..].trim().is_empty() || prior.trim_end().ends_with(['{', '}', ';'])
}

/// Where parsing got furthest, and what it expected there, in words.
fn expected_at(src: &str, e: &Error<Rule>) -> (usize, Vec<String>) {
    if let Some(attempts) = e.parse_attempts() {
        let tokens: Vec<Token> =
            attempts.expected_tokens().iter().map(|t| Token::from_display(&t.to_string())).collect();
        // Right after a name or number, letters and digits would only continue it.
        let glued = src[..attempts.max_position.min(src.len())].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let words = words_for_tokens(&tokens, glued);
        if !words.is_empty() {
            return (attempts.max_position, words);
        }
    }
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut words: Vec<String> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.iter().map(|r| describe(r).to_string()).collect(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    words.sort_unstable();
    words.dedup();
    (pos, words)
}

/// One token the parser tried. pest does not export its token type, so this is read back
/// from its `Display`: a literal as itself, a character range as `a..z`.
#[derive(Debug, PartialEq)]
enum Token {
    /// A literal string such as `]` or `dims`.
    Literal(String),
    /// A character range such as `0..9`.
    Range(char, char),
}

impl Token {
    fn from_display(s: &str) -> Token {
        let c: Vec<char> = s.chars().collect();
        match c.as_slice() {
            [lo, '.', '.', hi] => Token::Range(*lo, *hi),
            _ => Token::Literal(s.to_string()),
        }
    }
}

/// Tokens the parser tried at one position, grouped into words a user knows; `glued`
/// when the position directly follows a name or number, which digits would only extend.
fn words_for_tokens(tokens: &[Token], glued: bool) -> Vec<String> {
    let literal = |t: &str| tokens.iter().any(|k| matches!(k, Token::Literal(l) if l == t));
    let range = |c: char| tokens.iter().any(|k| matches!(k, Token::Range(lo, hi) if (*lo..=*hi).contains(&c)));
    let operator = ["+", "*", "/"].iter().any(|t| literal(t)) && literal("-");
    let statement = STATEMENT_KEYWORDS.iter().any(|t| literal(t));
    let (letters, digits) = (range('a'), range('0') && !glued && !statement);
    // (rank, words): operands first, punctuation next, then statements and closers.
    let mut words: Vec<(u8, String)> = Vec::new();
    if operator {
        words.push((0, "an operator".into()));
    } else if letters && digits && literal("(") {
        words.push((0, "an expression".into()));
    } else {
        if letters && !statement {
            words.push((0, "a name".into()));
        }
        if digits {
            words.push((0, "a number".into()));
        }
    }
    if statement {
        words.push((2, "a statement".into()));
    }
    for t in tokens {
        let Token::Literal(token) = t else { continue };
        // `E` is the case-insensitive exponent of a number, shown upper-case by pest.
        let skip = token.trim().is_empty()
            || token == "E"
            || token == "\u{FEFF}"
            || token == "#"
            || token == "_"
            || token == "."
            || STATEMENT_KEYWORDS.contains(&token.as_str())
            || (operator && matches!(token.as_str(), "+" | "-" | "*" | "/" | "("))
            || ((digits || letters) && matches!(token.as_str(), "-" | "("));
        if skip {
            continue;
        }
        let word = match token.as_str() {
            "[" => (1, "a shape like `[B, D, L]`".to_string()),
            ";" => (3, "`;`".to_string()),
            "}" => (4, "`}`".to_string()),
            "layer" => (5, "`layer`".to_string()),
            other => (1, format!("`{other}`")),
        };
        words.push(word);
    }
    // An optional `;` is worth naming only when nothing else is possible.
    if words.len() > 1 {
        words.retain(|(_, w)| w != "`;`");
    }
    words.sort();
    words.dedup();
    words.into_iter().map(|(_, w)| w).collect()
}

/// Readable words for a grammar rule, when pest gives rules rather than tokens.
fn describe(rule: &Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::layer | Rule::kw_layer => "`layer`",
        Rule::ident => "a name",
        Rule::int => "an integer",
        Rule::number | Rule::signed_number => "a number",
        Rule::expr | Rule::paren => "an expression",
        Rule::shape => "a shape like `[B, D, L]`",
        Rule::shape_atom => "a dim name or size",
        Rule::init => "`~ distribution(...)`",
        Rule::io_kind | Rule::kw_input | Rule::kw_output => "`input` or `output`",
        Rule::dims_decl | Rule::kw_dims => "`dims`",
        Rule::dim_decl => "a dim like `time L`",
        Rule::add | Rule::sub | Rule::mul | Rule::div => "an operator",
        Rule::neg => "`-`",
        Rule::call => "a function call",
        _ => "a statement",
    }
}

/// The closing bracket of an opening one.
fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// Brackets of `src` outside comments, in order, with their byte offsets.
fn brackets(src: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut in_comment = false;
    src.char_indices().filter(move |&(_, c)| {
        match c {
            '\n' => in_comment = false,
            '#' => in_comment = true,
            _ => {}
        }
        !in_comment && "()[]{}".contains(c)
    })
}

/// Pushes an opener, or pops up to the nearest opener a closer matches; returns the
/// openers popped without a match (left open inside).
fn step(stack: &mut Vec<(char, usize)>, at: usize, c: char) -> Vec<usize> {
    if "([{".contains(c) {
        stack.push((c, at));
        return Vec::new();
    }
    match stack.iter().rposition(|(o, _)| closer(*o) == c) {
        Some(k) => stack.drain(k..).skip(1).map(|(_, at)| at).collect(),
        None => Vec::new(),
    }
}

/// The brackets open at `pos`, outermost first.
fn open_brackets(src: &str, pos: usize) -> Vec<(char, usize)> {
    let mut stack = Vec::new();
    for (at, c) in brackets(src).take_while(|(at, _)| *at < pos) {
        step(&mut stack, at, c);
    }
    stack
}

/// Byte offsets of the openers that no closer in the whole file matches.
fn never_closed(src: &str) -> Vec<usize> {
    let mut stack = Vec::new();
    let mut unclosed = Vec::new();
    for (at, c) in brackets(src) {
        unclosed.extend(step(&mut stack, at, c));
    }
    unclosed.extend(stack.iter().map(|(_, at)| *at));
    unclosed
}

/// The word (name, keyword or number) just before `pos`, skipping whitespace.
fn previous_word(src: &str, pos: usize) -> &str {
    let head = src[..pos.min(src.len())].trim_end();
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(head.len(), |(i, _)| i);
    &head[start..]
}

/// The token at `pos`: a word, a number, or one character.
fn found_at(src: &str, pos: usize) -> &str {
    let rest = &src[pos.min(src.len())..];
    let word = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    if word > 0 {
        &rest[..word]
    } else {
        rest.chars().next().map_or("", |c| &rest[..c.len_utf8()])
    }
}
