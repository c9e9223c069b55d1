//! The name/value lists HAR derives from a message: cookies from `Cookie` and
//! `Set-Cookie`, the query string from the URL; and the ISO-8601 start time.

use serde_json::{json, Map, Value};

/// `Cookie: a=1; b=2` headers as HAR cookies.
pub fn request_cookies(headers: &[(String, String)]) -> Vec<Value> {
    named(headers, "cookie")
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some(json!({ "name": name.trim(), "value": value.trim() }))
        })
        .collect()
}

/// `Set-Cookie` headers as HAR cookies, with their path, domain and flags. `Expires` is
/// left out: HAR wants ISO-8601 there, and the header has an HTTP date.
pub fn response_cookies(headers: &[(String, String)]) -> Vec<Value> {
    named(headers, "set-cookie")
        .filter_map(|v| {
            let mut parts = v.split(';');
            let (name, value) = parts.next()?.trim().split_once('=')?;
            let mut cookie = Map::new();
            cookie.insert("name".into(), name.trim().into());
            cookie.insert("value".into(), value.trim().into());
            for attr in parts {
                let (key, val) = attr.trim().split_once('=').unwrap_or((attr.trim(), ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" => cookie.insert("path".into(), val.into()),
                    "domain" => cookie.insert("domain".into(), val.into()),
                    "httponly" => cookie.insert("httpOnly".into(), true.into()),
                    "secure" => cookie.insert("secure".into(), true.into()),
                    _ => None,
                };
            }
            Some(Value::Object(cookie))
        })
        .collect()
}

/// The query of a URL as decoded HAR name/value pairs.
pub fn query_string(url: &str) -> Vec<Value> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({ "name": percent_decode(name), "value": percent_decode(value) })
        })
        .collect()
}

/// Milliseconds since the Unix epoch as `2024-05-01T12:00:00.123Z`.
pub fn iso8601(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn named<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `%41+b` as `A b`; a malformed escape is kept as written, bytes made text lossily.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cookies_both_ways() {
        let req = h(&[("Cookie", "a=1; b = two"), ("cookie", "c=")]);
        assert_eq!(
            Value::Array(request_cookies(&req)),
            json!([{"name":"a","value":"1"},{"name":"b","value":"two"},{"name":"c","value":""}])
        );
        let resp = h(&[(
            "set-cookie",
            "sid=xyz; Path=/; Domain=a.test; Expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; Secure",
        )]);
        assert_eq!(
            Value::Array(response_cookies(&resp)),
            json!([{"name":"sid","value":"xyz","path":"/","domain":"a.test","httpOnly":true,"secure":true}])
        );
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            Value::Array(query_string("http://a.test/p?q=a+b%21&flag&x=%zz#frag")),
            json!([{"name":"q","value":"a b!"},{"name":"flag","value":""},{"name":"x","value":"%zz"}])
        );
        assert!(query_string("http://a.test/p").is_empty());
    }

    #[test]
    fn start_times_are_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
    }
}
