//! The memory `ssmc run` needs, estimated from the bound sizes before anything large is
//! allocated, and the limit it is held to: a run over the limit is refused with the sizes
//! and the total, instead of aborting on a failed allocation halfway.
//!
//! The limit is `$SSMC_MAX_MEMORY` (bytes, or with a suffix K, M, G, T: powers of 1024)
//! when set; else the smaller of the memory available (`MemAvailable` of /proc/meminfo)
//! and [`DEFAULT_CAP`].

use ssmc_compiler::bind::Sizes;
use ssmc_compiler::ir::{Io, Layer};
use ssmc_compiler::roles::Dims;
use ssmc_compiler::tensors::bytes_text;

/// Most memory a run may take when `$SSMC_MAX_MEMORY` is not set, whatever is available.
pub const DEFAULT_CAP: u64 = 64 << 30;

/// What a run keeps in memory, part by part.
#[derive(Default)]
pub struct Need {
    parts: Vec<(String, u64)>,
}

impl Need {
    /// Adds `bytes` for `what`.
    pub fn add(&mut self, what: impl Into<String>, bytes: u64) {
        if bytes > 0 {
            self.parts.push((what.into(), bytes));
        }
    }

    fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |t, (_, b)| t.saturating_add(*b))
    }

    /// Refuses the run when the total exceeds the limit, naming the parts and the sizes.
    pub fn check(&self, layer: &Layer, sizes: &Sizes) -> Result<(), String> {
        let (limit, why) = limit()?;
        let total = self.total();
        if total <= limit {
            return Ok(());
        }
        let parts: Vec<String> = self.parts.iter().map(|(w, b)| format!("{w} {}", bytes_text(*b))).collect();
        let dims: Vec<String> = sizes.describe(layer).iter().map(|(k, v)| format!("{k}={v}")).collect();
        Err(format!(
            "the run would need about {} of memory at {} ({}), more than the limit of {} ({why}); \
             choose smaller sizes, or set SSMC_MAX_MEMORY",
            bytes_text(total),
            dims.join(" "),
            parts.join(", "),
            bytes_text(limit)
        ))
    }
}

/// The limit and where it comes from.
pub fn limit() -> Result<(u64, String), String> {
    if let Some(v) = std::env::var_os("SSMC_MAX_MEMORY") {
        let text = v.to_string_lossy();
        let bytes = parse_bytes(&text).ok_or_else(|| {
            format!("SSMC_MAX_MEMORY={text}: expected a number of bytes, optionally with K, M, G or T (e.g. 8G)")
        })?;
        return Ok((bytes, "SSMC_MAX_MEMORY".to_string()));
    }
    Ok(match available() {
        Some(a) if a < DEFAULT_CAP => (a, "the memory available, MemAvailable in /proc/meminfo".to_string()),
        _ => (DEFAULT_CAP, "ssmc's default cap".to_string()),
    })
}

/// `123`, `8G`, `512M`, `1.5T` as bytes.
fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * (1u64 << shift) as f64) as u64)
}

/// MemAvailable of /proc/meminfo, in bytes.
fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Elements of `shape`, saturating.
fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// Elements of every input and every output of `layer` at `sizes`.
pub fn io_elements(layer: &Layer, sizes: &Sizes, io: Io) -> u64 {
    layer.tensors.iter().filter(|(_, t)| t.io == io).map(|(_, t)| elements(&sizes.shape(&t.shape))).sum()
}

/// What the f64 interpreter (or a form's f64 specification) keeps besides its inputs: each
/// role's values over its own axes, y, and the final state; a form also copies one
/// sequence at a time.
pub fn interpreter_state(layer: &Layer, sizes: &Sizes, form: bool) -> u64 {
    let d = Dims::new(layer, sizes);
    let field = |e| elements(&sizes.shape(&layer.axes_of(e))).saturating_mul(8);
    let mut bytes = 0u64;
    for (scan, _) in layer.directed_scans() {
        let reals = [Some(scan.x), scan.dt, scan.skip, scan.gate];
        for e in reals.into_iter().flatten() {
            bytes = bytes.saturating_add(field(e));
        }
        for v in [scan.a, scan.b, scan.c] {
            bytes = bytes.saturating_add(field(v.re));
            if let Some(im) = v.im {
                bytes = bytes.saturating_add(field(im));
            }
        }
    }
    let (time, state) = (d.time as u64, d.state as u64);
    bytes = bytes.saturating_add((d.y_len() as u64).saturating_mul(8));
    bytes = bytes.saturating_add((d.state_len() as u64).saturating_mul(16));
    if form {
        // abar, bbar, c and the states of one sequence, complex.
        bytes = bytes.saturating_add(time.saturating_mul(state).saturating_mul(64));
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("lots"), None);
    }
}
