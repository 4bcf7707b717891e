//! Writes every target's seed inputs to `<dir>/<target>/seed-<n>`, the
//! starting corpus of a libFuzzer run (`fuzz/run-libfuzzer` calls it).

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .expect("usage: export_seeds DIR");
    for target in fuzz::targets::ALL {
        let out = dir.join(target.name);
        std::fs::create_dir_all(&out).expect("create the corpus directory");
        for (i, input) in fuzz::seeds::inputs(target.name).iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), input).expect("write a seed");
        }
    }
}
