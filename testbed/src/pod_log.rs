//! The CRI log format kwok's ClusterLogs reads: `<RFC 3339 time> <stream> F <message>`.

use std::time::{SystemTime, UNIX_EPOCH};

/// One log line in the CRI format (`2026-11-25T18:00:00.000000000Z stdout F hello`),
/// with a trailing newline, for appending to [`crate::ClusterInfo::pod_log`].
pub fn cri_line(message: &str) -> String {
    format!("{} stdout F {message}\n", rfc3339_now())
}

fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn lines_are_cri_formatted() {
        let line = cri_line("hello");
        let parts: Vec<&str> = line.trim_end().splitn(4, ' ').collect();
        assert_eq!(parts[1..], ["stdout", "F", "hello"]);
        assert_eq!(parts[0].len(), "2026-11-25T18:00:00.000000000Z".len());
        assert!(line.ends_with('\n'));
    }
}
