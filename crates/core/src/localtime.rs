//! Provider local times (Asia/Baku, Asia/Tashkent) read into UTC, with the
//! zone database bundled into the binary so a container without tzdata reads
//! them the same way.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::observation::ProviderTime;

/// Why a provider's time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time {0:?} is not in the expected format")]
    BadFormat(String),
    #[error("unknown time zone {0:?}")]
    UnknownZone(String),
}

/// Reads `raw` with a `strptime`-style `format` as civil time in `zone`.
/// A time that falls into a DST gap or overlap is resolved the way RFC 5545
/// does ("compatible"); neither provider zone has DST today.
pub fn read(raw: &str, format: &str, zone: &str) -> Result<ProviderTime, TimeError> {
    let short = || raw.chars().take(40).collect::<String>();
    let tz =
        TimeZone::get(zone).map_err(|_| TimeError::UnknownZone(zone.chars().take(40).collect()))?;
    let civil = DateTime::strptime(format, raw).map_err(|_| TimeError::BadFormat(short()))?;
    let zoned = civil
        .to_zoned(tz)
        .map_err(|_| TimeError::BadFormat(short()))?;
    Ok(ProviderTime {
        utc: zoned.timestamp(),
        raw: raw.to_owned(),
        zone: zone.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tashkent_and_baku_are_read_into_utc() {
        let t = read("24.06.2022 07:49:16", "%d.%m.%Y %H:%M:%S", "Asia/Tashkent").unwrap();
        assert_eq!(t.utc.to_string(), "2022-06-24T02:49:16Z");
        assert_eq!(t.raw, "24.06.2022 07:49:16");
        let t = read(
            "2016-08-22 11:37:23.000000",
            "%Y-%m-%d %H:%M:%S%.f",
            "Asia/Baku",
        )
        .unwrap();
        assert_eq!(t.utc.to_string(), "2016-08-22T07:37:23Z");
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
}
