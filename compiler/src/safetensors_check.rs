//! The header of a safetensors file, read and checked here rather than by the safetensors
//! crate, so that every malformed file gets a message in words that names the tensor and
//! the byte offsets (the crate answers with bare error names, silently keeps the last of
//! two equal keys, and blames a tensor by the order of a hash map). The interpreter and the
//! native paths both read files through [`parse`].
//!
//! A safetensors file is: 8 bytes, the header length n (little-endian); n bytes of JSON,
//! an object mapping each tensor name to `{dtype, shape, data_offsets: [begin, end]}`
//! (plus an optional `__metadata__` object of strings); then the data section, which the
//! tensors' byte ranges (relative to its start) cover exactly, without overlap or gap.

use crate::ir::DType;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

/// One tensor of a checked header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Sizes, outermost first.
    pub shape: Vec<usize>,
    /// Where its bytes lie in the file (absolute offsets).
    pub range: Range<usize>,
}

#[derive(serde::Deserialize)]
struct Info {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// The header's entries in file order, each key seen once.
struct Header(Vec<(String, Info)>);

impl<'de> serde::Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

/// serde_json appends ` at line L column C` to its messages; the position is given apart.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.rsplit_once(" at line ").map_or(text.clone(), |(m, _)| m.to_string())
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("tensor `{key}` appears twice in the header")));
            }
            if key == "__metadata__" {
                map.next_value::<std::collections::BTreeMap<String, String>>()
                    .map_err(|e| de::Error::custom(format!("`__metadata__` must map names to strings ({e})")))?;
                continue;
            }
            let info = map.next_value::<serde_json::Value>()?;
            let info = serde_json::from_value::<Info>(info).map_err(|e| {
                de::Error::custom(format!(
                    "tensor `{key}`: {} (expected {{\"dtype\", \"shape\", \"data_offsets\": [begin, end]}})",
                    without_position(&e)
                ))
            })?;
            out.push((key, info));
        }
        Ok(Header(out))
    }
}

/// Bytes per element of the dtypes safetensors defines, and ssmc's type where it reads it.
fn dtype(name: &str) -> Option<(usize, Option<DType>)> {
    Some(match name {
        "F32" => (4, Some(DType::F32)),
        "F64" => (8, Some(DType::F64)),
        "BF16" => (2, Some(DType::Bf16)),
        "F16" => (2, Some(DType::F16)),
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => (1, None),
        "I16" | "U16" => (2, None),
        "I32" | "U32" => (4, None),
        "I64" | "U64" | "C64" => (8, None),
        _ => return None,
    })
}

/// The byte offset in the file of line `line`, column `col` (1-based) of the header.
fn offset_of(header: &[u8], line: usize, col: usize) -> usize {
    let before: usize = header.split(|b| *b == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum();
    8 + before + col.saturating_sub(1)
}

/// Checks the layout of a whole safetensors file and returns its tensors in file order:
/// the header length within the file, the header JSON (no key twice), each tensor's dtype
/// known and read by ssmc, shape times element size equal to its byte range, the ranges in
/// the data section, covering it exactly with no overlap, no gap and no trailing bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let len = bytes.len();
    let Some(first) = bytes.get(..8) else {
        return Err(format!("the file is {len} bytes long; a safetensors file starts with an 8-byte header length"));
    };
    let n = u64::from_le_bytes(first.try_into().map_err(|_| "an 8-byte header length".to_string())?);
    let available = (len - 8) as u64;
    if n > available {
        return Err(format!(
            "the header length (the first 8 bytes) is {n} bytes, but only {available} bytes follow: \
             the file is truncated or not a safetensors file"
        ));
    }
    let start = 8 + n as usize;
    let header = &bytes[8..start];
    if header.is_empty() {
        return Err("the header (bytes 8..8) is empty; it must be a JSON object".to_string());
    }
    let parsed: Header = serde_json::from_slice(header).map_err(|e| {
        format!(
            "the header (bytes 8..{start}) is not valid: {} (at byte {})",
            without_position(&e),
            offset_of(header, e.line(), e.column())
        )
    })?;
    let data_len = len - start;
    let mut entries = Vec::with_capacity(parsed.0.len());
    for (name, info) in parsed.0 {
        let Some((size, ours)) = dtype(&info.dtype) else {
            return Err(format!("tensor `{name}`: `{}` is not a safetensors dtype", info.dtype));
        };
        let Some(dtype) = ours else {
            return Err(format!("tensor `{name}` has dtype {}; ssmc reads F32, F64, BF16 and F16", info.dtype));
        };
        let (begin, end) = info.data_offsets;
        let file = |o: usize| start.saturating_add(o);
        if end < begin {
            return Err(format!("tensor `{name}`: data_offsets [{begin}, {end}] end before they begin"));
        }
        let needed = info.shape.iter().try_fold(size, |a, &d| a.checked_mul(d));
        match needed {
            Some(b) if b == end - begin => {}
            Some(b) => {
                return Err(format!(
                    "tensor `{name}`: shape {:?} of {} needs {b} bytes, but data_offsets [{begin}, {end}] hold {}",
                    info.shape,
                    info.dtype,
                    end - begin
                ))
            }
            None => {
                return Err(format!("tensor `{name}`: shape {:?} is far too large (its size overflows)", info.shape))
            }
        }
        if end > data_len {
            return Err(format!(
                "tensor `{name}`: data_offsets [{begin}, {end}] are file bytes {}..{}, but the file ends at byte {len} \
                 ({} bytes short: is it truncated?)",
                file(begin),
                file(end),
                end - data_len
            ));
        }
        entries.push(Entry { name, dtype, shape: info.shape, range: file(begin)..file(end) });
    }
    check_coverage(&entries, start, len)?;
    Ok(entries)
}

/// The tensors' byte ranges cover `start..len` exactly: in order, no overlap, no gap.
fn check_coverage(entries: &[Entry], start: usize, len: usize) -> Result<(), String> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|e| (e.range.start, e.range.end));
    let mut at = start;
    let mut prev: Option<&Entry> = None;
    for e in order {
        if e.range.start < at {
            let p = prev.map_or(String::new(), |p| format!(" of tensor `{}`", p.name));
            return Err(format!(
                "tensor `{}` (file bytes {}..{}) overlaps bytes {}..{at}{p}",
                e.name, e.range.start, e.range.end, e.range.start
            ));
        }
        if e.range.start > at {
            let after =
                prev.map_or("at the start of the data section".to_string(), |p| format!("after tensor `{}`", p.name));
            return Err(format!(
                "file bytes {at}..{} {after} belong to no tensor (before tensor `{}`)",
                e.range.start, e.name
            ));
        }
        at = e.range.end;
        prev = Some(e);
    }
    if at < len {
        let after = prev.map_or("after the header".to_string(), |p| format!("after the last tensor `{}`", p.name));
        return Err(format!("{} trailing bytes {after} (file bytes {at}..{len}) belong to no tensor", len - at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn a_key_twice_is_named() {
        let h = r#"{"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let e = parse(&file(h, 8)).expect_err("refused");
        assert!(e.contains("tensor `u` appears twice"), "{e}");
    }

    #[test]
    fn truncated_and_trailing_differ() {
        let h = r#"{"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let short = parse(&file(h, 4)).expect_err("short");
        assert!(short.contains("truncated") && short.contains("tensor `u`"), "{short}");
        let long = parse(&file(h, 10)).expect_err("long");
        assert!(long.contains("2 trailing bytes"), "{long}");
        assert_eq!(parse(&file(h, 8)).expect("ok")[0].range.len(), 8);
    }

    #[test]
    fn overlaps_and_gaps_are_named() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let e = parse(&file(h, 8)).expect_err("overlap");
        assert!(e.contains("overlaps") && e.contains("`a`") && e.contains("`b`"), "{e}");
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        let e = parse(&file(h, 12)).expect_err("gap");
        assert!(e.contains("belong to no tensor"), "{e}");
    }
}
