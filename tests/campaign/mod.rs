//! A seeded fuzz campaign against the `ssmc` binary: mutants of the stdlib sources through
//! `check`, the accepted ones through `ir`, `explain` and `run` on the interpreter and the
//! CPU, and mutants of input files through `run`. Every case runs in a child process in
//! its own folder, so a panic, a signal (a stack overflow, an out-of-bounds access), a
//! time-out, an unlocated or unclear error, a touched file or a leftover temporary folder
//! is caught and kept for replay. `tests/fuzz.rs` runs a bounded campaign in CI;
//! `scripts/fuzz` runs long ones.

pub mod exec;
pub mod mutate;

use exec::{Exit, Problem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The stdlib sources the mutants start from.
pub const SOURCES: [(&str, &str); 4] = [
    ("mamba1", include_str!("../../stdlib/mamba1.ssm")),
    ("mamba2", include_str!("../../stdlib/mamba2.ssm")),
    ("s4d", include_str!("../../stdlib/s4d.ssm")),
    ("vim", include_str!("../../stdlib/vim.ssm")),
];

/// What a campaign does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed of every random choice: the same seed makes the same mutants.
    pub seed: u64,
    /// Source mutants through `check`.
    pub check: usize,
    /// Accepted mutants run on the interpreter (with `ir` and `explain`).
    pub interp: usize,
    /// Accepted mutants also run as native CPU code.
    pub cpu: usize,
    /// Of the native runs, how many also run under valgrind's memcheck (AVX2 code, which
    /// valgrind can decode): an out-of-bounds access fails the case. 0 without valgrind.
    pub valgrind: usize,
    /// Mutants of input files run on the interpreter and the CPU.
    pub tensors: usize,
    /// The most edits in one source mutant.
    pub max_edits: usize,
    /// Time limit of one child process.
    pub limit: Duration,
    /// Worker threads (each runs one child at a time).
    pub jobs: usize,
    /// The `ssmc` binary.
    pub bin: PathBuf,
    /// Where cases run and failing ones are kept (`failures/`).
    pub work: PathBuf,
    /// Print a line on stderr every 500 cases of a stage.
    pub progress: bool,
    /// Keep the folder of every layer case (`layer-N/`), not only the failing ones.
    pub keep_cases: bool,
}

/// Counts of one stage.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Cases tried.
    pub cases: usize,
    /// Cases that succeeded (accepted, ran).
    pub ok: usize,
    /// Cases refused with a reported error.
    pub refused: usize,
}

/// One failing case.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What went wrong.
    pub problem: Problem,
    /// The stage (`check`, `interp`, `cpu`, `tensors`, ...).
    pub stage: &'static str,
    /// The folder that holds the case's files, `command.txt` and `stderr.txt`.
    pub kept: PathBuf,
    /// The first lines of stderr, or what else explains it.
    pub detail: String,
}

/// What a campaign found.
#[derive(Debug, Default)]
pub struct Report {
    /// Counts per stage, in stage order.
    pub stages: BTreeMap<&'static str, Counts>,
    /// Every failing case (the first few of each problem are kept on disk).
    pub failures: Vec<Failure>,
    /// The longest a single child ran, and its command.
    pub slowest: (Duration, String),
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<10} {:>7} {:>7} {:>8} {:>9}", "stage", "cases", "ok", "refused", "failures")?;
        for (stage, c) in &self.stages {
            let failed = self.failures.iter().filter(|x| x.stage == *stage).count();
            writeln!(f, "{stage:<10} {:>7} {:>7} {:>8} {:>9}", c.cases, c.ok, c.refused, failed)?;
        }
        writeln!(f, "slowest case: {:.1} s: {}", self.slowest.0.as_secs_f64(), self.slowest.1)?;
        let mut by_problem: BTreeMap<String, usize> = BTreeMap::new();
        for x in &self.failures {
            *by_problem.entry(format!("{} in {}", x.problem.name(), x.stage)).or_default() += 1;
        }
        for (what, n) in by_problem {
            writeln!(f, "FAILED {n} x {what}")?;
        }
        for x in self.failures.iter().take(12) {
            writeln!(f, "  {} ({}): {}\n    {}", x.problem.name(), x.stage, x.kept.display(), x.detail)?;
        }
        Ok(())
    }
}

/// The shared state of a running campaign.
struct Cx {
    config: Config,
    report: Mutex<Report>,
    kept: AtomicUsize,
}

impl Cx {
    fn count(&self, stage: &'static str, ok: bool) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        let failed = r.failures.len();
        let c = r.stages.entry(stage).or_default();
        c.cases += 1;
        if ok {
            c.ok += 1;
        } else {
            c.refused += 1;
        }
        if self.config.progress && c.cases % 500 == 0 {
            eprintln!(
                "ssmc-fuzz: {stage}: {} cases, {} ok, {} refused; {failed} failures so far",
                c.cases, c.ok, c.refused
            );
        }
    }

    fn note_wall(&self, exit: &Exit, dir: &Path, args: &[String]) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        if exit.wall > r.slowest.0 {
            r.slowest = (exit.wall, format!("ssmc {} (in {})", args.join(" "), dir.display()));
        }
    }

    /// Records a failure; keeps the case's folder (`files`) and what it printed.
    fn fail(&self, stage: &'static str, problem: Problem, case: &Path, command: &str, stderr: &str) {
        let n = self.kept.fetch_add(1, Ordering::Relaxed);
        let kept = self.config.work.join("failures").join(format!("{n:04}-{stage}-{}", problem.name()));
        let _ = std::fs::create_dir_all(&kept);
        for e in std::fs::read_dir(case).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::copy(e.path(), kept.join(e.file_name()));
            }
        }
        let _ = std::fs::write(kept.join("command.txt"), format!("{command}\n"));
        let _ = std::fs::write(kept.join("stderr.txt"), stderr);
        let detail: String = stderr.lines().take(3).collect::<Vec<_>>().join(" | ");
        let detail: String = detail.chars().take(300).collect();
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        r.failures.push(Failure { problem, stage, kept, detail });
    }

    /// Runs `ssmc ARGS` in `dir`; returns the exit, or records a harness failure.
    fn ssmc(&self, dir: &Path, args: &[String], envs: &[(&str, &Path)]) -> Option<Exit> {
        self.spawn(Command::new(&self.config.bin), dir, args, envs)
    }

    /// Runs `ssmc ARGS` under valgrind's memcheck, which exits 99 on an invalid access.
    fn ssmc_in_valgrind(&self, dir: &Path, args: &[String], envs: &[(&str, &Path)]) -> Option<Exit> {
        let mut cmd = Command::new("valgrind");
        cmd.args(["-q", "--error-exitcode=99"]).arg(&self.config.bin);
        self.spawn(cmd, dir, args, envs)
    }

    fn spawn(&self, mut cmd: Command, dir: &Path, args: &[String], envs: &[(&str, &Path)]) -> Option<Exit> {
        cmd.args(args).current_dir(dir).env_remove("RUST_BACKTRACE").env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        match exec::run(&mut cmd, self.config.limit) {
            Ok(exit) => {
                self.note_wall(&exit, dir, args);
                Some(exit)
            }
            Err(e) => {
                self.fail("harness", Problem::Harness, dir, &args.join(" "), &format!("cannot run ssmc: {e}"));
                None
            }
        }
    }
}

/// Runs a campaign and returns what it found.
pub fn run(config: Config) -> Report {
    let _ = std::fs::remove_dir_all(config.work.join("failures"));
    let cx = Cx { config, report: Mutex::new(Report::default()), kept: AtomicUsize::new(0) };
    let accepted = stages::check(&cx);
    stages::layers(&cx, &accepted);
    stages::tensor_files(&cx);
    cx.report.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// A random generator for case `n` of a stage: the same seed and case give the same mutant,
/// whichever worker thread runs it.
fn rng_for(seed: u64, stage: u64, n: usize) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ stage.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    r.set_stream(n as u64);
    let _ = r.gen::<u64>();
    r
}

/// Runs `work(i)` for i in 0..n on `jobs` threads.
fn parallel(jobs: usize, n: usize, work: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                work(i);
            });
        }
    });
}

/// Whether valgrind can be run here.
pub fn have_valgrind() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// How long the whole campaign took, for the caller's message.
pub fn timed(config: Config) -> (Report, Duration) {
    let start = Instant::now();
    let r = run(config);
    (r, start.elapsed())
}

mod stages;
