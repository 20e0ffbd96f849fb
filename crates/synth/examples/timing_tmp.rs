// Temporary: renders N images on one thread, or writes the default dataset;
// run under /usr/bin/time for CPU time.
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let cfg = leukex_synth::SynthConfig::default();
    let t = std::time::Instant::now();
    if mode == "write" {
        let dir = std::path::PathBuf::from(std::env::args().nth(2).unwrap());
        for _ in 0..3 {
            let t = std::time::Instant::now();
            leukex_synth::write_dataset(&cfg, &dir, &|_| {}).unwrap();
            println!("write 260: {:.3} s wall", t.elapsed().as_secs_f64());
        }
        return;
    }
    let n: usize = mode.parse().unwrap_or(40);
    let mut acc = 0usize;
    for i in 0..n {
        acc += leukex_synth::generate_one(&cfg, (i * 7) % 260).image.len();
    }
    println!(
        "{acc} {:.2} ms/image wall",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
