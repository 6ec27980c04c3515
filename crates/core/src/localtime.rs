//! Provider local times (Asia/Baku, Asia/Tashkent) read into UTC, with the
//! zone database bundled into the binary so a container without tzdata reads
//! them the same way.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use crate::observation::ProviderTime;

/// Why a provider's time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time {0:?} is not in the expected format")]
    BadFormat(String),
    #[error("unknown time zone {0:?}")]
    UnknownZone(String),
}

/// The longest raw time text kept; a provider's time is a short string.
const MAX_RAW: usize = 64;

/// Reads `raw` with a `strptime`-style `format` as civil time in `zone`.
/// A time that falls into a DST gap or overlap is resolved the way RFC 5545
/// does ("compatible"); neither provider zone has DST today.
pub fn read(raw: &str, format: &str, zone: &str) -> Result<ProviderTime, TimeError> {
    let tz = TimeZone::get(zone).map_err(|_| TimeError::UnknownZone(short(zone)))?;
    read_in(raw, format, &tz).map(|utc| ProviderTime {
        utc: Some(utc),
        raw: raw.to_owned(),
        zone: zone.to_owned(),
    })
}

/// Like [`read`], but a time that cannot be read is kept as the provider
/// wrote it, with no UTC reading: an unreadable time never costs the
/// observation it came with.
pub fn read_or_keep(raw: &str, format: &str, zone: &str) -> ProviderTime {
    read(raw, format, zone).unwrap_or_else(|_| unread(raw, zone))
}

/// A provider time whose instant is not known: the raw text (cut to a
/// bounded length) and the zone it was given in.
pub fn unread(raw: &str, zone: &str) -> ProviderTime {
    ProviderTime {
        utc: None,
        raw: short(raw),
        zone: short(zone),
    }
}

/// Reads `raw` as civil time in `tz`.
pub fn read_in(raw: &str, format: &str, tz: &TimeZone) -> Result<Timestamp, TimeError> {
    let civil = DateTime::strptime(format, raw).map_err(|_| TimeError::BadFormat(short(raw)))?;
    civil
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| TimeError::BadFormat(short(raw)))
}

/// Whether `zone` is a time zone the bundled database knows (for checking
/// configuration before anything is read in it).
pub fn known_zone(zone: &str) -> bool {
    TimeZone::get(zone).is_ok()
}

/// A fixed UTC offset written `+04:00`, `+0400`, `+04` or `-03:30`.
pub fn fixed_offset(text: &str) -> Option<TimeZone> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let colons = rest.len() - digits.len();
    let valid_shape = matches!((digits.len(), colons), (2, 0) | (4, 0) | (4, 1))
        && (colons == 0 || rest.as_bytes().get(2) == Some(&b':'))
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !valid_shape {
        return None;
    }
    let hours: i32 = digits.get(..2)?.parse().ok()?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Some(0), |m| m.parse().ok())?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = sign * (hours * 3600 + minutes * 60);
    Offset::from_seconds(seconds).ok().map(TimeZone::fixed)
}

/// The zone of a PHP `DateTime` as `json_encode` writes it (Portmanat's date
/// objects): `timezone_type` 1 is an offset (`+04:00`), 2 an abbreviation
/// (`AZT`, or a numeric one such as `+04`), 3 an IANA name. Only what can be
/// read with certainty is read: an abbreviation that names different offsets
/// in different places (`IST`, `CST`) is not, and gives `None`.
pub fn php_zone(timezone_type: Option<i64>, timezone: &str) -> Option<TimeZone> {
    match timezone_type {
        Some(1) => fixed_offset(timezone),
        Some(2) => abbreviation(timezone),
        Some(3) => TimeZone::get(timezone).ok(),
        // No type, or one PHP does not write: whatever the text reads as.
        _ => TimeZone::get(timezone)
            .ok()
            .or_else(|| fixed_offset(timezone))
            .or_else(|| abbreviation(timezone)),
    }
}

/// Abbreviations that mean one offset everywhere they are used, plus PHP's
/// numeric abbreviations (`+04`).
fn abbreviation(text: &str) -> Option<TimeZone> {
    let hours = match text.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "Z" => 0,
        // Azerbaijan Time and its former summer time (tzdata names both).
        "AZT" => 4,
        "AZST" => 5,
        // Uzbekistan Time.
        "UZT" => 5,
        _ => return fixed_offset(text),
    };
    Offset::from_hours(hours).ok().map(TimeZone::fixed)
}

fn short(text: &str) -> String {
    text.chars().take(MAX_RAW).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tashkent_and_baku_are_read_into_utc() {
        let t = read("24.06.2022 07:49:16", "%d.%m.%Y %H:%M:%S", "Asia/Tashkent").unwrap();
        assert_eq!(t.utc.unwrap().to_string(), "2022-06-24T02:49:16Z");
        assert_eq!(t.raw, "24.06.2022 07:49:16");
        let t = read(
            "2016-08-22 11:37:23.000000",
            "%Y-%m-%d %H:%M:%S%.f",
            "Asia/Baku",
        )
        .unwrap();
        assert_eq!(t.utc.unwrap().to_string(), "2016-08-22T07:37:23Z");
    }

    #[test]
    fn bad_times_and_zones_are_refused() {
        assert!(matches!(
            read("2022-06-24", "%d.%m.%Y %H:%M:%S", "Asia/Tashkent"),
            Err(TimeError::BadFormat(_))
        ));
        assert!(matches!(
            read("31.02.2022 00:00:00", "%d.%m.%Y %H:%M:%S", "Asia/Tashkent"),
            Err(TimeError::BadFormat(_))
        ));
        assert!(matches!(
            read("24.06.2022 07:49:16", "%d.%m.%Y %H:%M:%S", "Mars/Olympus"),
            Err(TimeError::UnknownZone(_))
        ));
    }

    #[test]
    fn an_unreadable_time_is_kept_without_an_instant() {
        let t = read_or_keep("2022-06-24T07:49:16", "%d.%m.%Y %H:%M:%S", "Asia/Tashkent");
        assert_eq!(t.utc, None);
        assert_eq!(t.raw, "2022-06-24T07:49:16");
        assert_eq!(t.zone, "Asia/Tashkent");
        let t = read_or_keep("24.06.2022 07:49:16", "%d.%m.%Y %H:%M:%S", "Mars/Olympus");
        assert_eq!((t.utc, t.zone.as_str()), (None, "Mars/Olympus"));
        assert_eq!(unread(&"x".repeat(500), "Asia/Baku").raw.len(), MAX_RAW);
    }

    #[test]
    fn offsets_and_php_zones_are_read_where_certain() {
        let at = |tz: Option<TimeZone>| {
            tz.map(|tz| {
                read_in("2017-05-19 17:15:26.000000", "%Y-%m-%d %H:%M:%S%.f", &tz)
                    .unwrap()
                    .to_string()
            })
        };
        let baku = Some("2017-05-19T13:15:26Z".to_owned());
        assert_eq!(at(php_zone(Some(1), "+04:00")), baku);
        assert_eq!(at(php_zone(Some(1), "+0400")), baku);
        assert_eq!(
            at(php_zone(Some(1), "-03:30")),
            Some("2017-05-19T20:45:26Z".to_owned())
        );
        assert_eq!(at(php_zone(Some(2), "AZT")), baku);
        assert_eq!(at(php_zone(Some(2), "azt")), baku);
        assert_eq!(at(php_zone(Some(2), "+04")), baku);
        assert_eq!(
            at(php_zone(Some(2), "UTC")),
            Some("2017-05-19T17:15:26Z".to_owned())
        );
        assert_eq!(at(php_zone(Some(3), "Asia/Baku")), baku);
        assert_eq!(at(php_zone(None, "Asia/Baku")), baku);
        assert_eq!(at(php_zone(None, "+04:00")), baku);
        // Abbreviations that mean several offsets, and nonsense: not read.
        for (kind, text) in [
            (Some(2), "IST"),
            (Some(2), "CST"),
            (Some(1), "AZT"),
            (Some(1), "+4"),
            (Some(1), "+24:00"),
            (Some(1), "+04:60"),
            (Some(1), "+04:0"),
            (Some(1), "+0:400"),
            (Some(3), "+04:00"),
            (Some(3), "Mars/Olympus"),
            (None, ""),
        ] {
            assert!(php_zone(kind, text).is_none(), "{kind:?} {text:?}");
        }
    }
}
