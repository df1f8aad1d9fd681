//! Prints the loop IR and the optimized LLVM IR of a layer (a debugging aid).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let src = std::fs::read_to_string(&args[1]).expect("read");
    let layer = ssmc_compiler::compile(&src).expect("compiles").0.layers.remove(0);
    let target = ssmc_compiler::target::Target::cpu("native");
    let k = ssmc_compiler::artifact::kernel(&layer, &target, ssmc_compiler::forms::Form::Recurrent).expect("kernel");
    if args.get(2).map(String::as_str) == Some("loops") {
        print!("{k}");
    } else {
        let ir = ssmc_compiler::codegen::llvm_ir(&[k], &target).expect("ir");
        print!("{ir}");
    }
}
