//! Server timestamps (UTC milliseconds) as local wall-clock time for the terminal UI.
//!
//! Each timestamp is converted with the UTC offset in force *at that instant* in the user's time
//! zone, not with the offset of the moment `mm` started: a line from July shows summer time and
//! one from January winter time, and a UI left running across a daylight-saving change keeps
//! showing the right hour. The zone (with all its rules) comes from `jiff`, which reads `TZ`
//! (`America/New_York`, a POSIX rule such as `EST5EDT,M3.2.0,M11.1.0`, or a file path) and
//! otherwise `/etc/localtime`, using the system's time zone database; where a system has none
//! (a minimal container without tzdata), the copy of the database built into `mm` is used.
//!
//! A zone that cannot be found (`TZ=Mars/Olympus`) is UTC, as the C library treats it; the UI
//! says so once at start.

use std::sync::OnceLock;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The user's time zone, read once.
static ZONE: OnceLock<TimeZone> = OnceLock::new();

/// UTC, for before [`init`].
static UTC: TimeZone = TimeZone::UTC;

/// Reads the user's time zone (from `TZ`, else the system's setting) for [`zone`]. Returns a
/// note for the user when `TZ` names no zone `mm` can find and times are shown in UTC instead.
pub fn init() -> Option<String> {
    let (zone, note) = system_zone();
    let _ = ZONE.set(zone);
    note
}

/// The user's time zone: the one [`init`] read, or UTC before that.
pub fn zone() -> &'static TimeZone {
    ZONE.get().unwrap_or(&UTC)
}

/// The system's zone, else UTC with a note saying why (only when `TZ` is set: a system with no
/// zone configured at all is UTC, and says nothing, like every other program on it).
fn system_zone() -> (TimeZone, Option<String>) {
    let usable = std::env::var_os("TZ").is_none_or(|tz| tz_file_is_usable(&tz));
    match TimeZone::try_system().ok().filter(|_| usable).ok_or(()) {
        Ok(zone) => (zone, None),
        // jiff's error says which lookups it tried, in a programmer's words: not for users.
        Err(_) => {
            let note = std::env::var_os("TZ").map(|tz| {
                format!(
                    "TZ={} is not a time zone mm can find (a name like Europe/Paris or \
                     America/New_York, from the system's time zone database); times are shown in UTC",
                    shown_tz(&tz.to_string_lossy())
                )
            });
            (TimeZone::UTC, note)
        }
    }
}

/// Whether `TZ` may be handed to jiff: a value naming a file that exists (`:/etc/localtime`,
/// `/usr/share/zoneinfo/Europe/Paris`, or a relative path) must be a regular file of at most
/// 1 MiB (a zone file is a few KiB). jiff would read `/dev/zero` or a FIFO without end.
fn tz_file_is_usable(tz: &std::ffi::OsStr) -> bool {
    let bytes = tz.as_encoded_bytes();
    let path = std::path::Path::new(std::ffi::OsStr::new(
        std::str::from_utf8(bytes.strip_prefix(b":").unwrap_or(bytes)).unwrap_or(""),
    ));
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.len() <= 1024 * 1024,
        // Not a file: a zone name (`Europe/Paris`) or a POSIX rule, for jiff to look up.
        Err(_) => true,
    }
}

/// `TZ` as it can be shown: forbidden characters replaced, at most 64 characters.
fn shown_tz(tz: &str) -> String {
    let clean = mm_common::text::sanitize(tz);
    match clean.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &clean[..at]),
        None => clean.into_owned(),
    }
}

/// The wall-clock time of `ts_ms` in `zone`, if the timestamp is one `jiff` can represent.
fn civil(ts_ms: u64, zone: &TimeZone) -> Option<jiff::civil::DateTime> {
    let ms = i64::try_from(ts_ms).ok()?;
    let at = Timestamp::from_millisecond(ms).ok()?;
    Some(zone.to_datetime(at))
}

/// `HH:MM` of a server timestamp in `zone`, with the offset in force at that instant; `??:??`
/// for a timestamp out of range.
pub fn format_time(ts_ms: u64, zone: &TimeZone) -> String {
    match civil(ts_ms, zone) {
        Some(t) => format!("{:02}:{:02}", t.hour(), t.minute()),
        None => "??:??".into(),
    }
}

/// `MM-DD HH:MM` of a server timestamp in `zone` (for lines from the past), with the offset in
/// force at that instant, and `YYYY-MM-DD HH:MM` when it is not from this year (a line from
/// last November looked like today's); `??-?? ??:??` for a timestamp out of range.
pub fn format_date_time(ts_ms: u64, zone: &TimeZone) -> String {
    let now = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);
    format_date_time_at(ts_ms, zone, now)
}

/// [`format_date_time`] as seen at `now_ms`.
fn format_date_time_at(ts_ms: u64, zone: &TimeZone, now_ms: u64) -> String {
    match civil(ts_ms, zone) {
        Some(t) => {
            let this_year = civil(now_ms, zone).is_some_and(|now| now.year() == t.year());
            let year = if this_year {
                String::new()
            } else {
                format!("{:04}-", t.year())
            };
            format!(
                "{year}{:02}-{:02} {:02}:{:02}",
                t.month(),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        None => "??-?? ??:??".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-06-01 00:00 UTC: "now" for lines from 2025 (no year shown).
    const MID_2025: u64 = 1_748_736_000_000;

    /// Milliseconds since the epoch of a UTC date and time.
    fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> u64 {
        let t = jiff::civil::date(y, m, d)
            .at(h, min, 0, 0)
            .to_zoned_datetime(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_millisecond();
        u64::try_from(t).unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn each_timestamp_takes_the_offset_in_force_at_that_instant() {
        let ny = zone("America/New_York");
        // Summer (EDT, UTC-4) and winter (EST, UTC-5), whatever the date today.
        assert_eq!(format_time(utc(2025, 7, 1, 12, 0), &ny), "08:00");
        assert_eq!(format_time(utc(2025, 1, 1, 12, 0), &ny), "07:00");
        assert_eq!(
            format_date_time_at(utc(2025, 7, 1, 12, 0), &ny, MID_2025),
            "07-01 08:00"
        );
        assert_eq!(
            format_date_time_at(utc(2025, 1, 1, 12, 0), &ny, MID_2025),
            "01-01 07:00"
        );
        // Across the change itself (2025-03-09 02:00 EST -> 03:00 EDT, 07:00 UTC): one minute
        // before and at the change.
        assert_eq!(format_time(utc(2025, 3, 9, 6, 59), &ny), "01:59");
        assert_eq!(format_time(utc(2025, 3, 9, 7, 0), &ny), "03:00");
        // The southern hemisphere has its summer in January.
        let sydney = zone("Australia/Sydney");
        assert_eq!(format_time(utc(2025, 1, 1, 12, 0), &sydney), "23:00");
        assert_eq!(format_time(utc(2025, 7, 1, 12, 0), &sydney), "22:00");
        // A date that the offset moves to the next day.
        assert_eq!(
            format_date_time_at(utc(2025, 12, 31, 20, 30), &sydney, MID_2025),
            "2026-01-01 07:30"
        );
    }

    #[test]
    fn utc_and_posix_rules_work_too() {
        let t = utc(2025, 7, 1, 12, 5);
        assert_eq!(
            format_date_time_at(t, &TimeZone::UTC, MID_2025),
            "07-01 12:05"
        );
        // What TZ=EST5EDT,M3.2.0,M11.1.0 means, without any database.
        let rule = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(format_time(t, &rule), "08:05");
        assert_eq!(format_time(utc(2025, 1, 1, 12, 5), &rule), "07:05");
    }

    #[test]
    fn timestamps_out_of_range_do_not_panic() {
        assert_eq!(format_time(u64::MAX, &TimeZone::UTC), "??:??");
        assert_eq!(format_date_time(u64::MAX, &TimeZone::UTC), "??-?? ??:??");
        assert_eq!(format_date_time(0, &TimeZone::UTC), "1970-01-01 00:00");
    }

    #[test]
    fn a_hostile_tz_is_shown_short_and_clean() {
        assert_eq!(shown_tz("Nowhere/Place"), "Nowhere/Place");
        assert_eq!(shown_tz("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
        let long = shown_tz(&"x".repeat(5000));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }

    /// `TZ=/dev/zero` made mm read without end (gigabytes in seconds).
    #[test]
    fn a_tz_naming_a_device_a_directory_or_a_huge_file_is_not_read() {
        use std::ffi::OsStr;
        assert!(!tz_file_is_usable(OsStr::new("/dev/zero")));
        assert!(!tz_file_is_usable(OsStr::new(":/dev/urandom")));
        assert!(!tz_file_is_usable(OsStr::new("/")));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 1024 * 1024 + 1]).unwrap();
        assert!(!tz_file_is_usable(big.as_os_str()));
        let small = dir.path().join("zone");
        std::fs::write(&small, b"TZif").unwrap();
        assert!(tz_file_is_usable(small.as_os_str()));
        assert!(tz_file_is_usable(OsStr::new("Europe/Paris")));
        assert!(tz_file_is_usable(OsStr::new("EST5EDT,M3.2.0,M11.1.0")));
    }

    /// A line from another year shows its year (2024-11-30 looked like today, 11-30).
    #[test]
    fn lines_from_another_year_show_it() {
        let utc = TimeZone::UTC;
        // 2026-11-30 12:00 UTC and 2024-11-30 11:00 UTC, in milliseconds.
        let now = 1_796_040_000_000;
        assert_eq!(format_date_time_at(now, &utc, now), "11-30 12:00");
        assert_eq!(
            format_date_time_at(1_732_964_400_000, &utc, now),
            "2024-11-30 11:00"
        );
    }
}
