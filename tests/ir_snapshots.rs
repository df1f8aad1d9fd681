//! IR snapshots: the layer IR text of every stdlib layer, so that a change in sema or in
//! the IR printer shows up as a reviewed diff.

#[test]
fn stdlib() {
    insta::glob!("../stdlib", "*.ssm", |path| {
        let (name, module) = ssmc_tests::checked_module(path);
        assert!(!module.layers.is_empty(), "{name} declares no layer");
        let text: Vec<String> = module.layers.iter().map(|layer| format!("{layer}")).collect();
        insta::assert_snapshot!(text.join("\n"));
    });
}
