//! The `ssmc` command line.
fn main() {
    for p in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&p).expect("read");
        let f = ssmc_compiler::SourceFile::new(p.clone(), text.clone());
        match ssmc_compiler::compile(&text) {
            Ok((m, w)) => { print!("{}", w.render(&f, false)); for l in &m.layers { print!("{l}"); } }
            Err(d) => print!("{}", d.render(&f, false)),
        }
    }
}
