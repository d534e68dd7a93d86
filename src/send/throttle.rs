//! How fast messages may go. In: `[smtp] rate`, `per_hour`, the retry base, and
//! the time (passed in, so this is tested without waiting). Out: how long to
//! wait before the next message. Guarantee kept here: at most `rate` messages a
//! second and `per_hour` in any sliding hour per relay, and none while a
//! server's "slow down" (421, 4.7.x) pause lasts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

/// Retry delay after `attempts` attempts: `base`, 2 × `base`, 4 × `base` … at
/// most 5 minutes (`base` is `[smtp] retry_base_ms`, 1 s by default).
pub(crate) fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.min(12).saturating_sub(1);
    (base * factor).min(Duration::from_secs(300))
}

pub(crate) struct Throttle {
    interval: Option<Duration>,
    next_slot: Instant,
    per_hour: usize,
    /// When the messages of the last hour went, oldest first.
    window: VecDeque<Instant>,
    paused_until: Instant,
    pause: Duration,
    /// The first "slow down" pause: five retry bases.
    first_pause: Duration,
}

impl Throttle {
    pub(crate) fn new(rate: f64, per_hour: u32, retry_base: Duration, now: Instant) -> Throttle {
        Throttle {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next_slot: now,
            per_hour: per_hour as usize,
            window: VecDeque::new(),
            paused_until: now,
            pause: Duration::ZERO,
            first_pause: backoff(retry_base, 1) * 5,
        }
    }

    /// Takes a slot at `now` (`None`), or says how long to wait first.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Duration> {
        let mut ready_at = self.paused_until.max(if self.interval.is_some() {
            self.next_slot
        } else {
            now
        });
        if self.per_hour > 0 {
            while self
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= HOUR)
            {
                self.window.pop_front();
            }
            if self.window.len() >= self.per_hour {
                ready_at = ready_at.max(self.window[0] + HOUR);
            }
        }
        if ready_at > now {
            return Some(ready_at - now);
        }
        if let Some(interval) = self.interval {
            self.next_slot = self.next_slot.max(now) + interval;
        }
        if self.per_hour > 0 {
            self.window.push_back(now);
        }
        None
    }

    /// The server said 421 or 4.7.x: pause everyone, longer each time in a row
    /// (5 s, 10 s, 20 s … 5 minutes with the default retry base).
    pub(crate) fn slow_down(&mut self, now: Instant) -> Duration {
        self.pause = if self.pause.is_zero() {
            self.first_pause
        } else {
            (self.pause * 2).min(Duration::from_secs(300))
        };
        self.paused_until = self.paused_until.max(now + self.pause);
        self.pause
    }

    pub(crate) fn accepted(&mut self) {
        self.pause = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_hourly_window_is_honoured_exactly() {
        let t0 = Instant::now();
        let mut t = Throttle::new(0.0, 3, SECOND, t0);
        assert_eq!(t.take(t0), None);
        assert_eq!(t.take(t0 + Duration::from_secs(10)), None);
        assert_eq!(t.take(t0 + Duration::from_secs(20)), None);
        // The fourth waits until the first is an hour old, to the second.
        assert_eq!(
            t.take(t0 + Duration::from_secs(30)),
            Some(HOUR - Duration::from_secs(30))
        );
        assert_eq!(
            t.take(t0 + HOUR - Duration::from_millis(1)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(t.take(t0 + HOUR), None);
        assert_eq!(t.take(t0 + HOUR), Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_rate_spaces_messages_and_a_slow_down_pauses_all() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2.0, 0, SECOND, t0);
        assert_eq!(t.take(t0), None);
        assert_eq!(t.take(t0), Some(Duration::from_millis(500)));
        assert_eq!(t.take(t0 + Duration::from_millis(500)), None);
        let pause = t.slow_down(t0 + Duration::from_secs(1));
        assert_eq!(pause, Duration::from_secs(5));
        assert_eq!(t.take(t0 + Duration::from_secs(1)), Some(pause));
        let longer = t.slow_down(t0 + Duration::from_secs(1));
        assert_eq!(longer, pause * 2);
        t.accepted();
        assert_eq!(t.slow_down(t0 + Duration::from_secs(1)), pause);
    }

    #[test]
    fn backoff_doubles_from_its_base_up_to_five_minutes() {
        assert_eq!(backoff(SECOND, 1), SECOND);
        assert_eq!(backoff(SECOND, 3), SECOND * 4);
        assert_eq!(backoff(SECOND, 30), Duration::from_secs(300));
        assert_eq!(
            backoff(Duration::from_millis(50), 2),
            Duration::from_millis(100)
        );
    }
}
