//! HTML building blocks: escaping, the page shell (skip link, navigation,
//! main landmark), badges. Every text that came from the store or the
//! datacenter goes through [`esc`].

use std::fmt::Write as _;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a path segment (names are path-safe already; this is
/// defence in depth).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The navigation, with the current page marked for screen readers.
const NAV: [(&str, &str); 4] = [
    ("/", "Overview"),
    ("/topology", "Shard topology"),
    ("/headnodes", "Headnodes"),
    ("/plan", "Plan"),
];

/// A whole page: `current` is the nav entry's path.
pub fn page(title: &str, current: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let cur = if href == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{href}\"{cur}>{label}</a></li>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · tritonctl</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
<body><a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><p class=\"brand\">tritonctl</p><nav aria-label=\"Main\"><ul>{nav}</ul></nav></header>\
<main id=\"main\" tabindex=\"-1\"><h1>{t}</h1>{body}</main>\
<script src=\"/static/live.js\"></script></body></html>\n",
        t = esc(title)
    )
}

/// A condition or state as a badge whose colour is never the only cue
/// (the word is always there).
pub fn badge(word: &str) -> String {
    let class = match word {
        "Succeeded" | "True" | "in sync" | "running" | "Ready" | "primary" => "ok",
        "Running" | "Waiting" | "Pending" | "Progressing" | "sync" | "async" => "busy",
        "Failed" | "Blocked" | "Degraded" | "RolledBack" | "Cancelled" | "deposed" => "bad",
        _ => "plain",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(word))
}

/// A link to a document's page.
pub fn doc_link(kind: &str, name: &str) -> String {
    format!(
        "<a href=\"/doc/{}/{}\">{}/{}</a>",
        seg(kind),
        seg(name),
        esc(kind),
        esc(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_store_cannot_inject_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        let p = page("<T>", "/", "body");
        assert!(p.contains("<title>&lt;T&gt; · tritonctl</title>"));
        assert!(p.contains("<a href=\"/\" aria-current=\"page\">Overview</a>"));
        assert!(p.contains("<main id=\"main\""));
    }
}
