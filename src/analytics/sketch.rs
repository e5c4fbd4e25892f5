//! A bounded quantile sketch with a relative-error guarantee (the DDSketch construction).
//!
//! Every value `x ≥ MIN_VALUE` falls in the bucket `⌈log_γ x⌉` with `γ = (1 + α) / (1 − α)`, and
//! a bucket answers for its values with `2γ^i / (γ + 1)`, which is within `α` (here 1 %) of each
//! of them. Values from a millisecond to thirty years need at most ~1,400 buckets whatever the
//! count, so a sketch stays under 12 KiB however long the stream; smaller values count as zero
//! and larger ones are clamped. Sketches with the same `α` merge exactly (a bucket-wise sum).

/// The relative accuracy of every quantile the sketch answers.
pub const ALPHA: f64 = 0.01;
/// Values below this (seconds) count as zero.
pub const MIN_VALUE: f64 = 1e-3;
/// Values above this (seconds, about 31 years) are clamped to it.
pub const MAX_VALUE: f64 = 1e9;

const GAMMA: f64 = (1.0 + ALPHA) / (1.0 - ALPHA);

fn ln_gamma() -> f64 {
    GAMMA.ln()
}

fn index_of(x: f64) -> i32 {
    // `x` is within [MIN_VALUE, MAX_VALUE], so the index is within ±1,400.
    (x.ln() / ln_gamma()).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    2.0 * GAMMA.powi(index) / (GAMMA + 1.0)
}

/// The lower bound of bucket `index`: its values are in `(γ^(index−1), γ^index]`.
fn lower_of(index: i32) -> f64 {
    GAMMA.powi(index - 1)
}

/// A quantile sketch of non-negative values (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sketch {
    /// Index of `bins[0]`.
    offset: i32,
    /// Dense counts from `offset` upwards; empty until the first positive value.
    bins: Vec<u64>,
    zeros: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Adds one value; NaN and infinities are ignored, negatives count as zero.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let x = x.clamp(0.0, MAX_VALUE);
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        if x < MIN_VALUE {
            self.zeros += 1;
            return;
        }
        let i = index_of(x);
        self.grow_to(i);
        let at = (i - self.offset) as usize;
        self.bins[at] += 1;
    }

    fn grow_to(&mut self, i: i32) {
        if self.bins.is_empty() {
            self.offset = i;
            self.bins.push(0);
        } else if i < self.offset {
            let more = (self.offset - i) as usize;
            self.bins.splice(0..0, std::iter::repeat_n(0, more));
            self.offset = i;
        } else if i - self.offset >= self.bins.len() as i32 {
            self.bins.resize((i - self.offset) as usize + 1, 0);
        }
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest and largest value added.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`) within [`ALPHA`] relative error, or `None` when empty.
    ///
    /// The answer is the value of nearest rank `⌈q · n⌉` (1-based: the lower of the two
    /// middle values for an even median), clamped to the values seen, so that q = 0 and q = 1
    /// are exact.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).saturating_sub(1);
        if rank == 0 {
            return Some(self.min);
        }
        if rank + 1 >= self.count {
            return Some(self.max);
        }
        if rank < self.zeros {
            return Some(self.min.max(0.0));
        }
        let mut seen = self.zeros;
        for (at, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen > rank {
                let v = value_of(self.offset + at as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Adds every value of `other` (exact: bucket-wise).
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.zeros += other.zeros;
        if let Some(last) = other.bins.len().checked_sub(1) {
            self.grow_to(other.offset);
            self.grow_to(other.offset + last as i32);
            for (at, n) in other.bins.iter().enumerate() {
                let i = (other.offset + at as i32 - self.offset) as usize;
                self.bins[i] += n;
            }
        }
    }

    /// How many values fall in each of the half-open ranges `[edges[k], edges[k+1])` (the last
    /// range has no upper bound), within the sketch's accuracy: a bucket is counted in the range
    /// that holds its representative value. For histograms drawn from the sketch.
    pub fn histogram(&self, edges: &[f64]) -> Vec<u64> {
        let mut out = vec![0; edges.len()];
        if edges.is_empty() {
            return out;
        }
        let slot = |v: f64| edges.iter().rposition(|e| v >= *e).unwrap_or(0);
        out[slot(0.0)] += self.zeros;
        for (at, n) in self.bins.iter().enumerate() {
            if *n > 0 {
                let v = value_of(self.offset + at as i32);
                out[slot(v)] += n;
            }
        }
        out
    }

    /// The non-empty buckets as `(lower, upper, count)`, smallest first; zeros as `(0, MIN_VALUE)`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        let zeros = (self.zeros > 0).then_some((0.0, MIN_VALUE, self.zeros));
        zeros
            .into_iter()
            .chain(
                self.bins
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(at, n)| {
                        let i = self.offset + at as i32;
                        (lower_of(i), lower_of(i + 1), *n)
                    }),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[((q * sorted.len() as f64).ceil() as usize).saturating_sub(1)]
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        // A deterministic spread over seven orders of magnitude.
        let mut values: Vec<f64> = (1..=20_000u64)
            .map(|i| 0.01 * 1.0009f64.powi((i * 7919 % 20_000) as i32))
            .collect();
        let mut s = Sketch::new();
        for v in &values {
            s.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = exact(&values, q);
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= ALPHA * want + 1e-12,
                "q={q}: {got} vs {want}"
            );
        }
        assert_eq!(s.count(), 20_000);
        assert!(s.bins.len() < 1_500, "{} buckets", s.bins.len());
    }

    #[test]
    fn small_sets_give_their_own_values() {
        let mut s = Sketch::new();
        for v in [60.0, 90.0, 120.0] {
            s.add(v);
        }
        assert_eq!(s.quantile(0.0), Some(60.0));
        assert_eq!(s.quantile(1.0), Some(120.0));
        let median = s.quantile(0.5).unwrap();
        assert!((median - 90.0).abs() <= 0.9, "{median}");
        assert_eq!(Sketch::new().quantile(0.5), None);
    }

    #[test]
    fn zeros_negatives_and_nonsense_are_handled() {
        let mut s = Sketch::new();
        s.add(-5.0);
        s.add(0.0);
        s.add(f64::NAN);
        s.add(f64::INFINITY);
        s.add(10.0);
        assert_eq!(s.count(), 3);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(10.0));
        s.add(1e12);
        assert_eq!(s.range(), Some((0.0, MAX_VALUE)));
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 0..500 {
            let v = 0.5 + f64::from(i) * 3.7;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        b.add(1e6);
        all.add(1e6);
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn histograms_and_buckets_account_for_every_value() {
        let mut s = Sketch::new();
        for v in [0.0, 30.0, 90.0, 4_000.0, 4_100.0, 100_000.0] {
            s.add(v);
        }
        assert_eq!(
            s.histogram(&[0.0, 60.0, 3_600.0, 86_400.0]),
            vec![2, 1, 2, 1]
        );
        assert_eq!(s.buckets().map(|b| b.2).sum::<u64>(), 6);
        for (lo, hi, _) in s.buckets() {
            assert!(lo < hi);
        }
    }
}
