//! How old a process is, from its start time (clock ticks after boot) and the system's uptime.
//! The arithmetic is pure; [`process_age`] reads the real clock for it.

/// Seconds between a start time (clock ticks after boot) and `uptime_s` seconds after boot.
pub fn age_at(start_time: u64, uptime_s: f64, ticks_per_second: u64) -> u64 {
    let started = start_time as f64 / ticks_per_second.max(1) as f64;
    (uptime_s - started).max(0.0) as u64
}

/// Seconds since the system booted, from `/proc/uptime`.
pub fn uptime_s() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since a process started.
pub fn process_age(start_time: u64) -> Option<u64> {
    Some(age_at(start_time, uptime_s()?, super::sys::clock_ticks()))
}

/// An age for people: `42 s`, `3 min`, `2 h`, `5 d`.
pub fn human_age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_from_ticks_and_uptime() {
        assert_eq!(age_at(1000, 100.0, 100), 90);
        assert_eq!(
            age_at(20_000, 100.0, 100),
            0,
            "a start in the future is age 0"
        );
        assert_eq!(human_age(59), "59 s");
        assert_eq!(human_age(3 * 60), "3 min");
        assert_eq!(human_age(7200), "2 h");
        assert_eq!(human_age(86400 * 5), "5 d");
    }
}
