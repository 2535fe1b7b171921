//! Turning filter arguments into a [`Region`], and parsing kinds, categories
//! and times from the command line.

use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batpak::{EntityFilter, EventKind, KindFilter, Region};

use crate::cli::FilterArgs;

impl FilterArgs {
    /// The region these arguments select, narrowed to sequences at or above
    /// `sequence_floor` (used by `tail` to look only at the end of the log).
    pub fn region(&self, sequence_floor: u64) -> Region {
        let entity = match (&self.entity, &self.prefix) {
            (Some(entity), _) => EntityFilter::Exact(entity.clone()),
            (None, Some(prefix)) => EntityFilter::Prefix(prefix.clone()),
            (None, None) => EntityFilter::Any,
        };
        let mut region = Region::all().with_entity(entity);
        if let Some(scope) = &self.scope {
            region = region.with_scope(scope.clone());
        }
        if let Some(kind) = self.kind {
            region = region.with_kind(KindFilter::Exact(kind));
        } else if let Some(category) = self.category {
            region = region.with_kind(KindFilter::Category(category));
        }
        if self.since.is_some() || self.until.is_some() {
            let start = self.since.map_or(Bound::Unbounded, Bound::Included);
            let end = self.until.map_or(Bound::Unbounded, Bound::Excluded);
            region = region.with_time_range_us((start, end));
        }
        let floor = self.from_seq.unwrap_or(0).max(sequence_floor);
        if floor > 0 || self.to_seq.is_some() {
            let end = self.to_seq.map_or(Bound::Unbounded, Bound::Included);
            region = region.with_sequence_range((Bound::Included(floor), end));
        }
        if let Some(id) = self.correlation {
            region = region.with_correlation(id);
        }
        if let Some(id) = self.causation {
            region = region.with_causation(id);
        }
        region
    }
}

/// Parses `F:001` (hex category and type), `0xF001` (hex bits) or `61441`
/// (decimal bits).
pub fn parse_kind(text: &str) -> Result<EventKind, String> {
    let text = text.trim();
    if let Some((category, type_id)) = text.split_once(':') {
        let category = u8::from_str_radix(category, 16)
            .map_err(|_| format!("category {category:?} is not a hex digit (0-F)"))?;
        let type_id = u16::from_str_radix(type_id, 16)
            .map_err(|_| format!("type {type_id:?} is not a hex number (000-FFF)"))?;
        return EventKind::try_custom(category, type_id).map_err(|e| e.to_string());
    }
    let bits = if let Some(hex) = strip_hex_prefix(text) {
        u16::from_str_radix(hex, 16)
    } else {
        text.parse::<u16>()
    };
    bits.map(EventKind::from_bits).map_err(|_| {
        format!("{text:?} is not a kind; use CATEGORY:TYPE in hex (F:001), or a 16-bit number (61441 or 0xF001)")
    })
}

/// Parses a category: decimal `0`-`15`, hex with `0x`, or one hex digit `A`-`F`.
pub fn parse_category(text: &str) -> Result<u8, String> {
    let text = text.trim();
    let value = if let Some(hex) = strip_hex_prefix(text) {
        u8::from_str_radix(hex, 16).ok()
    } else if text.len() == 1 {
        u8::from_str_radix(text, 16).ok()
    } else {
        text.parse::<u8>().ok()
    };
    match value {
        Some(category) if category <= 0xF => Ok(category),
        _ => Err(format!(
            "{text:?} is not a category; use 0-15, 0x0-0xF or a single hex digit"
        )),
    }
}

fn strip_hex_prefix(text: &str) -> Option<&str> {
    text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))
}

/// Parses a point in time into microseconds since the Unix epoch: an RFC 3339
/// timestamp, a plain integer of microseconds, or a duration ago (`10m`).
pub fn parse_time_us(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(micros) = text.parse::<i64>() {
        return Ok(micros);
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return system_time_to_us(time);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let now = SystemTime::now();
        let time = now
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} ago is before the clock can express"))?;
        return system_time_to_us(time);
    }
    Err(format!(
        "{text:?} is not a time; use RFC 3339 (2026-11-26T07:00:00Z), microseconds since the epoch, or a duration ago (10m, 2h, 1day)"
    ))
}

fn system_time_to_us(time: SystemTime) -> Result<i64, String> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => {
            i64::try_from(after.as_micros()).map_err(|_| "time is too far in the future".into())
        }
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|micros| -micros)
            .map_err(|_| "time is too far in the past".into()),
    }
}

/// Formats microseconds since the Unix epoch as RFC 3339 UTC with
/// microseconds; times before the epoch print as a raw number.
pub fn format_time_us(micros: i64) -> String {
    match u64::try_from(micros) {
        Ok(micros) => {
            let time = UNIX_EPOCH + Duration::from_micros(micros);
            humantime::format_rfc3339_micros(time).to_string()
        }
        Err(_) => format!("{micros}us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_in_every_documented_form() {
        let expected = EventKind::custom(0xF, 1);
        for text in ["F:001", "f:1", "0xF001", "61441", " F:001 "] {
            assert_eq!(parse_kind(text), Ok(expected), "{text}");
        }
        assert!(parse_kind("G:001").is_err());
        assert!(parse_kind("F:1000").is_err());
        assert!(parse_kind("10:001").is_err());
        assert!(parse_kind("70000").is_err());
        assert!(parse_kind("moved").is_err());
    }

    #[test]
    fn categories_parse_decimal_hex_and_single_digit() {
        assert_eq!(parse_category("15"), Ok(15));
        assert_eq!(parse_category("0xF"), Ok(15));
        assert_eq!(parse_category("f"), Ok(15));
        assert_eq!(parse_category("7"), Ok(7));
        assert!(parse_category("16").is_err());
        assert!(parse_category("0x10").is_err());
        assert!(parse_category("g").is_err());
    }

    #[test]
    fn times_parse_rfc3339_micros_and_durations_ago() {
        assert_eq!(
            parse_time_us("2026-01-01T00:00:00Z"),
            Ok(1_767_225_600_000_000)
        );
        assert_eq!(parse_time_us("1767225600000000"), Ok(1_767_225_600_000_000));
        let now = system_time_to_us(SystemTime::now()).unwrap();
        let ago = parse_time_us("10m").unwrap();
        assert!((now - ago - 600_000_000).abs() < 5_000_000);
        assert!(parse_time_us("yesterday-ish").is_err());
    }

    #[test]
    fn time_formats_round_trip() {
        let micros = 1_767_225_600_123_456;
        let text = format_time_us(micros);
        assert_eq!(text, "2026-01-01T00:00:00.123456Z");
        assert_eq!(parse_time_us(&text), Ok(micros));
        assert_eq!(format_time_us(-5), "-5us");
    }

    #[test]
    fn region_combines_every_filter() {
        let filter = FilterArgs {
            prefix: Some("order:".into()),
            scope: Some("shop".into()),
            category: Some(0xF),
            from_seq: Some(10),
            to_seq: Some(20),
            ..FilterArgs::default()
        };
        let region = filter.region(15);
        assert_eq!(
            region.entity_filter(),
            &EntityFilter::Prefix("order:".into())
        );
        assert_eq!(region.scope_filter(), Some("shop"));
        assert_eq!(region.kind_filter(), KindFilter::Category(0xF));
        let span = region.sequence_span().unwrap();
        assert_eq!((span.start, span.end), (15, 20));
        assert_eq!(FilterArgs::default().region(0), Region::all());
    }
}
