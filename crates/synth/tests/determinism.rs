//! An image is a pure function of (configuration, index).

use leukex_data::{LabelTable, MorphologyMask, image_io};
use leukex_synth::{SynthConfig, generate_one, write_dataset};

fn cfg(n: usize, seed: u64, size: u32) -> SynthConfig {
    SynthConfig {
        n,
        seed,
        size,
        ..Default::default()
    }
}

#[test]
fn same_configuration_gives_the_same_bytes() {
    let c = cfg(260, 42, 257);
    for i in [0, 77, 130, 259] {
        let a = generate_one(&c, i);
        let b = generate_one(&c, i);
        assert_eq!(a, b, "image {i} differs between two renders");
    }
}

#[test]
fn seeds_and_indices_give_different_images() {
    let a = generate_one(&cfg(260, 1, 257), 5);
    let b = generate_one(&cfg(260, 2, 257), 5);
    let c = generate_one(&cfg(260, 1, 257), 6);
    assert_ne!(a.image, b.image);
    assert_ne!(a.image, c.image);
    assert_ne!(a.mask, b.mask);
}

#[test]
fn parallel_writing_matches_single_renders_and_thread_count_does_not_matter() {
    let c = cfg(10, 9, 96);
    let many = tempfile::tempdir().unwrap();
    let one = tempfile::tempdir().unwrap();
    write_dataset(&c, many.path(), &|_| {}).unwrap();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| write_dataset(&c, one.path(), &|_| {}))
        .unwrap();
    let table = LabelTable::default();
    for i in 0..c.n {
        let s = generate_one(&c, i);
        let tif = many.path().join(format!("{}.tif", s.stem));
        let png = many.path().join("masks").join(format!("{}.png", s.stem));
        assert_eq!(image_io::read_rgb(&tif).unwrap(), s.image, "{}", s.stem);
        assert_eq!(MorphologyMask::read_png(&png, &table).unwrap(), s.mask);
        for rel in [format!("{}.tif", s.stem), format!("masks/{}.png", s.stem)] {
            assert_eq!(
                std::fs::read(many.path().join(&rel)).unwrap(),
                std::fs::read(one.path().join(&rel)).unwrap(),
                "{rel} depends on the thread count"
            );
        }
    }
    for f in ["manifest.csv", "labels.json", "synth.json"] {
        assert_eq!(
            std::fs::read(many.path().join(f)).unwrap(),
            std::fs::read(one.path().join(f)).unwrap(),
            "{f}"
        );
    }
}
