//! URL-encoding written for the simulator from the documents, not borrowed:
//! form bodies and query strings in (`application/x-www-form-urlencoded`), and
//! PHP's `http_build_query` out, which is what Plutu's `hashed` is computed over.

/// Decodes `application/x-www-form-urlencoded` pairs in the order they appear.
///
/// Order matters because Plutu's signature is over the parameters in the order
/// they were sent. `+` is a space; a malformed `%` escape is kept literally (as
/// PHP and browsers do) rather than failing the whole request.
pub fn parse_pairs(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(part), String::new()),
        })
        .collect()
}

/// The first value of `key` among decoded pairs, if any.
pub fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.as_str())
}

fn decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// PHP's `urlencode`: ASCII letters, digits and `-_.` stay, a space becomes
/// `+`, every other byte becomes `%XX` with uppercase hex.
///
/// It differs from the WHATWG form encoder in `*` (PHP escapes it) and from
/// RFC 3986 in `~` and space, which is why it is written out here.
pub fn php_urlencode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &byte in input.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0x0f)] as char);
            }
        }
    }
    out
}

/// PHP's `http_build_query` over string pairs, in the given order: each key
/// and value through [`php_urlencode`], `k=v` joined by `&`.
pub fn http_build_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(&php_urlencode(key.as_ref()));
        out.push('=');
        out.push_str(&php_urlencode(value.as_ref()));
    }
    out
}

/// Appends `query` to `url`, with `?` or `&` as the URL already requires.
pub fn append_query(url: &str, query: &str) -> String {
    if query.is_empty() {
        return url.to_owned();
    }
    let separator = if url.contains('?') {
        if url.ends_with('?') || url.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{url}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_keeps_order() {
        let pairs = parse_pairs("b=2&a=x+y%26z&c&d=%zz&e=%41");
        assert_eq!(
            pairs,
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y&z".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz".into()),
                ("e".into(), "A".into()),
            ]
        );
        assert_eq!(first(&pairs, "a"), Some("x y&z"));
        assert_eq!(first(&pairs, "missing"), None);
    }

    #[test]
    fn a_trailing_percent_is_literal() {
        assert_eq!(parse_pairs("a=5%"), vec![("a".into(), "5%".into())]);
        assert_eq!(parse_pairs("a=5%4"), vec![("a".into(), "5%4".into())]);
    }

    #[test]
    fn php_urlencode_matches_php() {
        // Expected values are what PHP 8's urlencode() returns.
        assert_eq!(php_urlencode("a b"), "a+b");
        assert_eq!(php_urlencode("A-z_0.9"), "A-z_0.9");
        assert_eq!(php_urlencode("*~"), "%2A%7E");
        assert_eq!(
            php_urlencode("http://x/?q=1&r"),
            "http%3A%2F%2Fx%2F%3Fq%3D1%26r"
        );
        assert_eq!(php_urlencode("é"), "%C3%A9");
    }

    #[test]
    fn builds_query_in_order() {
        assert_eq!(http_build_query(&[("b", "1 2"), ("a", "x")]), "b=1+2&a=x");
    }

    #[test]
    fn appends_query() {
        assert_eq!(append_query("http://h/p", "a=1"), "http://h/p?a=1");
        assert_eq!(append_query("http://h/p?x=1", "a=1"), "http://h/p?x=1&a=1");
        assert_eq!(append_query("http://h/p?", "a=1"), "http://h/p?a=1");
        assert_eq!(append_query("http://h/p", ""), "http://h/p");
    }
}
