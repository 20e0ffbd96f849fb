//! Marker-controlled watershed, which imageproc does not have: seeds grow
//! over a height map, highest pixels first, until they meet. Red cells that
//! touch are split this way on their distance transform.

use crate::binary::NEIGHBOURS_8;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Floods from `labels`' non-zero seeds into the pixels where `inside` holds,
/// visiting higher `height` first (8-neighbours). Returns the grown labels;
/// pixels no seed reaches keep 0. Ties go to the pixel queued first, so the
/// result does not depend on anything but the inputs.
pub fn flood(width: u32, height_map: &[f32], inside: &[bool], mut labels: Vec<u32>) -> Vec<u32> {
    let (w, n) = (width as i64, height_map.len() as i64);
    let h = n / w;
    // Heights are non-negative distances; their bit patterns sort as the
    // numbers do. The counter breaks ties in queue order.
    let key = |i: usize| height_map[i].max(0.0).to_bits();
    let mut heap = BinaryHeap::new();
    let mut queued = vec![false; n as usize];
    let mut counter = 0u64;
    let mut push = |heap: &mut BinaryHeap<(u32, Reverse<u64>, usize)>, i: usize| {
        heap.push((key(i), Reverse(counter), i));
        counter += 1;
    };
    for i in 0..n as usize {
        if labels[i] != 0 {
            queued[i] = true;
            push(&mut heap, i);
        }
    }
    while let Some((_, _, i)) = heap.pop() {
        let (x, y) = (i as i64 % w, i as i64 / w);
        for (dx, dy) in NEIGHBOURS_8 {
            let (nx, ny) = (x + dx, y + dy);
            if nx < 0 || ny < 0 || nx >= w || ny >= h {
                continue;
            }
            let j = (ny * w + nx) as usize;
            if inside[j] && !queued[j] {
                queued[j] = true;
                labels[j] = labels[i];
                push(&mut heap, j);
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_seeds_meet_at_the_saddle() {
        // A ridge profile along one row: peaks at 1 and 7, the valley at 4
        // goes to the side whose slope reaches it first (the higher one).
        let height = [1.0, 3.0, 2.0, 1.5, 1.0, 1.2, 2.5, 3.5, 2.0];
        let mut seeds = vec![0; 9];
        seeds[1] = 1;
        seeds[7] = 2;
        let out = flood(9, &height, &[true; 9], seeds);
        assert_eq!(out, [1, 1, 1, 1, 1, 2, 2, 2, 2]);
        // Pixels outside stay unlabelled.
        let mut inside = [true; 9];
        inside[8] = false;
        let mut seeds = vec![0; 9];
        seeds[0] = 3;
        assert_eq!(flood(9, &height, &inside, seeds)[8], 0);
    }
}
