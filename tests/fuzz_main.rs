//! `ssmc-fuzz`: a long seeded fuzz campaign against the `ssmc` binary (see
//! `tests/campaign/`). Prints a table of counts per stage and keeps every failing case
//! under `WORK/failures/` with the command that replays it. Exit 1 if anything failed.

use clap::Parser;
use ssmc_tests::campaign::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Mutates the stdlib sources and input files and runs `ssmc` on them.
#[derive(Parser)]
#[command(name = "ssmc-fuzz")]
struct Args {
    /// Source mutants through `check`.
    #[arg(default_value_t = 20000)]
    mutants: usize,
    /// Seed (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Accepted mutants run on the interpreter (default: mutants / 10).
    #[arg(long)]
    interp: Option<usize>,
    /// Of those, run as native CPU code too (default: mutants / 100).
    #[arg(long)]
    cpu: Option<usize>,
    /// Of those, run under valgrind's memcheck too (default: mutants / 1000; 0 without valgrind).
    #[arg(long)]
    valgrind: Option<usize>,
    /// Damaged input files through `run` (default: mutants / 10).
    #[arg(long)]
    tensors: Option<usize>,
    /// The most edits in one mutant.
    #[arg(long, default_value_t = 4)]
    max_edits: usize,
    /// Time limit of one `ssmc` process, in seconds.
    #[arg(long, default_value_t = 60)]
    limit: u64,
    /// Parallel workers (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// The `ssmc` binary.
    #[arg(long, default_value = "target/release/ssmc")]
    bin: PathBuf,
    /// Keep every layer case's folder (`WORK/layer-N/`), to replay or time one.
    #[arg(long)]
    keep_cases: bool,
    /// Where cases run and failures are kept.
    #[arg(long, default_value = "target/fuzz")]
    work: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let bin = std::fs::canonicalize(&a.bin).unwrap_or(a.bin);
    let _ = std::fs::create_dir_all(&a.work);
    let work = std::fs::canonicalize(&a.work).unwrap_or(a.work);
    let config = Config {
        seed,
        check: a.mutants,
        interp: a.interp.unwrap_or(a.mutants / 10),
        cpu: a.cpu.unwrap_or(a.mutants / 100),
        valgrind: if campaign::have_valgrind() { a.valgrind.unwrap_or(a.mutants / 1000) } else { 0 },
        tensors: a.tensors.unwrap_or(a.mutants / 10),
        max_edits: a.max_edits,
        limit: Duration::from_secs(a.limit),
        jobs,
        bin,
        progress: true,
        keep_cases: a.keep_cases,
        work: work.clone(),
    };
    eprintln!("ssmc-fuzz: seed {seed}, {} source mutants, {jobs} workers, cases under {}", a.mutants, work.display());
    let (report, took) = campaign::timed(config);
    println!("seed {seed}, {:.0} s\n{report}", took.as_secs_f64());
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failing cases: {}", work.join("failures").display());
        ExitCode::FAILURE
    }
}
