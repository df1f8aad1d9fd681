//! Every legal form of every stdlib layer agrees with the reference interpreter.

use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::forms::{self, cost::Target, egraph, Form, Plan};
use ssmc_compiler::{interp, tensors};
use std::collections::BTreeMap;

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-300)
}

#[test]
fn stdlib_forms_agree_with_interpreter() {
    for name in ["mamba1", "mamba2", "s4d", "vim"] {
        let src = std::fs::read_to_string(format!("{}/../stdlib/{name}.ssm", env!("CARGO_MANIFEST_DIR"))).expect("read");
        let (module, _) = ssmc_compiler::compile(&src).expect("compiles");
        let layer = &module.layers[0];
        for l in [1usize, 7, 37, 100] {
            let mut dims = BTreeMap::new();
            dims.insert("L".to_string(), l);
            let sizes = sizes_from_dims(layer, &dims).expect("sizes");
            let inputs = tensors::generate_inputs(layer, &sizes, 5);
            let want = interp::run(layer, &sizes, &inputs);
            let choice = egraph::choose(layer, &sizes, Target::Cpu, &|_| 0);
            for c in &choice.candidates {
                if c.legality.is_err() {
                    continue;
                }
                let plan = Plan { forms: vec![c.form; choice.plan.forms.len()] };
                let got = forms::run(layer, &sizes, &inputs, &plan);
                for (k, v) in &want {
                    let e = rel_err(&got[k].data, &v.data);
                    assert!(e < 1e-9, "{name} L={l} form {} output {k}: rel err {e}", c.form);
                }
            }
            let _ = Form::Recurrent;
        }
    }
}
