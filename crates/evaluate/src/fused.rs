//! Every mode and every localisation metric of one map from one ranking.
//!
//! [`crate::evaluate_map`] goes through here. The per-mode functions
//! ([`crate::mode::select`] + [`ClassShares::count`] and
//! [`crate::localisation::localise`]) stay the reference: tests check that
//! this path gives the same counts, ranks and AUC exactly, and the same
//! sums up to rounding, on random maps full of ties.
//!
//! # How
//!
//! 1. One pass over the pixels packs each into a word
//!    `key(-v) << 32 | slot` (slot = class 0..4, 5 for unlabelled; the
//!    pixel index is not stored: the sort is stable), builds the radix histograms, the class areas and the
//!    per-class sums (mass, signed and absolute relevance).
//! 2. A stable LSD radix sort on the key bits (3 passes of ≤ 11 bits) puts
//!    the words in the order of [`crate::rank`]: value descending, ties by
//!    pixel index ascending.
//! 3. Every counting mode keeps a *prefix* of that order: top-k keeps the
//!    first k words; raw-mean, positive and Otsu keep the values above a
//!    threshold; the paper's red index and Otsu's bin are non-decreasing in
//!    the value, so each index/bin is a run of the order found by binary
//!    search (256 searches instead of 50 000 divisions). One walk over the
//!    order records the per-class counts at every cut.
//! 4. Localisation: top-k intersection and rank accuracy are prefixes too;
//!    AUC is one walk over the tie groups; pointing game looks at the first
//!    tie group; the mass metrics use the per-class sums.
//!
//! Differences from the reference, all in the last bits of a float: the
//! paper's mean red value is summed per colormap entry (count × red)
//! instead of pixel by pixel, and attribution localisation / relevance
//! mass accuracy divide the summed relevance by the normaliser once instead
//! of dividing every pixel. Counts, top-k, rank accuracy, pointing game and
//! AUC are exact integers or ratios of them and agree bit for bit.
//!
//! `abs = Some(true)` (rank by |a|) is not fused: it falls back to
//! [`crate::localisation::localise`].

use crate::colormap::{Colormap, innvestigate_index, matlab_index};
use crate::localisation::{Localisation, LocalisationOptions, Region, localise};
use crate::mode::{
    Mode, OTSU_BINS, Rendering, otsu_bin, otsu_from_histogram, otsu_width, top_k_count,
};
use crate::shares::ClassShares;
use leukex_data::{MorphologyClass, MorphologyMask};

const SLOTS: usize = MorphologyClass::COUNT + 1;
const UNLABELLED: usize = MorphologyClass::COUNT;
/// Largest map the fused path takes (counts are kept in `u32`).
pub(crate) const MAX_PIXELS: usize = u32::MAX as usize;

/// Buffers reused from map to map (one per thread).
#[derive(Default)]
pub struct Scratch {
    words: Vec<u64>,
    tmp: Vec<u64>,
    cuts: Vec<usize>,
    prefix: Vec<[u32; 8]>,
    sparse: Vec<f32>,
}

/// Stride of the sampled keys that cut searches start from.
const SPARSE: usize = 64;

/// Order-preserving key of `-v` (so ascending keys = descending values);
/// `-0.0` and `0.0` share a key.
#[inline(always)]
fn key_desc(v: f32) -> u32 {
    let x = -v + 0.0;
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The value a word was made from (`0.0` may come back as `-0.0`).
#[inline(always)]
fn value_of(w: u64) -> f32 {
    let k = (w >> 32) as u32;
    let b = if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    };
    -f32::from_bits(b)
}

#[inline(always)]
fn slot_of(w: u64) -> usize {
    (w & 7) as usize
}

#[inline(always)]
fn key_of(w: u64) -> u32 {
    (w >> 32) as u32
}

/// Stable LSD radix sort of `words` on their upper 32 bits; `hist` holds
/// the three digit histograms (11, 11, 10 bits).
///
/// Each pass scatters the first half of the input forward from the start
/// of each bucket and the second half backward from its end (reading it
/// back to front): the result is the same stable order, and runs of one
/// digit (common in the top digit, where sign and exponent sit) make two
/// independent chains of offset updates instead of one.
fn radix_sort(words: &mut Vec<u64>, tmp: &mut Vec<u64>, hist: &mut [[u32; 2048]; 3]) {
    let n = words.len();
    tmp.resize(n, 0);
    let mut shift = 32;
    let mut end = [0u32; 2048];
    for (pass, bits) in [11u32, 11, 10].into_iter().enumerate() {
        let h = &mut hist[pass];
        // All keys share this digit: the pass would not move anything.
        if h.iter().any(|&c| c as usize == n) {
            shift += bits;
            continue;
        }
        let mut sum = 0u32;
        for (c, e) in h.iter_mut().zip(end.iter_mut()) {
            let v = *c;
            *c = sum;
            sum += v;
            *e = sum;
        }
        let mask = (1u64 << bits) - 1;
        let out = &mut tmp[..n];
        let half = n / 2;
        let (front, back) = words.split_at(half);
        for (&a, &b) in front.iter().zip(back[back.len() - half..].iter().rev()) {
            let da = ((a >> shift) & mask) as usize;
            let db = ((b >> shift) & mask) as usize;
            let oa = &mut h[da];
            out[*oa as usize] = a;
            *oa += 1;
            let ob = &mut end[db];
            *ob -= 1;
            out[*ob as usize] = b;
        }
        if n % 2 == 1 {
            // the middle word: all words before it went forward, all after
            // it backward, so the one slot left in its bucket is its own
            let w = words[half];
            let d = ((w >> shift) & mask) as usize;
            out[h[d] as usize] = w;
        }
        std::mem::swap(words, tmp);
        shift += bits;
    }
}

/// `out[j]` = number of words whose `f(value)` is ≥ j, for a bucket
/// function `f` that does not increase along the order (0 ≤ f ≤ 255).
/// `out[0] = n`, `out[256] = 0`.
fn bucket_bounds(words: &[u64], sparse: &[f32], f: impl Fn(f32) -> usize, out: &mut [usize; 257]) {
    let n = words.len();
    // Buckets of the sampled words (independent, so they pipeline), then
    // one short search per bound inside a block of SPARSE words.
    let sb: Vec<u16> = sparse.iter().map(|&v| f(v) as u16).collect();
    out[0] = n;
    out[256] = 0;
    let mut b = sb.len();
    for (j, o) in out.iter_mut().enumerate().take(256).skip(1) {
        // samples with bucket ≥ j: a prefix that shrinks as j grows
        while b > 0 && (sb[b - 1] as usize) < j {
            b -= 1;
        }
        *o = if b == 0 {
            0
        } else {
            let from = (b - 1) * SPARSE + 1;
            let to = (b * SPARSE).min(n);
            from + words[from..to].partition_point(|&w| f(value_of(w)) >= j)
        };
    }
}

/// Position in the order after which `m` labelled pixels have been seen.
fn labelled_position(words: &[u64], m: usize, any_unlabelled: bool) -> usize {
    if !any_unlabelled || m == 0 {
        return m;
    }
    let mut seen = 0;
    for (p, &w) in words.iter().enumerate() {
        if slot_of(w) != UNLABELLED {
            seen += 1;
            if seen == m {
                return p + 1;
            }
        }
    }
    words.len()
}

/// The cut positions asked for, and the per-slot counts of the order's
/// prefix ending at each.
struct Prefixes<'a> {
    cuts: &'a [usize],
    counts: &'a [[u32; 8]],
}

impl Prefixes<'_> {
    fn at(&self, pos: usize) -> [u32; 8] {
        self.counts[self
            .cuts
            .binary_search(&pos)
            .expect("cut position registered")]
    }
}

/// Per-slot counts of the prefixes of `words` ending at each of `cuts`
/// (sorted, deduplicated).
fn walk(words: &[u64], cuts: &[usize], out: &mut Vec<[u32; 8]>) {
    out.clear();
    let mut cnt = [[0u32; 8]; 4];
    let mut at = 0;
    for &c in cuts {
        let seg = &words[at..c];
        let mut chunks = seg.chunks_exact(4);
        for q in &mut chunks {
            cnt[0][slot_of(q[0])] += 1;
            cnt[1][slot_of(q[1])] += 1;
            cnt[2][slot_of(q[2])] += 1;
            cnt[3][slot_of(q[3])] += 1;
        }
        for &w in chunks.remainder() {
            cnt[0][slot_of(w)] += 1;
        }
        at = c;
        out.push(std::array::from_fn(|s| {
            cnt[0][s] + cnt[1][s] + cnt[2][s] + cnt[3][s]
        }));
    }
}

/// What a mode needs from the walk.
enum Plan {
    /// Keep the first `cut` words.
    Prefix(usize),
    /// Paper: runs of the order per colormap index (`bounds[j]` = number of
    /// pixels with index ≥ j) and the colormap.
    Paper(Box<[usize; 257]>, &'static Colormap),
    Mass,
}

/// Evaluates a non-constant map whose grid equals the mask's in every mode
/// and against `region` (see the module docs).
pub fn evaluate_fused(
    values: &[f32],
    mask: &MorphologyMask,
    method_id: &str,
    modes: &[Mode],
    region: Region,
    loc: &LocalisationOptions,
    s: &mut Scratch,
) -> (Vec<(String, ClassShares)>, Localisation) {
    let raw = mask.raw();
    let n = values.len();
    assert_eq!(raw.len(), n, "map and mask grids differ");
    assert!(n > 0 && n < MAX_PIXELS, "map of {n} pixels");

    // 1. Pack, histogram, areas, sums. The per-class sums run in four
    // interleaved lanes (pixel index mod 4) so that neighbouring pixels of
    // one class do not wait on each other's additions.
    let mut hist = [[0u32; 2048]; 3];
    // the top digit (sign, exponent) repeats from pixel to pixel: one
    // histogram per lane
    let mut top = [[0u32; 1024]; 4];
    let mut area = [[0u32; 8]; 4];
    // positive and negative parts per lane and slot
    let mut pos = [[0f64; 8]; 4];
    let mut neg = [[0f64; 8]; 4];
    s.words.resize(n, 0);
    let mut pack = |lane: usize, v: f32, p: u8, out: &mut u64| {
        let slot = (p as usize).min(UNLABELLED);
        let k = key_desc(v);
        *out = ((k as u64) << 32) | slot as u64;
        hist[0][(k & 0x7ff) as usize] += 1;
        hist[1][((k >> 11) & 0x7ff) as usize] += 1;
        top[lane][(k >> 22) as usize] += 1;
        area[lane][slot] += 1;
        let x = v as f64;
        pos[lane][slot] += x.max(0.0);
        neg[lane][slot] += x.min(0.0);
    };
    let head = n - n % 4;
    for ((v, p), out) in values[..head]
        .chunks_exact(4)
        .zip(raw[..head].chunks_exact(4))
        .zip(s.words[..head].chunks_exact_mut(4))
    {
        for l in 0..4 {
            pack(l, v[l], p[l], &mut out[l]);
        }
    }
    for i in head..n {
        pack(0, values[i], raw[i], &mut s.words[i]);
    }
    let lanes = |a: &[[f64; 8]; 4]| -> [f64; 8] {
        std::array::from_fn(|k| (a[0][k] + a[1][k]) + (a[2][k] + a[3][k]))
    };
    for d in 0..1024 {
        hist[2][d] = top[0][d] + top[1][d] + top[2][d] + top[3][d];
    }
    let area: [u32; 8] = std::array::from_fn(|k| area[0][k] + area[1][k] + area[2][k] + area[3][k]);
    let mass = lanes(&pos);
    let negative = lanes(&neg);
    let signed: [f64; 8] = std::array::from_fn(|k| mass[k] + negative[k]);
    let absolute: [f64; 8] = std::array::from_fn(|k| mass[k] - negative[k]);
    let sum: f64 = signed[..SLOTS].iter().sum();

    // 2. Rank.
    radix_sort(&mut s.words, &mut s.tmp, &mut hist);
    let words = &s.words[..];
    let hi = value_of(words[0]);
    let lo = value_of(words[n - 1]);

    // 3. Cut positions.
    s.cuts.clear();
    // Searches go through every 64th key first (small, stays in cache),
    // then through one block of 64 words.
    s.sparse.clear();
    s.sparse
        .extend(words.iter().step_by(SPARSE).map(|&w| value_of(w)));
    let sparse = &s.sparse[..];
    let cut_where = |pred: &dyn Fn(f32) -> bool| {
        let b = sparse.partition_point(|&v| pred(v));
        if b == 0 {
            return 0;
        }
        let from = (b - 1) * SPARSE + 1;
        let to = (b * SPARSE).min(n);
        from + words[from..to].partition_point(|&w| pred(value_of(w)))
    };
    let mut paper_cache: [Option<Box<[usize; 257]>>; 2] = [None, None];
    let mut otsu_cut = None;
    let plans: Vec<Plan> = modes
        .iter()
        .map(|&m| match m {
            Mode::Paper(r) => {
                let r = r.unwrap_or_else(|| Rendering::for_method(method_id));
                let slot = r as usize;
                let bounds = paper_cache[slot]
                    .get_or_insert_with(|| {
                        let mut b = Box::new([0usize; 257]);
                        match r {
                            Rendering::Innvestigate => {
                                let absmax = lo.abs().max(hi.abs());
                                bucket_bounds(
                                    words,
                                    sparse,
                                    |v| innvestigate_index(v, absmax) as usize,
                                    &mut b,
                                );
                            }
                            Rendering::Matlab => {
                                let (l, h) = (lo as f64, hi as f64);
                                bucket_bounds(
                                    words,
                                    sparse,
                                    |v| matlab_index(v, l, h - l, Colormap::N) as usize,
                                    &mut b,
                                );
                            }
                        }
                        b
                    })
                    .clone();
                s.cuts.extend_from_slice(&bounds[..]);
                Plan::Paper(bounds, r.colormap())
            }
            Mode::RawMean => {
                let mean = sum / n as f64;
                Plan::Prefix(cut_where(&|v| v as f64 > mean))
            }
            Mode::Positive => Plan::Prefix(cut_where(&|v| v > 0.0)),
            Mode::TopK(pct) => Plan::Prefix(top_k_count(pct, n)),
            Mode::Otsu => Plan::Prefix(*otsu_cut.get_or_insert_with(|| {
                let (l, h) = (lo as f64, hi as f64);
                let width = otsu_width(l, h);
                let mut above = [0usize; OTSU_BINS + 1];
                bucket_bounds(words, sparse, |v| otsu_bin(v, l, width), &mut above);
                let hist: [f64; OTSU_BINS] =
                    std::array::from_fn(|b| (above[b] - above[b + 1]) as f64);
                let t = otsu_from_histogram(&hist, l, width);
                cut_where(&|v| v as f64 > t)
            })),
            Mode::Mass => Plan::Mass,
        })
        .collect();
    for p in &plans {
        if let Plan::Prefix(c) = p {
            s.cuts.push(*c);
        }
    }

    // Localisation cuts (labelled pixels only).
    let fuse_loc = loc.abs != Some(true);
    let any_unlabelled = area[UNLABELLED] > 0;
    let labelled = n - area[UNLABELLED] as usize;
    let s_size: usize = (0..MorphologyClass::COUNT)
        .filter(|&c| region.classes[c])
        .map(|c| area[c] as usize)
        .sum();
    let k_loc = loc.top_k.min(labelled);
    let (pos_k, pos_s) = (
        labelled_position(words, k_loc, any_unlabelled),
        labelled_position(words, s_size, any_unlabelled),
    );
    if fuse_loc {
        s.cuts.extend([pos_k, pos_s]);
    }

    s.cuts.sort_unstable();
    s.cuts.dedup();
    walk(words, &s.cuts, &mut s.prefix);
    let pre = Prefixes {
        cuts: &s.cuts,
        counts: &s.prefix,
    };

    let area5: [u64; MorphologyClass::COUNT] = std::array::from_fn(|c| area[c] as u64);
    let from_counts = |c: [u32; 8]| {
        ClassShares::from_amounts(
            std::array::from_fn(|k| c[k] as f64),
            c[UNLABELLED] as f64,
            area5,
        )
    };
    let shares = modes
        .iter()
        .zip(&plans)
        .map(|(m, plan)| {
            let sh = match plan {
                Plan::Prefix(c) => from_counts(pre.at(*c)),
                Plan::Mass => ClassShares::from_amounts(
                    std::array::from_fn(|k| mass[k]),
                    mass[UNLABELLED],
                    area5,
                ),
                Plan::Paper(bounds, cm) => {
                    let mut per_index = [[0u32; 8]; 256];
                    let mut red_sum = 0.0;
                    for j in 0..256 {
                        let (a, b) = (pre.at(bounds[j]), pre.at(bounds[j + 1]));
                        per_index[j] = std::array::from_fn(|k| a[k] - b[k]);
                        red_sum += (bounds[j] - bounds[j + 1]) as f64 * cm.red(j);
                    }
                    let mean = red_sum / n as f64;
                    let mut c = [0u32; 8];
                    for (j, pj) in per_index.iter().enumerate() {
                        if cm.red(j) > mean {
                            for k in 0..8 {
                                c[k] += pj[k];
                            }
                        }
                    }
                    from_counts(c)
                }
            };
            (m.to_string(), sh)
        })
        .collect();

    let localisation = if !fuse_loc {
        localise(values, mask, region, loc, None)
    } else if labelled == 0 || s_size == 0 {
        Localisation::default()
    } else {
        let inside = |slot: usize| slot < MorphologyClass::COUNT && region.classes[slot];
        let hits = |c: [u32; 8]| -> usize {
            (0..MorphologyClass::COUNT)
                .filter(|&k| region.classes[k])
                .map(|k| c[k] as usize)
                .sum()
        };
        // Labelled extremes.
        let top_at = words
            .iter()
            .position(|&w| slot_of(w) != UNLABELLED)
            .expect("labelled pixels");
        let top = words[top_at];
        let bottom = *words
            .iter()
            .rev()
            .find(|&&w| slot_of(w) != UNLABELLED)
            .expect("labelled pixels");
        let absmax = (value_of(top) as f64)
            .abs()
            .max((value_of(bottom) as f64).abs());
        let scale = if loc.normalise && absmax > 0.0 {
            absmax
        } else {
            1.0
        };

        // Pointing game: an inside pixel among those tied at the maximum.
        let hit = words[top_at..]
            .iter()
            .take_while(|&&w| key_of(w) == key_of(top))
            .any(|&w| inside(slot_of(w)));
        let pointing_game = Some(if hit {
            if loc.pointing_weighted {
                1.0 - s_size as f64 / labelled as f64
            } else {
                1.0
            }
        } else {
            0.0
        });

        let labelled_sums = |a: &[f64; 8]| -> (f64, f64) {
            let (mut tot, mut inn) = (0.0, 0.0);
            for (&x, &is_in) in a.iter().zip(&region.classes) {
                tot += x;
                if is_in {
                    inn += x;
                }
            }
            (inn / scale, tot / scale)
        };
        // Attribution localisation (abs defaults to true).
        let al_abs = loc.abs.unwrap_or(true);
        let (al_in, al_tot) = labelled_sums(if al_abs {
            &absolute
        } else if loc.positive_attributions {
            &mass
        } else {
            &signed
        });
        let al = al_in / (al_tot + 1e-9);
        let attribution_localisation = (al.is_finite() && al <= 1.0).then_some(al);

        let mut tki = (k_loc > 0).then(|| hits(pre.at(pos_k)) as f64 / k_loc as f64);
        if loc.concept_influence {
            tki = tki.map(|t| t * labelled as f64 / s_size as f64);
        }
        let rra = Some(hits(pre.at(pos_s)) as f64 / s_size as f64);

        let (r_in, r_tot) = labelled_sums(&signed);
        let rma = (r_tot != 0.0).then(|| r_in / r_tot);

        Localisation {
            pointing_game,
            attribution_localisation,
            top_k_intersection: tki,
            relevance_rank_accuracy: rra,
            relevance_mass_accuracy: rma,
            auc: auc(words, &region, s_size, labelled),
        }
    };
    (shares, localisation)
}

/// ROC-AUC over the labelled words in descending order: each inside pixel
/// scores the outside pixels below it plus half of those tied with it.
fn auc(words: &[u64], region: &Region, pos: usize, labelled: usize) -> Option<f64> {
    let neg = labelled - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // inside flag per slot; unlabelled counts neither way
    let mut is_in = [0u64; 8];
    let mut is_out = [0u64; 8];
    for k in 0..MorphologyClass::COUNT {
        is_in[k] = region.classes[k] as u64;
        is_out[k] = !region.classes[k] as u64;
    }
    let neg = neg as u64;
    // Twice the Mann–Whitney U, in integers: 2·p·(neg − seen − q) + p·q per
    // tie group.
    let mut twice = 0u64;
    let mut seen = 0u64;
    let (mut p, mut q) = (0u64, 0u64);
    let mut key = key_of(words[0]);
    for &w in words {
        let k = key_of(w);
        if k != key {
            twice += 2 * p * (neg - seen - q) + p * q;
            seen += q;
            p = 0;
            q = 0;
            key = k;
        }
        let sl = slot_of(w);
        p += is_in[sl];
        q += is_out[sl];
    }
    twice += 2 * p * (neg - seen - q) + p * q;
    Some(twice as f64 / 2.0 / (pos as f64 * neg as f64))
}
