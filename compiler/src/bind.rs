//! Binding dims to sizes: from the shapes of given tensors, or from `--dim` and defaults.
//! Every mismatch is reported by tensor name with the expected and actual shapes.

use crate::arena::Handle;
use crate::ir::{Axis, AxisRole, Dim, DimSize, Layer};
use std::collections::BTreeMap;
use std::fmt;

/// The size of every dim of a layer, indexed by dim handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes(Vec<usize>);

impl Sizes {
    /// Size of a dim.
    pub fn dim(&self, d: Handle<Dim>) -> usize {
        self.0[d.index()]
    }

    /// Size of an axis.
    pub fn axis(&self, a: Axis) -> usize {
        match a {
            Axis::Dim { dim, divisor } => self.dim(dim) / divisor as usize,
            Axis::Complex => 2,
        }
    }

    /// Sizes of a shape.
    pub fn shape(&self, shape: &[Axis]) -> Vec<usize> {
        shape.iter().map(|a| self.axis(*a)).collect()
    }

    /// `B=2 D=64 ...`, in declaration order.
    pub fn describe(&self, layer: &Layer) -> BTreeMap<String, usize> {
        layer.dims.iter().map(|(h, d)| (d.name.clone(), self.dim(h))).collect()
    }
}

/// Everything wrong with the tensors or dims given to a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindError {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// Most problems a [`BindError`] shows; the rest are counted.
pub const MAX_SHOWN: usize = 20;

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().take(MAX_SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        if self.problems.len() > MAX_SHOWN {
            write!(f, "\n... and {} more problems", self.problems.len() - MAX_SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for BindError {}

/// Default size of a runtime dim for generated inputs.
pub fn default_size(role: AxisRole) -> usize {
    match role {
        AxisRole::Batch => 2,
        AxisRole::Time => 128,
        AxisRole::Channel => 64,
        AxisRole::Head => 8,
        AxisRole::HeadDim => 16,
        AxisRole::Group => 1,
        AxisRole::State => 16,
    }
}

/// What sizes are bound for, which says what their limit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Tensors held in memory by `ssmc run`.
    Run,
    /// Sizes the cost model estimates at (`ssmc explain`, `ssmc build --dim`): nothing is allocated.
    Estimate,
}

impl Purpose {
    fn limit_text(self) -> &'static str {
        match self {
            Purpose::Run => "the most one tensor of `ssmc run` may hold",
            Purpose::Estimate => "the most one tensor may hold at the sizes the cost model estimates at",
        }
    }
}

/// Sizes from `--dim NAME=SIZE` overrides and defaults, for a run. Constants cannot be
/// overridden.
pub fn sizes_from_dims(layer: &Layer, overrides: &BTreeMap<String, usize>) -> Result<Sizes, BindError> {
    bind_dims(layer, overrides, Purpose::Run)
}

/// [`sizes_from_dims`] for the cost model (`ssmc explain`, `ssmc build --dim`), which
/// allocates nothing at these sizes: the same limits, said as such.
pub fn sizes_for_estimate(layer: &Layer, overrides: &BTreeMap<String, usize>) -> Result<Sizes, BindError> {
    bind_dims(layer, overrides, Purpose::Estimate)
}

fn bind_dims(layer: &Layer, overrides: &BTreeMap<String, usize>, purpose: Purpose) -> Result<Sizes, BindError> {
    let mut problems = Vec::new();
    for name in overrides.keys() {
        if !layer.dims.iter().any(|(_, d)| &d.name == name) {
            let names: Vec<&str> = layer.dims.iter().map(|(_, d)| d.name.as_str()).collect();
            problems.push(format!(
                "--dim {name}: layer `{}` has no dim `{name}` (its dims: {})",
                layer.name,
                names.join(", ")
            ));
        }
    }
    let mut sizes = Vec::new();
    for (_, d) in layer.dims.iter() {
        let size = match (d.size, overrides.get(&d.name)) {
            (DimSize::Const(n), Some(&v)) if v as u64 != n => {
                problems.push(format!(
                    "--dim {}={v}: `{}` is a compile-time constant (= {n}) in the .ssm file",
                    d.name, d.name
                ));
                n as usize
            }
            (DimSize::Const(n), _) => n as usize,
            (DimSize::Runtime, Some(&0)) => {
                problems.push(format!("--dim {}=0: sizes must be at least 1", d.name));
                1
            }
            (DimSize::Runtime, Some(&v)) => v,
            (DimSize::Runtime, None) => default_size(d.role),
        };
        sizes.push(size);
    }
    let sizes = Sizes(sizes);
    check_consistency(layer, &sizes, purpose, &mut problems);
    if problems.is_empty() {
        Ok(sizes)
    } else {
        Err(BindError { problems })
    }
}

/// Sizes read off the shapes of the given inputs (by name; `tensors::shapes` gives them
/// for loaded tensors); checks that every declared input is given with its declared rank
/// and consistent sizes, and that nothing else is.
pub fn sizes_from_shapes(
    layer: &Layer,
    inputs: &std::collections::BTreeMap<String, Vec<usize>>,
) -> Result<Sizes, BindError> {
    let mut problems = Vec::new();
    let mut bound: Vec<Option<(usize, String)>> = vec![None; layer.dims.len()];
    // Sets of names: a file or a layer of many tensors is checked in n log n, not n^2.
    let declared: std::collections::BTreeSet<&str> = layer.inputs().map(|(_, t)| t.name.as_str()).collect();
    let outputs: std::collections::BTreeSet<&str> = layer.outputs().map(|(_, t)| t.name.as_str()).collect();
    for name in inputs.keys() {
        if !declared.contains(name.as_str()) {
            let is_output = outputs.contains(name.as_str());
            let why = if is_output { "it is an output of the layer" } else { "the layer has no such input" };
            problems.push(format!("unexpected tensor `{name}`: {why}"));
        }
    }
    for (_, t) in layer.inputs() {
        let declared = layer.shape_name(&t.shape);
        let Some(given) = inputs.get(&t.name) else {
            problems.push(format!("missing input `{}` with shape {declared}", t.name));
            continue;
        };
        if given.len() != t.shape.len() {
            problems.push(format!(
                "input `{}`: expected {} {declared}, got {} {:?}",
                t.name,
                axes(t.shape.len()),
                axes(given.len()),
                given
            ));
            continue;
        }
        for (axis, &n) in t.shape.iter().zip(given.iter()) {
            let (dim, divisor) = match *axis {
                Axis::Complex if n == 2 => continue,
                Axis::Complex => {
                    problems.push(format!(
                        "input `{}`: expected shape {declared}, got {:?}: the last axis holds re/im and must be 2",
                        t.name, given
                    ));
                    continue;
                }
                Axis::Dim { dim, divisor } => (dim, divisor as usize),
            };
            let d = &layer.dims[dim];
            let Some(size) = n.checked_mul(divisor) else {
                problems.push(format!(
                    "input `{}`: expected shape {declared}, got {:?}: axis `{}` is far too large",
                    t.name,
                    given,
                    layer.axis_name(*axis)
                ));
                continue;
            };
            let expected = match (d.size, &bound[dim.index()]) {
                (DimSize::Const(c), _) => Some((c as usize, "a compile-time constant".to_string())),
                (DimSize::Runtime, Some((b, from))) => Some((*b, format!("from input `{from}`"))),
                (DimSize::Runtime, None) => None,
            };
            match expected {
                Some((e, why)) if e != size => problems.push(format!(
                    "input `{}`: expected shape {declared} with {}={e} ({why}), got {:?}",
                    t.name, d.name, given
                )),
                Some(_) => {}
                None if n == 0 => {
                    problems.push(format!("input `{}`: axis `{}` has size 0, got shape {:?}", t.name, d.name, given))
                }
                None => bound[dim.index()] = Some((size, t.name.clone())),
            }
        }
    }
    let mut sizes = Vec::new();
    for (h, d) in layer.dims.iter() {
        match (d.size, &bound[h.index()]) {
            (DimSize::Const(c), _) => sizes.push(c as usize),
            (DimSize::Runtime, Some((b, _))) => sizes.push(*b),
            (DimSize::Runtime, None) => {
                problems.push(format!("dim `{}` is not the size of any input, so it cannot be bound", d.name));
                sizes.push(1);
            }
        }
    }
    let sizes = Sizes(sizes);
    if problems.is_empty() {
        check_consistency(layer, &sizes, Purpose::Run, &mut problems);
    }
    if problems.is_empty() {
        Ok(sizes)
    } else {
        Err(BindError { problems })
    }
}

/// Most elements of one tensor (8 GiB of f64): larger sizes are reported, not attempted,
/// so that a typo in `--dim` cannot overflow or exhaust memory. The memory of a whole run
/// is checked apart, against the memory available (`ssmc run`).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// `1 axis`, `3 axes`.
fn axes(n: usize) -> String {
    format!("{n} {}", if n == 1 { "axis" } else { "axes" })
}

/// Divisors, groups and sizes that only runtime sizes can check.
fn check_consistency(layer: &Layer, sizes: &Sizes, purpose: Purpose, problems: &mut Vec<String>) {
    let ax = &layer.axes;
    let state: Vec<Axis> = [Some(ax.batch), Some(ax.head), ax.headdim]
        .into_iter()
        .flatten()
        .map(|dim| Axis::Dim { dim, divisor: 1 })
        .chain([ax.state])
        .collect();
    let tensors = layer.tensors.iter().map(|(_, t)| (format!("`{}`", t.name), &t.shape[..]));
    for (what, shape) in tensors.chain([("the scan state".to_string(), &state[..])]) {
        let dims = sizes.shape(shape);
        let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements.is_none_or(|n| n > MAX_ELEMENTS) {
            let count = elements.map_or("more than 2^64".to_string(), |n| n.to_string());
            problems.push(format!(
                "{what} would have shape {} = {dims:?}: {count} elements, more than {MAX_ELEMENTS} (2^30), {}",
                layer.shape_name(shape),
                purpose.limit_text()
            ));
            // The other tensors over the same dims say nothing new.
            break;
        }
    }
    for (_, t) in layer.tensors.iter() {
        for a in &t.shape {
            if let Axis::Dim { dim, divisor } = *a {
                if divisor > 1 && sizes.dim(dim) % divisor as usize != 0 {
                    let d = &layer.dims[dim].name;
                    problems.push(format!(
                        "`{}` uses {d}/{divisor}, but {d}={} is not a multiple of {divisor}",
                        t.name,
                        sizes.dim(dim)
                    ));
                }
            }
        }
    }
    if let Some(g) = layer.axes.group {
        let (heads, groups) = (sizes.dim(layer.axes.head), sizes.dim(g));
        if groups == 0 || heads % groups != 0 {
            let (hn, gn) = (&layer.dims[layer.axes.head].name, &layer.dims[g].name);
            problems.push(format!(
                "{hn}={heads} is not a multiple of {gn}={groups}: each group must hold the same number of heads"
            ));
        }
    }
}
