//! What `ssmc run` prints: per output its shape and statistics, as text or JSON.

use ssmc_compiler::back;
use ssmc_compiler::bind::Sizes;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::target::Target;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<usize>,
    /// On the GPU: the kernel alone (CUDA events), where the times above include the copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_min_ms: Option<f64>,
}

impl Summary {
    /// Summarizes the outputs of a run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        layer: &Layer,
        file: &Path,
        target: &str,
        form: &str,
        sizes: &Sizes,
        source: InputSource,
        outputs: &TensorMap,
        elapsed: Duration,
    ) -> Self {
        let (inputs, seed) = match source {
            InputSource::Generated { seed } => ("generated".to_string(), Some(seed)),
            InputSource::File(f) => (f, None),
        };
        Summary {
            layer: layer.name.clone(),
            file: file.display().to_string(),
            target: target.to_string(),
            form: form.to_string(),
            dims: sizes.describe(layer),
            inputs,
            seed,
            outputs: outputs.iter().map(|(n, t)| (n.clone(), Stats::of(&t.shape, &t.data))).collect(),
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
            median_ms: None,
            min_ms: None,
            runs: None,
            kernel_median_ms: None,
            kernel_min_ms: None,
        }
    }

    /// Records the kernel's own times (GPU, CUDA events) beside the times with copies.
    pub fn set_kernel_times(&mut self, times: &[Duration]) {
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        self.kernel_median_ms = ms.get(ms.len() / 2).copied();
        self.kernel_min_ms = ms.first().copied();
    }

    /// Records a benchmark: `runs` timed runs after a warm-up.
    pub fn set_bench(&mut self, runs: usize, times: &[Duration]) {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        self.median_ms = Some(self.elapsed_ms);
        self.min_ms = times.iter().map(ms).reduce(f64::min);
        self.runs = Some(runs);
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
            .map(|(n, s)| {
                format!(
                    "output `{n}` has {} non-finite values (NaN or infinity): is the layer stable on these inputs?",
                    s.non_finite
                )
            })
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
        let copies = if self.kernel_median_ms.is_some() { ", with the copies to and from the GPU" } else { "" };
        match (self.runs, self.min_ms) {
            (Some(n), Some(min)) => writeln!(
                f,
                "time    median {:.3} ms, min {min:.3} ms over {n} runs (after a warm-up run{copies})",
                self.elapsed_ms
            )?,
            _ => writeln!(f, "time    {:.1} ms", self.elapsed_ms)?,
        }
        if let (Some(med), Some(min), Some(n)) = (self.kernel_median_ms, self.kernel_min_ms, self.runs) {
            writeln!(
                f,
                "kernel  median {med:.3} ms, min {min:.3} ms over {n} runs (CUDA events, tensors in GPU memory)"
            )?;
        }
        Ok(())
    }
}

/// The text of `ssmc explain`: every form with its estimate or the reason it is illegal,
/// whether the target has a native schedule for it, and the form chosen among those that
/// can be built.
pub fn explain_text(layer: &Layer, file: &Path, target: &Target, sizes: &Sizes, planned: &back::Planned) -> String {
    use std::fmt::Write as _;
    let choice = &planned.choice;
    let mut out = String::new();
    let dims: Vec<String> = sizes.describe(layer).iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "layer   {} ({})", layer.name, file.display());
    let _ = writeln!(out, "target  {}", target.name());
    let _ = writeln!(out, "dims    {}", dims.join(" "));
    let _ = writeln!(out, "term    {}", choice.term);
    let _ = writeln!(out, "e-graph {}", choice.stats);
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<14} {:>12} {:>10} {:>10} {:>8}", "form", "est. time", "flops", "bytes", "depth");
    let mut unscheduled = Vec::new();
    for c in &choice.candidates {
        let mark = if planned.plan.forms.contains(&c.form) {
            "  <- chosen"
        } else if c.schedule.is_err() {
            "  (no schedule)"
        } else {
            ""
        };
        match &c.legality {
            Ok(e) => {
                let _ = writeln!(
                    out,
                    "{:<14} {:>12} {:>10.3e} {:>10.3e} {:>8}{mark}",
                    c.form.to_string(),
                    format_seconds(e.seconds),
                    e.flops,
                    e.bytes,
                    e.depth.round()
                );
                if let Err(why) = &c.schedule {
                    // One reason per kind of form (the chunk sizes share theirs).
                    if !unscheduled.iter().any(|(kind, _)| *kind == c.form.kind()) {
                        unscheduled.push((c.form.kind(), why.clone()));
                    }
                }
            }
            Err(why) => {
                let _ = writeln!(out, "{:<14} illegal: {why}", c.form.to_string());
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "chosen  {}   (extracted term {})", planned.plan, choice.extracted);
    let _ = writeln!(
        out,
        "        among the forms with a native schedule on {0}: what `ssmc run --target {0}` and `ssmc build` with these --dim compile; `--form NAME` forces another",
        target.name()
    );
    if let Some(form) = planned.plan.uniform() {
        if let Ok(launch) = ssmc_compiler::schedule::describe_launch(layer, target, form, &sizes.describe(layer)) {
            let _ = writeln!(out, "launch  {launch}");
        }
    }
    for (kind, why) in unscheduled {
        let _ = writeln!(out, "{kind:<14} no schedule: {why}");
    }
    out
}

fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.2} us", s * 1e6)
    }
}
