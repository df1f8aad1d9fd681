//! Checks tensors against a manifest and binds the runtime dims from their shapes. Every
//! problem is reported by tensor name, with the declared and actual shapes.

use crate::manifest::{Io, Manifest};
use crate::{Error, TensorRef};
use std::collections::{BTreeMap, BTreeSet};

/// One axis of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    Dim { dim: usize, divisor: u64 },
    Literal(u64),
}

fn parse_atom(m: &Manifest, s: &str) -> Result<Atom, Error> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Atom::Literal(n));
    }
    let (name, divisor) = match s.split_once('/') {
        Some((n, d)) => (n, d.parse::<u64>().map_err(|_| Error::Manifest(format!("bad shape entry `{s}`")))?),
        None => (s, 1),
    };
    let dim = m
        .dims
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| Error::Manifest(format!("shape names unknown dim `{name}`")))?;
    Ok(Atom::Dim { dim, divisor })
}

/// Checks every tensor (present once, dtype, rank, consistent sizes, data length, pointer
/// alignment, no output overlapping another tensor) and that groups divide heads; returns the size of every dim, in manifest order.
pub fn bind(m: &Manifest, tensors: &[TensorRef]) -> Result<Vec<u64>, Error> {
    let mut problems = Vec::new();
    let mut sizes: Vec<Option<(u64, String)>> =
        m.dims.iter().map(|d| d.size.map(|s| (s, "a compile-time constant".to_string()))).collect();
    // By name, so that binding stays n log n in the number of tensors.
    let declared_names: BTreeSet<&str> = m.tensors.iter().map(|i| i.name.as_str()).collect();
    let mut by_name: BTreeMap<&str, Vec<&TensorRef>> = BTreeMap::new();
    for t in tensors {
        if !declared_names.contains(t.name) {
            problems.push(format!("unexpected tensor `{}`: layer `{}` has no such tensor", t.name, m.layer));
        }
        by_name.entry(t.name).or_default().push(t);
    }
    for info in &m.tensors {
        let declared = format!("[{}]", info.shape.join(", "));
        let given: &[&TensorRef] = by_name.get(info.name.as_str()).map_or(&[], Vec::as_slice);
        let t = match given {
            [one] => one,
            [] => {
                let io = if info.io == Io::Input { "input" } else { "output" };
                problems.push(format!("missing {io} `{}` with shape {declared}", info.name));
                continue;
            }
            _ => {
                problems.push(format!("tensor `{}` is given {} times", info.name, given.len()));
                continue;
            }
        };
        if t.dtype != info.dtype {
            problems.push(format!(
                "tensor `{}`: expected dtype {}, got {}",
                info.name,
                info.dtype.name(),
                t.dtype.name()
            ));
            continue;
        }
        if t.shape.len() != info.shape.len() {
            problems.push(format!(
                "tensor `{}`: expected {} axes {declared}, got {} axes {:?}",
                info.name,
                info.shape.len(),
                t.shape.len(),
                t.shape
            ));
            continue;
        }
        for (entry, &n) in info.shape.iter().zip(t.shape) {
            match parse_atom(m, entry)? {
                Atom::Literal(k) if k == n as u64 => {}
                Atom::Literal(k) => problems.push(format!(
                    "tensor `{}`: expected shape {declared} (axis `{entry}` = {k}), got {:?}",
                    info.name, t.shape
                )),
                Atom::Dim { dim, divisor } => {
                    let size = (n as u64).saturating_mul(divisor);
                    match &sizes[dim] {
                        Some((s, why)) if *s != size => problems.push(format!(
                            "tensor `{}`: expected shape {declared} with {}={s} ({why}), got {:?}",
                            info.name, m.dims[dim].name, t.shape
                        )),
                        Some(_) => {}
                        None if n == 0 => problems
                            .push(format!("tensor `{}`: axis `{entry}` has size 0, got {:?}", info.name, t.shape)),
                        None => sizes[dim] = Some((size, format!("from tensor `{}`", info.name))),
                    }
                }
            }
        }
        // Checked: a product that wrapped around could match a short buffer.
        match t.shape.iter().try_fold(info.dtype.size(), |acc, &n| acc.checked_mul(n)) {
            Some(needed) if needed == t.bytes => {}
            Some(needed) => problems
                .push(format!("tensor `{}`: shape {:?} needs {needed} bytes, got {}", info.name, t.shape, t.bytes)),
            None => problems.push(format!("tensor `{}`: shape {:?} does not fit in memory", info.name, t.shape)),
        }
        if t.data.is_null() {
            problems.push(format!("tensor `{}`: null data pointer", info.name));
        } else if (t.data as usize) % info.dtype.size() != 0 {
            problems.push(format!(
                "tensor `{}`: data pointer {:p} is not aligned to {} bytes",
                info.name,
                t.data,
                info.dtype.size()
            ));
        }
        if info.io == Io::Output && !t.writable {
            problems.push(format!("tensor `{}` is an output but was given read-only", info.name));
        }
    }
    overlaps(m, tensors, &mut problems);
    let mut out = Vec::new();
    for (d, s) in m.dims.iter().zip(&sizes) {
        match s {
            Some((s, _)) => out.push(*s),
            None => {
                problems.push(format!("dim `{}` is not the size of any tensor", d.name));
                out.push(0);
            }
        }
    }
    if problems.is_empty() {
        groups_divide_heads(m, &out, &mut problems);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Tensors(problems))
    }
}

/// Reports every output whose bytes overlap those of another tensor: the kernel reads its
/// inputs while it writes, and writes every output element once, so no form is safe in
/// place.
fn overlaps(m: &Manifest, tensors: &[TensorRef], problems: &mut Vec<String>) {
    let output_names: BTreeSet<&str> =
        m.tensors.iter().filter(|i| i.io == Io::Output).map(|i| i.name.as_str()).collect();
    let is_output = |t: &TensorRef| output_names.contains(t.name);
    let range = |t: &TensorRef| (t.data as usize, (t.data as usize).saturating_add(t.bytes));
    // Each output against every other tensor: a layer has few outputs, so this is linear.
    for (i, out) in tensors.iter().enumerate().filter(|(_, t)| is_output(t) && t.bytes > 0) {
        for (j, other) in tensors.iter().enumerate() {
            let (ro, rt) = (range(out), range(other));
            // A pair of outputs once; an input may overlap another input (both are only read).
            let seen = is_output(other) && j < i;
            if j == i || seen || other.bytes == 0 || ro.0 >= rt.1 || rt.0 >= ro.1 {
                continue;
            }
            let kind = if is_output(other) { "output" } else { "input" };
            problems.push(format!(
                "output `{}` overlaps {kind} `{}` in memory: outputs must not share bytes with any other tensor",
                out.name, other.name
            ));
        }
    }
}

/// Heads split evenly into groups: the kernels read the B and C of head h at group
/// h / (heads / groups), which only stays below `groups` when groups divide heads.
fn groups_divide_heads(m: &Manifest, sizes: &[u64], problems: &mut Vec<String>) {
    let find = |roles: &[&str]| m.dims.iter().zip(sizes).find(|(d, _)| roles.contains(&d.role.as_str()));
    let (Some((g, &groups)), Some((h, &heads))) = (find(&["group"]), find(&["head", "channel"])) else {
        return;
    };
    if groups == 0 || heads % groups != 0 {
        problems.push(format!(
            "{}={heads} is not a multiple of {}={groups}: each group must hold the same number of heads",
            h.name, g.name
        ));
    }
}
