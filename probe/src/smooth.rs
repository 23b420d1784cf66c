//! Smoothing: an exponentially weighted moving average with a minimum-sample rule.

/// One beacon's smoothed RTT: `ewma ← alpha·sample + (1 − alpha)·ewma` (the first sample
/// starts it); reported only after `min_samples` samples; `fall` consecutive failures
/// forget everything (the beacon must earn `min_samples` again).
#[derive(Debug, Clone)]
pub struct Smoothed {
    alpha: f64,
    min_samples: u32,
    fall: u32,
    ewma: Option<f64>,
    samples: u32,
    failures: u32,
}

impl Smoothed {
    /// An empty average.
    pub fn new(alpha: f64, min_samples: u32, fall: u32) -> Self {
        Self {
            alpha,
            min_samples,
            fall,
            ewma: None,
            samples: 0,
            failures: 0,
        }
    }

    /// Adds a measured RTT in milliseconds.
    pub fn sample(&mut self, ms: f64) {
        self.failures = 0;
        self.samples = self.samples.saturating_add(1);
        self.ewma = Some(match self.ewma {
            None => ms,
            Some(old) => self.alpha * ms + (1.0 - self.alpha) * old,
        });
    }

    /// Counts a failed measurement.
    pub fn failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.fall {
            self.ewma = None;
            self.samples = 0;
        }
    }

    /// The smoothed RTT once there are enough samples.
    pub fn value(&self) -> Option<f64> {
        self.ewma.filter(|_| self.samples >= self.min_samples)
    }

    /// Samples since the last reset.
    pub fn samples(&self) -> u32 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_samples_then_ewma() {
        let mut s = Smoothed::new(0.5, 3, 2);
        s.sample(10.0);
        s.sample(10.0);
        assert_eq!(s.value(), None);
        s.sample(30.0);
        assert_eq!(s.value(), Some(20.0));
        s.sample(40.0);
        assert_eq!(s.value(), Some(30.0));
    }

    #[test]
    fn fall_failures_forget() {
        let mut s = Smoothed::new(0.5, 1, 2);
        s.sample(10.0);
        s.failure();
        assert_eq!(s.value(), Some(10.0));
        s.failure();
        assert_eq!(s.value(), None);
        assert_eq!(s.samples(), 0);
        s.sample(50.0);
        assert_eq!(s.value(), Some(50.0));
    }
}
