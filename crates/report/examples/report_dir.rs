//! `cargo run --release -p leukex-report --example report_dir -- DIR`: writes
//! DIR/report/ and prints its path and the time it took (for trying the report on a
//! study folder before `leukex report` exists).

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: report_dir STUDY_DIR");
    match leukex_report::write_report(std::path::Path::new(&dir)) {
        Ok(s) => println!(
            "wrote {} and {} figure files in {:.2} s",
            s.index.display(),
            s.figures.len(),
            s.seconds
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
