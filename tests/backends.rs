//! Properties every backend must have, one body each, run on the CPU and on the GPU
//! ([`ssmc_tests::backends!`]): native code agrees with the f64 reference interpreter on
//! random layers and on every schedule of the stdlib and `tests/lower/`, at awkward sizes,
//! with the outputs poisoned before the run.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::Form;
use ssmc_compiler::{interp, tensors};
use ssmc_tests::backend::{kernel_inputs, native_dtypes};
use ssmc_tests::{backends, rel_err, rel_err_floored, RANDOM_LAYER_FLOOR};
use std::collections::BTreeMap;

#[path = "random_layers.rs"]
mod random_layers;

/// Relative error allowed between f32 native code and the f64 interpreter on the same
/// (rounded) inputs.
const TOLERANCE: f64 = 1e-5;

backends! {
    /// Random layers (every option of the language, awkward sizes) in the recurrent form,
    /// and in the scan form where the backend has it (the GPU's block scan).
    fn random_layers_match_the_interpreter(backend) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Default::default() });
        let count = std::cell::Cell::new(0);
        runner
            .run(&(random_layers::config(), random_layers::dims(), any::<u64>()), |(mut cfg, d, seed)| {
                cfg.n_const = true; // native code needs a compile-time state size
                let case = random_layers::build_with(&cfg.normalize(), d, seed, native_dtypes);
                let k = count.get();
                count.set(k + 1);
                let inputs = kernel_inputs(&case.layer, &case.inputs);
                let want = interp::run(&case.layer, &case.sizes, &inputs);
                for form in [Form::Recurrent, Form::Scan] {
                    if form != Form::Recurrent && !backend.schedules(&case.layer, form) {
                        continue;
                    }
                    let got = backend
                        .run(&case.layer, form, &dir.path().join(format!("case{k}-{form}")), &inputs, &want)
                        .unwrap_or_else(|e| panic!("{backend:?} {form}: {e}\n{}", case.src));
                    for (name, w) in &want {
                        let e = rel_err_floored(&got[name].data, &w.data, RANDOM_LAYER_FLOOR);
                        prop_assert!(e < TOLERANCE, "{backend:?} {form} output {name}: relative error {e:e}\n{}", case.src);
                    }
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every schedule the backend has for the stdlib layers and `tests/lower/`, at sizes
    /// that are not powers of two (and L = 1; L = 300 crosses two tiles of the GPU's block
    /// scan and ends in a partial one).
    fn every_schedule_matches_the_interpreter(backend) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checked = 0;
        for (name, layer, form) in ssmc_tests::schedules(&backend.target()) {
            for (i, l) in [1usize, 37, 300].into_iter().enumerate() {
                let dims: BTreeMap<String, usize> = layer
                    .dims
                    .iter()
                    .filter(|(_, d)| d.size == ssmc_compiler::ir::DimSize::Runtime)
                    .map(|(_, d)| {
                        let size = match d.name.as_str() {
                            "L" => l,
                            "B" => 2,
                            "G" => 1,
                            _ => 5,
                        };
                        (d.name.clone(), size)
                    })
                    .collect();
                let sizes = sizes_from_dims(&layer, &dims).unwrap_or_else(|e| panic!("{name}: {e}"));
                let inputs = kernel_inputs(&layer, &tensors::generate_inputs(&layer, &sizes, 5 + i as u64));
                let want = interp::run(&layer, &sizes, &inputs);
                let out = dir.path().join(format!("{name}-{form}-{l}"));
                let got = backend.run(&layer, form, &out, &inputs, &want).unwrap_or_else(|e| panic!("{name} {form}: {e}"));
                for (t, w) in &want {
                    let e = rel_err(&got[t].data, &w.data);
                    println!("{backend:?} {name} {form} L={l} {t}: rel err {e:.2e}");
                    assert!(e < 2e-5, "{backend:?} {name} {form} L={l} output {t}: relative error {e:e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 12, "only {checked} schedules run");
    }
}

/// The GPU's load prefetching ([`ssmc_kernels::prefetched`]) rewrites time loops without
/// GPU constructs, so the CPU runs it: the CPU's `recurrent` of every stdlib layer and
/// `tests/lower/` layer with its loads issued 3 and 8 steps ahead (groups and a remainder;
/// vim's backward scan runs its remainder first) agrees with the interpreter at L = 1, 7
/// and 37, outputs poisoned.
#[test]
fn prefetched_time_loops_match_the_interpreter() {
    use ssmc_compiler::lower::{self, MappingChoice};
    use ssmc_compiler::{artifact, back};
    let backend = ssmc_tests::backend::Backend::Cpu;
    let target = backend.target();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for (name, layer) in ssmc_tests::schedule_layers() {
        let Ok(spec) = lower::scan_spec(&layer, target.max_lanes(), MappingChoice::Cpu) else { continue };
        for steps in [3, 8] {
            let kernel = ssmc_kernels::prefetched(ssmc_kernels::recurrent(&spec), steps);
            assert_ne!(kernel.body, ssmc_kernels::recurrent(&spec).body, "{name}: no time loop was rewritten");
            let code = ssmc_codegen::generate(std::slice::from_ref(&kernel), &target, false).expect("codegen").code;
            let manifest = artifact::manifest(&layer, &target, Form::Recurrent, &kernel).expect("manifest");
            let header = artifact::header(&manifest);
            let built = back::Artifact { manifest, header, kernel, code, llvm_ir: None };
            let out = dir.path().join(format!("{name}-{steps}"));
            artifact::write(&built, &out).expect("write");
            for l in [1usize, 7, 37] {
                let dims: BTreeMap<String, usize> = layer
                    .dims
                    .iter()
                    .filter(|(_, d)| d.size == ssmc_compiler::ir::DimSize::Runtime)
                    .map(|(_, d)| {
                        (
                            d.name.clone(),
                            if d.name == "L" {
                                l
                            } else if d.name == "G" {
                                1
                            } else {
                                3
                            },
                        )
                    })
                    .collect();
                let sizes = sizes_from_dims(&layer, &dims).unwrap_or_else(|e| panic!("{name}: {e}"));
                let inputs = kernel_inputs(&layer, &tensors::generate_inputs(&layer, &sizes, 9));
                let want = interp::run(&layer, &sizes, &inputs);
                let got = backend.run_artifact(&layer, &out, &inputs, &want).unwrap_or_else(|e| panic!("{name}: {e}"));
                for (t, w) in &want {
                    let e = rel_err(&got[t].data, &w.data);
                    assert!(e < 2e-5, "{name} prefetched {steps} at L={l}, output {t}: relative error {e:e}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 24, "only {checked} runs");
}
