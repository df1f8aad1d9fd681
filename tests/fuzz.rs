//! The bounded fuzz campaign of CI: 2,000 mutants of the stdlib sources through `check`,
//! the accepted ones through `ir`, `explain` and `run` on the interpreter and the CPU, and
//! damaged input files through `run`; any panic, signal, time-out, unlocated or unclear
//! error, touched file or leftover temporary folder fails the test, with the case kept
//! under `target/fuzz-ci/failures/` to replay. `scripts/fuzz N` runs a long campaign.
//! `SSMC_FUZZ_SEED` changes the mutants (the default seed makes the same ones every run).

use ssmc_tests::campaign::{self, Config};
use ssmc_tests::{repo, ssmc_bin};
use std::time::Duration;

#[test]
fn mutants_never_crash_hang_or_touch_other_files() {
    let seed = std::env::var("SSMC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let config = Config {
        seed,
        check: 2000,
        interp: 120,
        cpu: 16,
        valgrind: if campaign::have_valgrind() { 6 } else { 0 },
        tensors: 160,
        max_edits: 4,
        limit: Duration::from_secs(60),
        jobs: 2,
        bin: ssmc_bin().to_path_buf(),
        progress: false,
        keep_cases: false,
        work: std::fs::canonicalize(repo()).unwrap_or_else(|_| repo()).join("target").join("fuzz-ci"),
    };
    let (report, took) = campaign::timed(config);
    eprintln!("seed {seed}, {:.0} s\n{report}", took.as_secs_f64());
    // Not vacuous: mutants reach every stage, and some of them succeed there.
    let mut stages = vec!["check", "interp", "cpu", "tensors"];
    if campaign::have_valgrind() {
        stages.push("memcheck");
    }
    for stage in stages {
        let c = report.stages.get(stage).cloned().unwrap_or_default();
        assert!(c.cases > 0 && c.ok > 0, "no mutant succeeded in stage `{stage}` ({} cases)\n{report}", c.cases);
    }
    assert!(report.failures.is_empty(), "seed {seed}: the campaign found failures\n{report}");
}
