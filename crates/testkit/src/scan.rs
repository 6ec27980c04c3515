//! Finding what must never be logged: known secrets and card tokens,
//! Authorization header values, and full card numbers.
//!
//! The card-number check is written here again rather than borrowed from
//! `paysettle-core::redact`, so a mistake in the product's detector cannot
//! hide the very numbers it failed to mask.

use std::fmt;

/// One thing found, located by line. The excerpt has the match replaced, so
/// a failing test's message does not spread the secret further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of thing: the kind given with a needle, or
    /// `authorization_header`, `card_number`.
    pub kind: String,
    /// 1-based line number in the scanned text.
    pub line: usize,
    /// The line around the match, the match itself replaced by `<…>`.
    pub excerpt: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.kind, self.excerpt)
    }
}

/// Scans text for secrets. Known values are added as needles; Authorization
/// header values and card numbers are found by their shape.
#[derive(Debug, Clone, Default)]
pub struct SecretScanner {
    needles: Vec<(String, String)>,
}

impl SecretScanner {
    /// A scanner that knows no secret yet, only the shapes.
    pub fn new() -> SecretScanner {
        SecretScanner::default()
    }

    /// Adds a value that must never appear, e.g. (`"paysys_secret"`, the key).
    /// Empty values are ignored: they would match everything.
    #[must_use]
    pub fn needle(mut self, kind: impl Into<String>, value: impl Into<String>) -> SecretScanner {
        self.add(kind, value);
        self
    }

    /// [`SecretScanner::needle`] in place.
    pub fn add(&mut self, kind: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.needles.push((kind.into(), value));
        }
    }

    /// Every finding in `text`.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let mut found = |kind: &str, start: usize, end: usize| {
                findings.push(Finding {
                    kind: kind.to_owned(),
                    line: index + 1,
                    excerpt: excerpt(line, start, end),
                });
            };
            for (kind, value) in &self.needles {
                if let Some(start) = line.find(value.as_str()) {
                    found(kind, start, start + value.len());
                }
            }
            if let Some((start, end)) = authorization_value(line) {
                found("authorization_header", start, end);
            }
            if let Some((start, end)) = card_number(line) {
                found("card_number", start, end);
            }
        }
        findings
    }
}

/// `Basic <base64>` or `Bearer <token>` (any case), with at least eight
/// characters of credential: what an Authorization header's value looks like.
fn authorization_value(line: &str) -> Option<(usize, usize)> {
    let lower = line.to_ascii_lowercase();
    for scheme in ["basic ", "bearer "] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(scheme) {
            let start = from + at;
            let value_start = start + scheme.len();
            let value_len = line[value_start..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"+/=-._~".contains(b))
                .count();
            if value_len >= 8 {
                return Some((start, value_start + value_len));
            }
            from = value_start;
        }
    }
    None
}

/// A run of 13 to 19 digits, optionally grouped by single spaces or dashes,
/// standing alone as a word (not inside a hex id such as a uuid, where a
/// digit run can pass the Luhn check by chance), that passes the Luhn check.
fn card_number(line: &str) -> Option<(usize, usize)> {
    let bytes = line.as_bytes();
    let word = |at: Option<&u8>| at.is_some_and(u8::is_ascii_alphanumeric);
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && word(bytes.get(i - 1))) {
            i += 1;
            continue;
        }
        // Every digit sequence starting here, separators allowed between digits.
        let mut digits = String::new();
        let mut j = i;
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                digits.push(char::from(bytes[j]));
                j += 1;
                if (13..=19).contains(&digits.len()) && !word(bytes.get(j)) && luhn(&digits) {
                    return Some((i, j));
                }
            } else if matches!(bytes[j], b' ' | b'-')
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
                && j > i
            {
                j += 1;
            } else {
                break;
            }
            if digits.len() > 19 {
                break;
            }
        }
        i += 1;
    }
    None
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn excerpt(line: &str, start: usize, end: usize) -> String {
    let floor = |mut i: usize| {
        while !line.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let before = floor(start.saturating_sub(60));
    let after = floor((end + 60).min(line.len()));
    format!("{}<…>{}", &line[before..start], &line[end..after])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_are_found_and_not_repeated_in_the_excerpt() {
        let scanner = SecretScanner::new().needle("paysys_secret", "demo-vendor-secret");
        let findings = scanner.scan("ok\n{\"msg\":\"key demo-vendor-secret leaked\"}\n");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, "paysys_secret");
        assert_eq!(findings[0].line, 2);
        assert!(!findings[0].excerpt.contains("demo-vendor-secret"));
        assert!(scanner.scan("demo-vendor secret").is_empty());
    }

    #[test]
    fn authorization_values_are_found_by_shape() {
        let scanner = SecretScanner::new();
        assert_eq!(
            scanner.scan("authorization: Basic ZGVtbzpkZW1v")[0].kind,
            "authorization_header"
        );
        assert_eq!(
            scanner.scan("BEARER abcdefgh12345")[0].kind,
            "authorization_header"
        );
        assert!(
            scanner
                .scan("basic auth failed: wrong_credentials")
                .is_empty()
        );
        assert!(scanner.scan("scheme basic ok").is_empty());
    }

    #[test]
    fn card_numbers_are_found_plain_or_grouped_but_not_ids() {
        let scanner = SecretScanner::new();
        for line in [
            "pan=4111111111111111&x=1",
            "card 4111 1111 1111 1111 used",
            "card 4111-1111-1111-1111",
            "\"n\":5555555555554444}",
        ] {
            let found = scanner.scan(line);
            assert_eq!(found.len(), 1, "{line}");
            assert_eq!(found[0].kind, "card_number");
            assert!(!found[0].excerpt.contains("1111 1111"));
        }
        for line in [
            "411111******1111",
            "4111111111111112",
            "order 1471855074",
            "2026-05-01T10:00:00.123456Z",
            "id 0196a7b2-0c4e-7c3a-9f2e-5b8d7c6e4f3a",
            "41111111111111111111111",
            "pstest-4111111111111111abc.callbacks",
            "id a4111111111111111",
        ] {
            assert!(scanner.scan(line).is_empty(), "{line}");
        }
    }
}
