//! Credentials never leave the review: an endpoint given as
//! `http://admin:pw@host` is printed, stored in a snapshot and saved in a
//! plan as `http://***@host`.
//!
//! Two layers, so that forgetting one place cannot leak: [`Endpoint`] (the
//! type the command line parses endpoints into; its `Display`, `Debug` and
//! `Serialize` redact), and [`scrubbed`], which every review and every
//! snapshot passes through before anyone prints or stores it (an error
//! message quoting a URL is caught there too).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What replaces the userinfo of a URL.
pub const REDACTED: &str = "***";

/// `text` with the userinfo (`user:password@`) of every URL in it replaced
/// by `***@`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at the path, query, fragment, or anything that
        // cannot be in a URL.
        let end = after
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | '(' | ')'
                ) || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every string in a JSON value, keys included, with URLs redacted.
pub fn scrub_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains("://") => *s = redact_urls(s),
        Value::Array(a) => a.iter_mut().for_each(scrub_json),
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                scrub_json(&mut x);
                let k = if k.contains("://") {
                    redact_urls(&k)
                } else {
                    k
                };
                m.insert(k, x);
            }
        }
        _ => {}
    }
}

/// `value` with every URL in every string redacted (a serde round trip;
/// a value that contains no URL comes back equal).
pub fn scrubbed<T: Serialize + DeserializeOwned>(value: T) -> T {
    let mut v = match serde_json::to_value(&value) {
        Ok(v) => v,
        Err(_) => return value,
    };
    let before = v.clone();
    scrub_json(&mut v);
    if v == before {
        return value;
    }
    serde_json::from_value(v).unwrap_or(value)
}

/// An API endpoint from the command line or the environment. The URL with
/// its credentials is reachable only through [`Endpoint::secret_url`], for
/// the HTTP client; everything that shows or stores it gets it redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn new(url: impl Into<String>) -> Endpoint {
        Endpoint(url.into())
    }

    /// The URL as given, credentials included: only for the HTTP client.
    pub fn secret_url(&self) -> &str {
        &self.0
    }
}

impl FromStr for Endpoint {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Endpoint(s.to_string()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_urls(&self.0))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", redact_urls(&self.0))
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_urls(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_in_every_url_of_a_text() {
        assert_eq!(
            redact_urls("SAPI http://admin:pw@10.0.0.1:80/x VMAPI https://u@h, ok http://h/a@b"),
            "SAPI http://***@10.0.0.1:80/x VMAPI https://***@h, ok http://h/a@b"
        );
        assert_eq!(
            redact_urls("error sending request for url (http://a:b@h/applications)"),
            "error sending request for url (http://***@h/applications)"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(redact_urls("http://"), "http://");
    }

    #[test]
    fn an_endpoint_shows_and_serializes_redacted_but_keeps_its_url_for_the_client() {
        let e: Endpoint = "http://admin:s3cret@sapi.example".parse().unwrap();
        assert_eq!(e.to_string(), "http://***@sapi.example");
        assert!(!format!("{e:?}").contains("s3cret"));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "\"http://***@sapi.example\""
        );
        assert_eq!(e.secret_url(), "http://admin:s3cret@sapi.example");
    }

    #[test]
    fn scrubbing_reaches_nested_strings_and_leaves_the_rest_alone() {
        let v = serde_json::json!({"a": ["x http://u:p@h/y"], "b": {"c": 1, "d": "plain"}});
        let s = scrubbed(v);
        assert_eq!(
            s,
            serde_json::json!({"a": ["x http://***@h/y"], "b": {"c": 1, "d": "plain"}})
        );
    }
}
