//! Robustness of the front end and the interpreter under random input.
//!
//! (a) Arbitrary bytes, valid UTF-8 or not, never make `check_source` or the rendering of
//!     its diagnostics panic, and a rejected file always carries at least one error.
//! (b) Random mutations of the stdlib layers (deleted ranges, inserted tokens, duplicated
//!     and swapped lines) never panic the checker, and rejections carry errors.
//! (c) Mutated layers that still check run on generated inputs at tiny sizes without
//!     panicking: binding dims, generating inputs and interpreting never panic.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ssmc_compiler::bind::sizes_from_dims;
use ssmc_compiler::ir::{DimSize, Layer};
use ssmc_compiler::{check_source, interp, tensors, Checked};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

const STDLIB: [(&str, &str); 4] = [
    ("mamba1.ssm", include_str!("../stdlib/mamba1.ssm")),
    ("mamba2.ssm", include_str!("../stdlib/mamba2.ssm")),
    ("s4d.ssm", include_str!("../stdlib/s4d.ssm")),
    ("vim.ssm", include_str!("../stdlib/vim.ssm")),
];

/// Tokens the mutations insert: punctuation, numbers, keywords and names of the language.
const TOKENS: &[&str] = &[
    "{", "}", "[", "]", ",", "=", ":", "/", "-", "~", "(", ")", "0", "-3", "N/0", "dims", "input", "output", "reverse",
    "complex(", "x", "Q", "delta", " ", "\n", "#", "1e309", "f64", "layer", "*", "+", "2",
];

/// Checks a source and renders its diagnostics; returns the check result, or the panic
/// message if anything panicked.
fn check_and_render(name: &str, bytes: &[u8]) -> Result<(Checked, String), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let c = check_source(name, bytes);
        let rendered = match &c.result {
            Ok((_, warnings)) => warnings.render(&c.file, false),
            Err(diags) => diags.render(&c.file, false),
        };
        // Colored rendering takes another path through the renderer.
        let _ = match &c.result {
            Ok((_, warnings)) => warnings.render(&c.file, true),
            Err(diags) => diags.render(&c.file, true),
        };
        (c, rendered)
    }))
    .map_err(panic_message)
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The properties every check result has: a rejected file has errors, rendered with a
/// location; an accepted one has no errors among its warnings.
fn assert_well_formed(name: &str, source: &[u8], checked: &Checked, rendered: &str) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(source);
    match &checked.result {
        Err(diags) => {
            prop_assert!(!diags.0.is_empty(), "rejected with no diagnostics:\n{shown}");
            prop_assert!(diags.has_errors(), "rejected with warnings only:\n{shown}\n{rendered}");
            prop_assert!(diags.error_count() >= 1);
            prop_assert!(rendered.contains("error"), "rendering lost the errors:\n{shown}\n---\n{rendered}");
            prop_assert!(rendered.contains(name), "rendering names no file:\n{rendered}");
        }
        Ok((module, warnings)) => {
            prop_assert!(!warnings.has_errors(), "accepted with errors:\n{shown}\n{rendered}");
            prop_assert!(!module.layers.is_empty(), "accepted with no layer:\n{shown}");
        }
    }
    Ok(())
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config(256))]

    /// (a) Arbitrary bytes, mostly not UTF-8.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (c, rendered) = check_and_render("random.ssm", &bytes).map_err(|p| TestCaseError::fail(format!("panicked: {p}\ninput: {bytes:?}")))?;
        assert_well_formed("random.ssm", &bytes, &c, &rendered)?;
    }

    /// (a) Arbitrary text, including multi-byte characters and control characters.
    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let (c, rendered) = check_and_render("text.ssm", text.as_bytes()).map_err(|p| TestCaseError::fail(format!("panicked: {p}\ninput: {text:?}")))?;
        assert_well_formed("text.ssm", text.as_bytes(), &c, &rendered)?;
    }

    /// (a) Token soup: sequences of the language's own tokens get past the lexer and reach
    /// the parser's and checker's error paths.
    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60)) {
        let text = format!("layer l {{\n{}\n}}\n", tokens.join(" "));
        let (c, rendered) = check_and_render("soup.ssm", text.as_bytes()).map_err(|p| TestCaseError::fail(format!("panicked: {p}\ninput:\n{text}")))?;
        assert_well_formed("soup.ssm", text.as_bytes(), &c, &rendered)?;
    }
}

#[test]
fn invalid_utf8_is_one_error_at_the_first_bad_byte() {
    let bytes = b"layer m {\n  dims \xff\xfe batch B\n}\n";
    let (c, rendered) = check_and_render("bad.ssm", bytes).expect("no panic");
    let diags = c.result.expect_err("rejected");
    assert_eq!(diags.error_count(), 1, "{rendered}");
    assert!(rendered.contains("bad.ssm:2:8"), "{rendered}");
    assert!(rendered.contains("0xff"), "{rendered}");
    // A truncated multi-byte character at the very end.
    let (c, rendered) = check_and_render("cut.ssm", b"layer \xe2\x82").expect("no panic");
    assert!(c.result.is_err(), "{rendered}");
    assert!(rendered.contains("cut.ssm:1:7"), "{rendered}");
}

/// One edit of a source file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Delete up to `len` bytes starting at `at`.
    Delete { at: Index, len: usize },
    /// Insert a token at `at`.
    Insert { at: Index, token: &'static str },
    /// Duplicate a line.
    DuplicateLine { line: Index },
    /// Swap two lines.
    SwapLines { a: Index, b: Index },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1usize..24).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<Index>(), proptest::sample::select(TOKENS)).prop_map(|(at, token)| Mutation::Insert { at, token }),
        any::<Index>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
    ]
}

fn apply(source: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = source.as_bytes().to_vec();
    for m in mutations {
        match m {
            Mutation::Delete { at, len } if !bytes.is_empty() => {
                let start = at.index(bytes.len());
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Delete { .. } => {}
            Mutation::Insert { at, token } => {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, token.bytes());
            }
            Mutation::DuplicateLine { line } => {
                let mut lines = split_lines(&bytes);
                let i = line.index(lines.len());
                lines.insert(i, lines[i].clone());
                bytes = lines.concat();
            }
            Mutation::SwapLines { a, b } => {
                let mut lines = split_lines(&bytes);
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                // The last line may lack its newline; keep every line terminated.
                for l in &mut lines {
                    if l.last() != Some(&b'\n') {
                        l.push(b'\n');
                    }
                }
                bytes = lines.concat();
            }
        }
    }
    bytes
}

/// Lines with their newlines; at least one (possibly empty) line.
fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    lines
}

/// Largest product of all dim sizes the interpreter is asked to run in these tests: mutated
/// constants (`N = 160000`) would otherwise make cases slow rather than wrong.
const MAX_WORK: usize = 1 << 20;

/// What happened to one layer of a mutated file that checked.
enum Ran {
    /// Interpreted; every output has the size its shape says.
    Ok,
    /// The dims could not be bound at these sizes (a reported error, not a panic).
    Unbindable,
    /// Too large to run quickly.
    TooLarge,
}

/// Binds every runtime dim to 2 or 3 (by `threes`), generates inputs, runs the layer.
fn run_tiny(layer: &Layer, threes: &[bool], seed: u64) -> Result<Ran, String> {
    let overrides: BTreeMap<String, usize> = layer
        .dims
        .iter()
        .filter(|(_, d)| d.size == DimSize::Runtime)
        .enumerate()
        .map(|(i, (_, d))| (d.name.clone(), if threes.get(i).copied().unwrap_or(false) { 3 } else { 2 }))
        .collect();
    let sizes = match sizes_from_dims(layer, &overrides) {
        Ok(s) => s,
        Err(e) => {
            if e.problems.is_empty() {
                return Err("sizes_from_dims failed with no problem listed".into());
            }
            // Every runtime dim at 2 binds whenever divisors and groups allow it at all.
            let twos = overrides.keys().map(|k| (k.clone(), 2)).collect();
            match sizes_from_dims(layer, &twos) {
                Ok(s) => s,
                Err(_) => return Ok(Ran::Unbindable),
            }
        }
    };
    let work = layer.dims.iter().try_fold(1usize, |w, (h, _)| w.checked_mul(sizes.dim(h).max(1)));
    if work.is_none_or(|w| w > MAX_WORK) {
        return Ok(Ran::TooLarge);
    }
    let inputs = tensors::generate_inputs(layer, &sizes, seed);
    for (_, t) in layer.inputs() {
        let given = inputs.get(&t.name).ok_or_else(|| format!("input `{}` not generated", t.name))?;
        if given.shape != sizes.shape(&t.shape) || given.data.len() != given.shape.iter().product::<usize>() {
            return Err(format!(
                "input `{}` generated with shape {:?} and {} values",
                t.name,
                given.shape,
                given.data.len()
            ));
        }
    }
    let outputs = interp::run(layer, &sizes, &inputs);
    for (_, t) in layer.outputs() {
        let out = outputs.get(&t.name).ok_or_else(|| format!("output `{}` missing", t.name))?;
        if out.shape != sizes.shape(&t.shape) || out.data.len() != out.shape.iter().product::<usize>() {
            return Err(format!("output `{}` has shape {:?} and {} values", t.name, out.shape, out.data.len()));
        }
    }
    Ok(Ran::Ok)
}

#[derive(Default)]
struct Counts {
    cases: AtomicUsize,
    accepted: AtomicUsize,
    ran: AtomicUsize,
}

/// Runs `cases` random mutation cases; returns how many checked OK and how many layers ran.
fn mutate_and_check(cases: u32, max_mutations: usize) -> Counts {
    let counts = Counts::default();
    let strategy = (
        0..STDLIB.len(),
        proptest::collection::vec(mutation(), 1..=max_mutations),
        proptest::collection::vec(any::<bool>(), 8),
        any::<u64>(),
    );
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |(file, mutations, threes, seed)| {
        let (name, source) = STDLIB[file];
        let bytes = apply(source, &mutations);
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        counts.cases.fetch_add(1, Ordering::Relaxed);
        let (checked, rendered) = check_and_render(name, &bytes).map_err(|p| {
            TestCaseError::fail(format!("check panicked: {p}\nmutations of {name}: {mutations:?}\nsource:\n{shown}"))
        })?;
        assert_well_formed(name, &bytes, &checked, &rendered)?;
        let Ok((module, _)) = &checked.result else { return Ok(()) };
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        for layer in &module.layers {
            let ran = catch_unwind(AssertUnwindSafe(|| run_tiny(layer, &threes, seed)))
                .map_err(|p| {
                    TestCaseError::fail(format!(
                        "run of layer `{}` panicked: {}\nmutations of {name}: {mutations:?}\nsource:\n{shown}",
                        layer.name,
                        panic_message(p)
                    ))
                })?
                .map_err(|e| TestCaseError::fail(format!("layer `{}`: {e}\nsource:\n{shown}", layer.name)))?;
            if let Ran::Ok = ran {
                counts.ran.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    counts
}

/// (b) and (c): one or two mutations leave many files valid, so the interpreter runs on
/// layers the stdlib does not have (duplicated or swapped statements, changed numbers).
#[test]
fn small_mutations_of_the_stdlib_never_panic() {
    let counts = mutate_and_check(512, 2);
    let (cases, accepted, ran) = (counts.cases.into_inner(), counts.accepted.into_inner(), counts.ran.into_inner());
    eprintln!("{cases} mutated files: {accepted} accepted, {ran} layers run");
    // Guard against a vacuous property: some mutations (a duplicated comment line, a
    // swapped pair of inputs, a space) must survive checking and reach the interpreter.
    assert!(accepted > 0 && ran > 0, "no mutated file reached the interpreter ({accepted} of {cases} accepted)");
}

/// (b): heavier damage, several edits per file.
#[test]
fn heavy_mutations_of_the_stdlib_never_panic() {
    let counts = mutate_and_check(256, 8);
    assert!(counts.cases.into_inner() > 0);
}

/// (c) at the unmutated layers: every stdlib layer runs at every mix of 2s and 3s that binds.
#[test]
fn stdlib_layers_run_at_tiny_sizes() {
    for (name, source) in STDLIB {
        let c = check_source(name, source.as_bytes());
        let (module, _) = c.result.unwrap_or_else(|d| panic!("{name} does not check:\n{}", d.render(&c.file, false)));
        for layer in &module.layers {
            let mut ran = 0;
            for mask in 0u32..32 {
                let threes: Vec<bool> = (0..8).map(|i| mask >> i & 1 == 1).collect();
                match run_tiny(layer, &threes, u64::from(mask)) {
                    Ok(Ran::Ok) => ran += 1,
                    Ok(Ran::Unbindable | Ran::TooLarge) => {}
                    Err(e) => panic!("{name} layer `{}`: {e}", layer.name),
                }
            }
            assert_eq!(
                ran, 32,
                "{name}: layer `{}` ran at every mix of 2s and 3s (or at all 2s where 3s do not bind)",
                layer.name
            );
        }
    }
}
