//! Diagnostics snapshots: every `tests/fail/*.ssm` must be rejected, and its rendered
//! diagnostics (file:line:col, caret, message, hint) must match the reviewed snapshot.

use std::path::Path;

/// Checks a file the way `ssmc check` does, under its bare file name so that snapshots
/// do not depend on where the repository lives.
fn check(path: &Path) -> ssmc_compiler::Checked {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    ssmc_compiler::check_source(&name, &bytes)
}

#[test]
fn fail() {
    insta::glob!("fail/*.ssm", |path| {
        let checked = check(path);
        let diags = match &checked.result {
            Err(diags) => diags,
            Ok(_) => panic!("{} was accepted, but it holds a mistake", path.display()),
        };
        assert!(diags.has_errors(), "{}: rejected without an error", path.display());
        insta::assert_snapshot!(diags.render(&checked.file, false));
    });
}

#[test]
fn stdlib_files_check_without_errors() {
    let dir = ssmc_tests::repo().join("stdlib");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("stdlib/ exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "ssm") {
            continue;
        }
        let checked = check(&path);
        if let Err(diags) = &checked.result {
            panic!("{} is rejected:\n{}", path.display(), diags.render(&checked.file, false));
        }
        seen += 1;
    }
    assert!(seen >= 4, "expected the four stdlib layers, found {seen}");
}
