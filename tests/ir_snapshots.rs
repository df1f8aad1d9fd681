//! IR snapshots: the layer IR text of every stdlib layer, so that a change in sema or in
//! the IR printer shows up as a reviewed diff.

#[test]
fn stdlib() {
    insta::glob!("../stdlib", "*.ssm", |path| {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let checked = ssmc_compiler::check_source(&name, &bytes);
        let (module, _warnings) = match checked.result {
            Ok(ok) => ok,
            Err(diags) => panic!("{name} is rejected:\n{}", diags.render(&checked.file, false)),
        };
        assert!(!module.layers.is_empty(), "{name} declares no layer");
        let text: Vec<String> = module.layers.iter().map(|layer| format!("{layer}")).collect();
        insta::assert_snapshot!(text.join("\n"));
    });
}
