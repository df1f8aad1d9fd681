//! The launch of an artifact (its work items and, on the GPU, its shared memory per block)
//! is stated once, in the kernel (the loop IR's `work_items` and shared scratch), and
//! carried as expressions into `manifest.json` (which `ssmc-runtime` launches from) and the
//! C header (`<entry>_work_items`, `<entry>_shared_bytes`). This test builds every native
//! schedule of the stdlib layers and of `tests/lower/` for both targets and checks that the
//! three agree at awkward sizes, the header's formulas compiled with `cc` and run.

use ssmc_compiler::schedule;
use ssmc_compiler::target::Target;
use ssmc_contract::Manifest;
use std::fmt::Write as _;
use std::process::Command;

/// Runtime dim sizes to try, by dim position: awkward, and large enough for lanes to
/// leave a remainder (heads not a multiple of 8 or 16 per group).
const SIZES: [[u64; 6]; 3] = [[1, 1, 1, 1, 1, 1], [3, 7, 5, 2, 11, 13], [2, 19, 37, 6, 3, 9]];

#[test]
fn kernel_manifest_and_header_agree_on_the_work_items() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for target in [Target::cpu("x86-64-v3"), Target::cuda()] {
        for (name, layer, form) in ssmc_tests::schedules(&target) {
            let kernel = schedule::kernel(&layer, &target, form).expect("scheduled");
            let out = dir.path().join(format!("{name}-{form}-{}", target.name()));
            let m = ssmc_tests::build_artifact(&layer, &target, form, &out)
                .unwrap_or_else(|e| panic!("{name} {form}: {e}"));
            let what = format!("{name} {form} on {}", target.name());
            let mut program = format!("#include <stdio.h>\n#include \"{}\"\nint main(void) {{\n", m.files["header"]);
            let mut expected = String::new();
            for sizes in SIZES {
                let (all, runtime) = dims_at(&m, &sizes);
                let from_kernel = kernel
                    .dims
                    .iter()
                    .map(|d| runtime.iter().find(|(n, _)| n == d).map(|(_, s)| *s as i64))
                    .collect::<Option<Vec<i64>>>()
                    .unwrap_or_else(|| panic!("{what}: the kernel's dims {:?} are not the manifest's", kernel.dims));
                let k = kernel
                    .work_items
                    .eval(&from_kernel)
                    .unwrap_or_else(|| panic!("{what}: {} has no value", kernel.work_items));
                let from_manifest = m.work_items(&all).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    k as u64, from_manifest,
                    "{what} at {runtime:?}: kernel {} against manifest",
                    kernel.work_items
                );
                let shared = kernel.shared_bytes().eval(&from_kernel).expect("shared bytes");
                if let ssmc_contract::manifest::Launch::Grid { shared_bytes, .. } = &m.launch {
                    let from_manifest = m.eval(shared_bytes, &all).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(shared as u64, from_manifest, "{what} at {runtime:?}: shared bytes");
                    writeln!(
                        program,
                        "  {{ int64_t dims[] = {{{}}}; printf(\"%lld\\n\", (long long){}_shared_bytes(dims)); }}",
                        runtime.iter().map(|(_, s)| s.to_string()).chain(["0".into()]).collect::<Vec<_>>().join(", "),
                        m.entry
                    )
                    .expect("write");
                    writeln!(expected, "{from_manifest}").expect("write");
                } else {
                    assert_eq!(shared, 0, "{what}: a range launch with shared memory");
                }
                let values: Vec<String> = runtime.iter().map(|(_, s)| s.to_string()).chain(["0".into()]).collect();
                writeln!(
                    program,
                    "  {{ int64_t dims[] = {{{}}}; printf(\"%lld\\n\", (long long){}_work_items(dims)); }}",
                    values.join(", "),
                    m.entry
                )
                .expect("write");
                writeln!(expected, "{from_manifest}").expect("write");
            }
            program += "  return 0;\n}\n";
            let c = out.join("work_items.c");
            std::fs::write(&c, program).expect("write C");
            let exe = out.join("work_items");
            let cc = Command::new("cc")
                .arg("-std=c99")
                .arg("-Wall")
                .arg("-Werror")
                .arg("-I")
                .arg(&out)
                .arg(&c)
                .arg("-o")
                .arg(&exe)
                .output()
                .expect("run cc");
            assert!(
                cc.status.success(),
                "{what}: the header's work_items does not compile:\n{}",
                String::from_utf8_lossy(&cc.stderr)
            );
            let run = Command::new(&exe).output().expect("run the C program");
            assert_eq!(String::from_utf8_lossy(&run.stdout), expected, "{what}: header against manifest");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} schedules checked");
}

/// The size of every dim of the manifest (compile-time ones as declared, runtime ones
/// from `sizes` in order), and the runtime ones by name, in the manifest's order. A
/// runtime group dim gets the largest of 3, 2, 1 that divides the heads.
fn dims_at(m: &Manifest, sizes: &[u64; 6]) -> (Vec<u64>, Vec<(String, u64)>) {
    let mut all: Vec<u64> = Vec::new();
    let mut next = 0;
    for d in &m.dims {
        all.push(d.size.unwrap_or_else(|| {
            next += 1;
            sizes[(next - 1) % sizes.len()]
        }));
    }
    let heads = m.dims.iter().position(|d| d.role == "head").map_or(1, |i| all[i]);
    if let Some(g) = m.dims.iter().position(|d| d.role == "group" && d.size.is_none()) {
        all[g] = [3, 2, 1].into_iter().find(|g| heads % g == 0).unwrap_or(1);
    }
    let runtime =
        m.dims.iter().zip(&all).filter(|(d, _)| d.size.is_none()).map(|(d, s)| (d.name.clone(), *s)).collect();
    (all, runtime)
}
