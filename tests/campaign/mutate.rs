//! Mutations: of `.ssm` sources (the edits a hurried or hostile user makes, and the extremes
//! that broke ssmc before) and of safetensors files (damaged headers, lengths and bytes).

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Tokens inserted into sources: the language's punctuation, keywords and names, and
/// numbers at the edges of what the types hold.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "{", "}", "[", "]", ",", "=", ":", "/", "-", "~", "(", ")", "0", "-3", "N/0", "N/2", "D/2", "H/2", "dims", "input",
    "output", "reverse", "complex(", "x", "delta", " ", "\n", "#", "1e309", "1e308", "-1e308", "1e-320", "f64", "bf16",
    "f16", "layer", "*", "+", "2", "log(-1)", "/ 0", "exp(", "sin(", "cos(", "inptu", "time", "state", "channel",
    "head", "group", "batch", "softplus(", "silu(", "uniform(-1e308, 1e308)", "normal(0, -1)", "normal(0, 1e308)",
    "~ uniform(1e9, 1e10)", "direction bidirectional", "initial_state h0", "final_state hT", "skip", "gate",
];

/// Numbers swapped in for numbers of the source.
#[rustfmt::skip]
const NUMBERS: &[&str] = &[
    "0", "1", "2", "3", "7", "16", "63", "256", "1616", "4096", "65536", "1000000", "4294967296", "18446744073709551616",
    "1e308", "1e309", "-1e308", "1e-320", "4e9", "-0", "0.5", "1e38", "3.5e38",
];

/// Invisible or odd characters: a byte-order mark, control characters, a zero-width space.
#[rustfmt::skip]
const ODD: &[&str] = &["\u{feff}", "\u{0b}", "\u{0}", "\u{200b}", "\u{7f}", "\r", "\t", "\u{a0}", "é"];

/// One mutant of `source`: one to `max_edits` random edits.
pub fn source(rng: &mut ChaCha8Rng, source: &str, max_edits: usize) -> Vec<u8> {
    let mut bytes = source.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..=max_edits) {
        edit(rng, &mut bytes);
    }
    bytes
}

fn edit(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let at = rng.gen_range(0..=bytes.len());
    match rng.gen_range(0..100) {
        0..=19 => {
            let end = (at + rng.gen_range(1..24)).min(bytes.len());
            bytes.drain(at..end);
        }
        20..=39 => insert(bytes, at, pick(rng, TOKENS).as_bytes()),
        40..=49 => replace_number(rng, bytes),
        50..=57 => {
            let mut lines = split_lines(bytes);
            let i = rng.gen_range(0..lines.len());
            let copies = if rng.gen_bool(0.1) { rng.gen_range(2..2000) } else { 1 };
            let line = lines[i].clone();
            for _ in 0..copies {
                lines.insert(i, line.clone());
            }
            *bytes = lines.concat();
        }
        58..=65 => {
            let mut lines = split_lines(bytes);
            let (a, b) = (rng.gen_range(0..lines.len()), rng.gen_range(0..lines.len()));
            lines.swap(a, b);
            for l in &mut lines {
                if l.last() != Some(&b'\n') {
                    l.push(b'\n');
                }
            }
            *bytes = lines.concat();
        }
        66..=71 => insert(bytes, at, pick(rng, ODD).as_bytes()),
        72..=75 if !bytes.is_empty() => {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
        }
        76..=81 => insert(bytes, at, deep_expression(rng).as_bytes()),
        82..=87 => replace_role_value(rng, bytes),
        88..=91 => replace_state_size(rng, bytes),
        _ => {
            // A word of the source somewhere else: names used in the wrong place.
            let text = String::from_utf8_lossy(bytes).into_owned();
            let words: Vec<&str> =
                text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).collect();
            if let Some(w) = words.choose(rng) {
                let w = format!(" {w} ");
                insert(bytes, at, w.as_bytes());
            }
        }
    }
}

/// An expression that is deep (nested parentheses, calls, minus signs) or long (a sum of
/// many terms), sized around the limits the checker must enforce without overflowing.
fn deep_expression(rng: &mut ChaCha8Rng) -> String {
    let n = *[3usize, 50, 70, 300, 1000, 5000, 12000].choose(rng).unwrap_or(&3);
    match rng.gen_range(0..4) {
        0 => format!("{}x{}", "(".repeat(n), ")".repeat(n)),
        1 => format!("{}x{}", "exp(".repeat(n), ")".repeat(n)),
        2 => format!("{}x", "-".repeat(n)),
        _ => vec!["x"; n].join(" + "),
    }
}

/// Replaces the value of a random `role = value` line with a deep or odd expression.
fn replace_role_value(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let roles: Vec<(usize, usize)> = line_ranges(&text)
        .into_iter()
        .filter(|&(s, e)| {
            let l = text[s..e].trim_start();
            l.split_once('=').is_some_and(|(k, _)| k.trim().chars().all(|c| c.is_alphanumeric() || c == '_'))
                && !l.starts_with("dims")
        })
        .collect();
    let Some(&(s, e)) = roles.choose(rng) else { return };
    let Some(eq) = text[s..e].find('=') else { return };
    let value = match rng.gen_range(0..5) {
        0 => deep_expression(rng),
        1 => "x / 0".to_string(),
        2 => "log(-1) * x".to_string(),
        3 => "cos(sin(x)) + tan(x) + sni(x)".to_string(),
        _ => format!("{} * {}", pick(rng, NUMBERS), pick(rng, TOKENS)),
    };
    let new = format!("{} {}\n", &text[s..=s + eq], value);
    let mut out = text[..s].to_string();
    out.push_str(&new);
    out.push_str(&text[(e + 1).min(text.len())..]);
    *bytes = out.into_bytes();
}

/// Sets the state size (`state N = ...`) to a size that stresses code generation.
fn replace_state_size(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let Some(i) = text.find("state N") else { return };
    let rest = &text[i..];
    let end = rest.find(['\n', ',']).unwrap_or(rest.len());
    let size = pick(rng, &["= 1", "= 2", "= 3", "= 255", "= 256", "= 1616", "= 4096", "= 1000000", "= 0", ""]);
    *bytes = format!("{}state N {}{}", &text[..i], size, &rest[end..]).into_bytes();
}

fn replace_number(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let spans: Vec<(usize, usize)> = number_spans(&text);
    let Some(&(s, e)) = spans.choose(rng) else { return };
    let mut out = text[..s].to_string();
    out.push_str(pick(rng, NUMBERS));
    out.push_str(&text[e..]);
    *bytes = out.into_bytes();
}

/// Byte ranges of the runs of digits (with a dot or exponent) that are not inside a name.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if starts {
            let s = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e') {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// (start, end) of each line without its newline.
fn line_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        out.push((start, start + line.trim_end_matches('\n').len()));
        start += line.len();
    }
    out
}

fn insert(bytes: &mut Vec<u8>, at: usize, what: &[u8]) {
    let at = at.min(bytes.len());
    bytes.splice(at..at, what.iter().copied());
}

fn pick<'a>(rng: &mut ChaCha8Rng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or("")
}

/// Lines with their newlines; at least one (possibly empty) line.
fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    lines
}

/// One mutant of a valid safetensors file: a damaged length prefix, header or data.
pub fn tensor_file(rng: &mut ChaCha8Rng, file: &[u8]) -> Vec<u8> {
    let mut bytes = file.to_vec();
    let header_len = match bytes.get(..8) {
        Some(p) => u64::from_le_bytes(p.try_into().unwrap_or([0; 8])) as usize,
        None => 0,
    };
    let header_end = (8 + header_len).min(bytes.len());
    let header = String::from_utf8_lossy(&bytes[8.min(bytes.len())..header_end]).into_owned();
    let data = bytes[header_end..].to_vec();
    let with_header = |h: &str, data: &[u8]| {
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    };
    match rng.gen_range(0..12) {
        0 => bytes.truncate(rng.gen_range(0..bytes.len().max(1))),
        1 => bytes.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        2 => {
            let len = *[0u64, 1, 7, header_len as u64 + 1, (header_len as u64).saturating_sub(1), u64::MAX, 1 << 40]
                .choose(rng)
                .unwrap_or(&0);
            bytes[..8].copy_from_slice(&len.to_le_bytes());
        }
        3 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
        }
        4 => {
            // A header byte flipped: JSON that no longer parses, or says something else.
            if header_end > 8 {
                let i = rng.gen_range(8..header_end);
                bytes[i] ^= 1 << rng.gen_range(0..7);
            }
        }
        5 => bytes = with_header(&replace_json_numbers(rng, &header), &data),
        6 => {
            bytes = with_header(
                &header.replacen("\"F32\"", pick(rng, &["\"F64\"", "\"I8\"", "\"Q4\"", "\"BF16\"", "\"\""]), 1),
                &data,
            )
        }
        7 => {
            // A tensor named twice, or renamed.
            let names: Vec<&str> = header.split('"').skip(1).step_by(2).filter(|s| s.len() <= 16).collect();
            let (a, b) = (pick(rng, &names), pick(rng, &names));
            bytes = with_header(&header.replacen(&format!("\"{a}\""), &format!("\"{b}\""), 1), &data);
        }
        8 => bytes = with_header(&header.replacen("\"shape\":[", "\"shape\":[0,", 1), &data),
        9 => bytes = with_header(&header.replacen("\"shape\":[", "\"shape\":[1,", 1), &data),
        10 => bytes = with_header("{\"__metadata__\":{\"a\":1}}", &data),
        _ => bytes = with_header(&format!("{}   ", header), &data[..data.len() / 2]),
    }
    bytes
}

/// Replaces one number of a JSON header with an extreme one.
fn replace_json_numbers(rng: &mut ChaCha8Rng, header: &str) -> String {
    let spans = number_spans(header);
    let Some(&(s, e)) = spans.choose(rng) else { return header.to_string() };
    let n = pick(rng, &["0", "1", "3", "4294967296", "18446744073709551615", "99999999999999999999", "-1", "1.5"]);
    format!("{}{}{}", &header[..s], n, &header[e..])
}
