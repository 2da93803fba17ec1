//! Exponential backoff with jitter. Pure: the caller supplies the random draw.

use std::time::Duration;

/// Delay before attempt `attempt + 1`, after `attempt` failures (1-based):
/// `initial * 2^(attempt-1)`, capped at `max`, then reduced by up to a
/// quarter according to `jitter` in `[0, 1)` so that many instances failing
/// together do not retry in lockstep.
pub fn delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    base.mul_f64(1.0 - 0.25 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let i = Duration::from_secs(2);
        let m = Duration::from_secs(300);
        let table = [
            (1, 2),
            (2, 4),
            (3, 8),
            (4, 16),
            (8, 256),
            (9, 300),
            (40, 300),
        ];
        for (attempt, secs) in table {
            assert_eq!(
                delay(attempt, i, m, 0.0),
                Duration::from_secs(secs),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn jitter_only_shortens_by_a_quarter_at_most() {
        let d = delay(
            3,
            Duration::from_secs(2),
            Duration::from_secs(300),
            0.999_999,
        );
        assert!(
            d > Duration::from_secs(6) && d <= Duration::from_secs(8),
            "{d:?}"
        );
    }
}
