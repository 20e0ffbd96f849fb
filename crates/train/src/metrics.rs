//! Test-set metrics of a classifier: accuracy, and for the positive class (the blast
//! class in ALL-IDB2) sensitivity, specificity, precision, F1 and ROC-AUC, plus the
//! confusion matrix.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    /// Index of the class counted as positive.
    pub positive_class: usize,
    /// Recall of the positive class (blast recall).
    pub sensitivity: f64,
    /// Recall of the other classes taken together.
    pub specificity: f64,
    pub precision: f64,
    pub f1: f64,
    /// Area under the ROC curve of the positive class's softmax probability
    /// (Mann–Whitney U, ties counted ½); `null` when one side has no image.
    pub roc_auc: Option<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Metrics {
    /// Metrics from per-image class probabilities (`probs[i]` sums to 1), true labels and
    /// per-image losses.
    pub fn compute(probs: &[Vec<f64>], labels: &[usize], losses: &[f64], positive: usize) -> Self {
        let k = probs.first().map_or(0, |p| p.len()).max(positive + 1);
        let mut confusion = vec![vec![0usize; k]; k];
        for (p, &y) in probs.iter().zip(labels) {
            let pred = argmax(p);
            confusion[y][pred] += 1;
        }
        let n = labels.len();
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let tp = confusion[positive][positive];
        let fn_ = confusion[positive].iter().sum::<usize>() - tp;
        let fp = (0..k)
            .filter(|&c| c != positive)
            .map(|c| confusion[c][positive])
            .sum::<usize>();
        let tn = n - tp - fn_ - fp;
        let sensitivity = ratio(tp, tp + fn_);
        let precision = ratio(tp, tp + fp);
        let f1 = if precision + sensitivity > 0.0 {
            2.0 * precision * sensitivity / (precision + sensitivity)
        } else {
            0.0
        };
        let scores: Vec<f64> = probs.iter().map(|p| p[positive]).collect();
        let is_pos: Vec<bool> = labels.iter().map(|&y| y == positive).collect();
        Metrics {
            n,
            loss: if n == 0 {
                0.0
            } else {
                losses.iter().sum::<f64>() / n as f64
            },
            accuracy: ratio(correct, n),
            positive_class: positive,
            sensitivity,
            specificity: ratio(tn, tn + fp),
            precision,
            f1,
            roc_auc: roc_auc(&scores, &is_pos),
            confusion,
        }
    }
}

/// First index of the largest value (NaN never wins).
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// ROC-AUC as the Mann–Whitney statistic with average ranks for ties.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    let rank_sum: f64 = (0..scores.len())
        .filter(|&i| positive[i])
        .map(|i| ranks[i])
        .sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// The class whose sensitivity, precision, F1 and ROC are reported: `spec` (a class name or
/// index) when given, else the class named `all`/`blast`/`blasts`, else class 1.
pub fn positive_class(spec: Option<&str>, classes: &[String]) -> Result<usize, String> {
    if let Some(s) = spec {
        if let Some(i) = classes.iter().position(|c| c == s) {
            return Ok(i);
        }
        return match s.parse::<usize>() {
            Ok(i) if i < classes.len() => Ok(i),
            _ => Err(format!(
                "positive class {s:?}: not a class name or index (classes: {})",
                classes.join(", ")
            )),
        };
    }
    Ok(classes
        .iter()
        .position(|c| matches!(c.to_lowercase().as_str(), "all" | "blast" | "blasts"))
        .unwrap_or(1.min(classes.len().saturating_sub(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_small_confusion() {
        // 3 blasts (class 1): 2 found; 3 healthy: 1 called blast.
        let p = |b: f64| vec![1.0 - b, b];
        let probs = vec![p(0.9), p(0.8), p(0.3), p(0.6), p(0.2), p(0.1)];
        let labels = [1, 1, 1, 0, 0, 0];
        let m = Metrics::compute(&probs, &labels, &[0.5; 6], 1);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![1, 2]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.sensitivity - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.specificity - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        // Pairs (pos, neg) ordered correctly: 0.9 beats all 3, 0.8 all 3, 0.3 beats 0.2, 0.1.
        assert!((m.roc_auc.unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert!((m.loss - 0.5).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ties_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), None);
    }
}
