//! Restart delays: exponential from the initial backoff, capped, with ±20% jitter so services
//! that fail together do not restart in lockstep.

use std::time::Duration;

/// The delay before restart number `attempt` (0-based). `jitter` is uniform in [0, 1).
pub fn delay(initial: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.min(20));
    let base = exp.min(max);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps_within_the_jitter() {
        let ms = Duration::from_millis;
        let middle: Vec<Duration> = (0..6).map(|a| delay(ms(100), ms(1000), a, 0.5)).collect();
        assert_eq!(
            middle,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(delay(ms(100), ms(1000), 1, 0.0), ms(160));
        assert!(delay(ms(100), ms(1000), 1, 0.999_999) < ms(240));
        assert_eq!(delay(ms(100), ms(1000), 400, 0.5), ms(1000), "no overflow");
    }
}
