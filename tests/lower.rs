//! Golden loop IR: the kernel every native schedule produces, per target, for the stdlib
//! layers and the inputs of `tests/lower/`. A change of a schedule template, of lowering
//! or of the loop-IR printer shows up as a reviewed diff (`cargo insta review`).
//!
//! One snapshot per (file, target) holds every form that has a native schedule there;
//! a form refused on a target is recorded with the refusal, which is golden too.

use ssmc_compiler::forms::Form;
use ssmc_compiler::schedule;
use ssmc_compiler::target::Target;
use std::path::Path;

/// The forms with a native schedule somewhere (chunked at the default chunk length).
const FORMS: [Form; 4] = [Form::Recurrent, Form::Scan, Form::Chunked { q: 64 }, Form::Conv];

/// The snapshot text of one file on one target: each form's kernel or its refusal.
fn golden(path: &Path, target: &Target) -> String {
    let (_, module) = ssmc_tests::checked_module(path);
    let mut text = String::new();
    for layer in &module.layers {
        for form in FORMS {
            text += &format!("=== layer {} form {form} target {}\n", layer.name, target.name());
            match schedule::kernel(layer, target, form) {
                Ok(kernel) => text += &kernel.to_string(),
                Err(why) => text += &format!("no schedule: {why}\n"),
            }
        }
    }
    text
}

fn snapshot_all(glob_dir: &str) {
    // A fixed CPU, so the snapshots do not depend on the host's vector width.
    let targets = [("cpu", Target::cpu("x86-64-v3")), ("cuda", Target::cuda())];
    insta::glob!(glob_dir, "*.ssm", |path| {
        for (suffix, target) in &targets {
            insta::assert_snapshot!(*suffix, golden(path, target));
        }
    });
}

#[test]
fn stdlib_schedules() {
    snapshot_all("../stdlib");
}

#[test]
fn awkward_schedules() {
    snapshot_all("lower");
}
