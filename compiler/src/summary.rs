//! What `ssmc run` prints: per output its shape and statistics, as text or JSON.

use ssmc_compiler::bind::Sizes;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::tensors::TensorMap;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where the inputs came from.
pub enum InputSource {
    /// Drawn from the declared distributions.
    Generated {
        /// The seed.
        seed: u64,
    },
    /// Read from a file.
    File(String),
}

/// Statistics of one output.
#[derive(serde::Serialize)]
pub struct Stats {
    shape: Vec<usize>,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    l2: f64,
    non_finite: usize,
}

impl Stats {
    fn of(shape: &[usize], data: &[f64]) -> Self {
        let finite: Vec<f64> = data.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len().max(1) as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Stats {
            shape: shape.to_vec(),
            mean,
            std: var.sqrt(),
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            l2: finite.iter().map(|v| v * v).sum::<f64>().sqrt(),
            non_finite: data.len() - finite.len(),
        }
    }
}

/// The summary of one run.
#[derive(serde::Serialize)]
pub struct Summary {
    layer: String,
    file: String,
    target: String,
    form: String,
    dims: BTreeMap<String, usize>,
    inputs: String,
    seed: Option<u64>,
    outputs: BTreeMap<String, Stats>,
    elapsed_ms: f64,
}

impl Summary {
    /// Summarizes the outputs of a run.
    pub fn new(layer: &Layer, file: &Path, target: &str, sizes: &Sizes, source: InputSource, outputs: &TensorMap, elapsed: Duration) -> Self {
        let (inputs, seed) = match source {
            InputSource::Generated { seed } => ("generated".to_string(), Some(seed)),
            InputSource::File(f) => (f, None),
        };
        Summary {
            layer: layer.name.clone(),
            file: file.display().to_string(),
            target: target.to_string(),
            form: "recurrent".to_string(),
            dims: sizes.describe(layer),
            inputs,
            seed,
            outputs: outputs.iter().map(|(n, t)| (n.clone(), Stats::of(&t.shape, &t.data))).collect(),
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
        }
    }

    /// The summary as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Things worth a warning, e.g. outputs that overflowed.
    pub fn warnings(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter(|(_, s)| s.non_finite > 0)
            .map(|(n, s)| format!("output `{n}` has {} non-finite values (NaN or infinity): is the layer stable on these inputs?", s.non_finite))
            .collect()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(f, "layer   {} ({})", self.layer, self.file)?;
        writeln!(f, "target  {}, form {}", self.target, self.form)?;
        writeln!(f, "dims    {}", dims.join(" "))?;
        match self.seed {
            Some(s) => writeln!(f, "inputs  generated, seed {s}")?,
            None => writeln!(f, "inputs  {}", self.inputs)?,
        }
        for (name, s) in &self.outputs {
            writeln!(
                f,
                "output  {name} {:?}: mean {:.6} std {:.6} min {:.6} max {:.6} l2 {:.6}",
                s.shape, s.mean, s.std, s.min, s.max, s.l2
            )?;
        }
        writeln!(f, "time    {:.1} ms", self.elapsed_ms)
    }
}
