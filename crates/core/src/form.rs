//! Query strings and form bodies, read strictly, and PHP's `urlencode`.
//!
//! Strict because a signature is checked over what these return: a byte that
//! is not valid percent-encoding or not UTF-8 is an error, never replaced with
//! something that might verify.

use std::fmt::Write as _;

/// Why a query string or form body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("bad percent-encoding in parameter {0}")]
    BadPercent(usize),
    #[error("parameter {0} is not valid UTF-8")]
    NotUtf8(usize),
    #[error("more than {0} parameters")]
    TooMany(usize),
}

/// The most parameters a callback may carry. The providers send under ten.
pub const MAX_PARAMS: usize = 64;

/// Splits `a=1&b=2` into ordered pairs, decoding `%XX` and `+`. Empty segments
/// (`a=1&&b=2`) are skipped; a segment without `=` is a key with an empty value.
pub fn parse_pairs(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::new();
    for (index, segment) in input
        .split(|b| *b == b'&')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        if pairs.len() == MAX_PARAMS {
            return Err(FormError::TooMany(MAX_PARAMS));
        }
        let (key, value) = match segment.iter().position(|b| *b == b'=') {
            Some(at) => (&segment[..at], &segment[at + 1..]),
            None => (segment, &[][..]),
        };
        pairs.push((decode(key, index, true)?, decode(value, index, true)?));
    }
    Ok(pairs)
}

/// One segment of a URL path, percent-decoded (RFC 3986: `+` is a plus
/// here, not a space). Refused like a form: bad percent-encoding, or bytes
/// that are not UTF-8.
pub fn decode_path_segment(segment: &str) -> Result<String, FormError> {
    decode(segment.as_bytes(), 0, false)
}

fn decode(bytes: &[u8], index: usize, plus_is_space: bool) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(FormError::BadPercent(index))?;
                let high = hex_value(hex[0]).ok_or(FormError::BadPercent(index))?;
                let low = hex_value(hex[1]).ok_or(FormError::BadPercent(index))?;
                out.push(high << 4 | low);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8(index))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// PHP's `urlencode`, which `http_build_query` applies to keys and values:
/// letters, digits and `-_.` stay, a space becomes `+`, every other byte
/// becomes `%XX` in uppercase hex (`~` included, unlike RFC 3986).
pub fn php_urlencode(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
}

/// `http_build_query` over ordered pairs: `k=v` joined by `&`.
pub fn php_build_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        php_urlencode(key, &mut out);
        out.push('=');
        php_urlencode(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairs_keep_their_order_and_decode() {
        let pairs = parse_pairs(b"b=2&a=x+y%2Bz&&empty=&flag").unwrap();
        let expect = [("b", "2"), ("a", "x y+z"), ("empty", ""), ("flag", "")];
        assert_eq!(
            pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            expect
        );
    }

    #[test]
    fn bad_input_is_refused_not_replaced() {
        assert_eq!(parse_pairs(b"a=%ZZ"), Err(FormError::BadPercent(0)));
        assert_eq!(parse_pairs(b"a=1&b=%4"), Err(FormError::BadPercent(1)));
        assert_eq!(parse_pairs(b"a=%FF"), Err(FormError::NotUtf8(0)));
        assert_eq!(parse_pairs(b"a=\xff"), Err(FormError::NotUtf8(0)));
        let many = (0..65)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            parse_pairs(many.as_bytes()),
            Err(FormError::TooMany(MAX_PARAMS))
        );
    }

    #[test]
    fn php_encoding_matches_php() {
        // Values checked against PHP 8's urlencode.
        let mut out = String::new();
        php_urlencode("a b~c*d@e.f-g_h/é", &mut out);
        assert_eq!(out, "a+b%7Ec%2Ad%40e.f-g_h%2F%C3%A9");
        assert_eq!(
            php_build_query([("amount", "12.50"), ("currency", "USD")]),
            "amount=12.50&currency=USD"
        );
    }

    #[test]
    fn path_segments_decode_percent_but_keep_plus() {
        assert_eq!(
            decode_path_segment("A%2FB+C%3D%20%C3%BC").unwrap(),
            "A/B+C= ü"
        );
        assert_eq!(decode_path_segment("ORDER-42").unwrap(), "ORDER-42");
        assert_eq!(decode_path_segment("%zz"), Err(FormError::BadPercent(0)));
        assert_eq!(decode_path_segment("%FF"), Err(FormError::NotUtf8(0)));
    }

    proptest! {
        #[test]
        fn encoding_then_parsing_gives_back_the_pairs(pairs in prop::collection::vec(("\\PC{1,8}", "\\PC{0,8}"), 0..8)) {
            let query = php_build_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(parse_pairs(query.as_bytes()).unwrap(), pairs);
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_pairs(&bytes);
        }
    }
}
