//! Summary statistics of launch times: what boot-benchmark prints (mean and
//! standard deviation) plus min, median and max, since launch times under
//! load have a long upper tail that the mean hides. Pure arithmetic; the
//! samples come from `launch.rs`.

use serde::Serialize;

/// The summary of one series of timed launches, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Number of samples.
    pub(crate) n: usize,
    /// Arithmetic mean.
    pub(crate) mean_s: f64,
    /// Sample standard deviation (n - 1 in the denominator); `None` for a
    /// single sample, where it is undefined.
    pub(crate) sd_s: Option<f64>,
    /// Smallest sample.
    pub(crate) min_s: f64,
    /// Median (mean of the two middle samples when n is even).
    pub(crate) median_s: f64,
    /// Largest sample.
    pub(crate) max_s: f64,
    /// Every sample, in the order measured.
    pub(crate) samples_s: Vec<f64>,
}

impl Summary {
    /// Summarise `samples`; `None` when there are none (or one is not a
    /// finite number, which a duration never is).
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            var.sqrt()
        });
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Summary {
            n,
            mean_s: mean,
            sd_s: sd,
            min_s: sorted[0],
            median_s: median,
            max_s: sorted[n - 1],
            samples_s: samples.to_vec(),
        })
    }
}

/// `a / b`, the "fixed / supermin" ratio (below 1: the fixed appliance is
/// faster); `None` when `b` is not positive.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn odd_sample_count() {
        // Measured, unordered: the summary must not depend on the order.
        let s = Summary::of(&[13.0, 12.0, 14.0, 12.5, 20.0]).unwrap();
        assert_eq!(s.n, 5);
        assert!(close(s.mean_s, 14.3));
        // Sum of squared deviations 42.8 over n - 1 = 4.
        assert!(close(s.sd_s.unwrap(), (42.8f64 / 4.0).sqrt()));
        assert_eq!((s.min_s, s.median_s, s.max_s), (12.0, 13.0, 20.0));
        assert_eq!(s.samples_s, [13.0, 12.0, 14.0, 12.5, 20.0]);
    }

    #[test]
    fn even_sample_count_takes_the_middle_pair() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!(close(s.median_s, 2.5));
        assert!(close(s.mean_s, 2.5));
        assert!(close(s.sd_s.unwrap(), (5.0f64 / 3.0).sqrt()));
    }

    #[test]
    fn one_sample_has_no_standard_deviation() {
        let s = Summary::of(&[12.76]).unwrap();
        assert_eq!(s.sd_s, None);
        assert_eq!((s.min_s, s.median_s, s.max_s, s.mean_s), (12.76, 12.76, 12.76, 12.76));
    }

    #[test]
    fn identical_samples_have_zero_spread() {
        let s = Summary::of(&[3.0, 3.0, 3.0]).unwrap();
        assert_eq!(s.sd_s, Some(0.0));
    }

    #[test]
    fn nothing_to_summarise() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratio_of_means() {
        assert!(close(ratio(12.76, 13.21).unwrap(), 12.76 / 13.21));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
