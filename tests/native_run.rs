//! Running a native CPU layer on f32 inputs with NaN-poisoned outputs (shared by the tests
//! of large states and of the math routines).

use ssmc_compiler::forms::Form;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors;
use ssmc_runtime::{CpuLayer, TensorRef};
use std::collections::BTreeMap;
use std::path::Path;

/// Builds `layer` in `form` for this CPU into `dir` and loads it.
pub fn build(layer: &Layer, form: Form, dir: &Path) -> CpuLayer {
    ssmc_tests::build_artifact(layer, &Target::cpu("native"), form, dir)
        .unwrap_or_else(|e| panic!("{} in form {form:?}: {e}", layer.name));
    CpuLayer::load(dir).expect("loads")
}

/// Runs `lib` on f32 `inputs` with outputs shaped like `outputs` and first filled with NaN.
pub fn run(lib: &CpuLayer, inputs: &tensors::TensorMap, outputs: &tensors::TensorMap) -> tensors::TensorMap {
    let bufs: BTreeMap<&str, Vec<f32>> =
        inputs.iter().map(|(k, v)| (k.as_str(), v.data.iter().map(|x| *x as f32).collect())).collect();
    let mut outs: BTreeMap<&str, Vec<f32>> =
        outputs.iter().map(|(k, v)| (k.as_str(), vec![f32::NAN; v.data.len()])).collect();
    {
        let mut refs: Vec<TensorRef> =
            inputs.iter().map(|(k, v)| TensorRef::input(k, &bufs[k.as_str()], &v.shape)).collect();
        for (k, buf) in outs.iter_mut() {
            refs.push(TensorRef::output(k, buf, &outputs[*k].shape));
        }
        lib.run(&refs, 2).expect("runs");
    }
    outs.into_iter()
        .map(|(k, v)| {
            let data = v.into_iter().map(f64::from).collect();
            (k.to_string(), tensors::TensorData { shape: outputs[k].shape.clone(), data })
        })
        .collect()
}
