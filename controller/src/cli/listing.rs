//! Every listing (`get`, `get leader`, `events`) takes the same output
//! options, the habits of sdcadm and manta-adm and of kubectl:
//!
//! - `-H` leaves the header out; `-o COL,COL` chooses the columns (any case;
//!   an unknown one is an error naming the valid ones);
//! - `-j` (or `-o json`) prints JSON, `-o yaml` YAML;
//! - `-o name` prints `kind/name`, one a line;
//! - `-o jsonpath=EXPR` prints what an RFC 9535 JSONPath query selects from
//!   the JSON output, kubectl's `{.items[*].metadata.name}` spelling
//!   included (one expression, no literal text around it).

use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::NOTHING};
use serde_json::Value;

use super::Failure;

#[derive(Args, Debug, Clone)]
pub struct ListingArgs {
    /// table, wide, yaml, json, name, jsonpath=EXPR, or columns COL,COL (any case).
    #[arg(
        short = 'o',
        long,
        value_name = "FORMAT",
        default_value = "table",
        value_parser = parse_output
    )]
    pub output: Output,
    /// Leave out the header line.
    #[arg(short = 'H', long = "no-headers")]
    pub no_headers: bool,
    /// JSON (same as `-o json`).
    #[arg(short = 'j', long = "json", conflicts_with = "output")]
    pub json: bool,
}

impl ListingArgs {
    pub fn format(&self) -> Output {
        if self.json {
            Output::Json
        } else {
            self.output.clone()
        }
    }
}

/// How a listing is printed.
#[derive(Clone, Debug)]
pub enum Output {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    JsonPath(JsonPathExpr),
    Columns(Vec<String>),
}

impl Output {
    /// Printed as rows of a table (the table, wide, or chosen columns).
    pub fn is_rows(&self) -> bool {
        matches!(self, Output::Table | Output::Wide | Output::Columns(_))
    }
}

/// A compiled JSONPath query and its text.
#[derive(Clone, Debug)]
pub struct JsonPathExpr {
    pub text: String,
    path: serde_json_path::JsonPath,
}

impl JsonPathExpr {
    pub fn parse(text: &str) -> Result<JsonPathExpr, String> {
        // kubectl writes `{.items[0].metadata.name}`; RFC 9535 `$.items[0]...`.
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text)
            .trim();
        let rfc = if inner.starts_with('$') {
            inner.to_string()
        } else if inner.starts_with('.') || inner.starts_with('[') {
            format!("${inner}")
        } else {
            format!("$.{inner}")
        };
        let path = serde_json_path::JsonPath::parse(&rfc)
            .map_err(|e| format!("jsonpath `{text}`: {e}"))?;
        Ok(JsonPathExpr {
            text: text.to_string(),
            path,
        })
    }

    /// Strings as they are, anything else as compact JSON; separated by spaces.
    pub fn render(&self, value: &Value) -> String {
        let found: Vec<String> = self
            .path
            .query(value)
            .all()
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        found.join(" ") + "\n"
    }
}

pub fn parse_output(s: &str) -> Result<Output, String> {
    if let Some(expr) = s.strip_prefix("jsonpath=") {
        return JsonPathExpr::parse(expr).map(Output::JsonPath);
    }
    Ok(match s.to_ascii_lowercase().as_str() {
        "table" => Output::Table,
        "wide" => Output::Wide,
        "yaml" => Output::Yaml,
        "json" => Output::Json,
        "name" => Output::Name,
        "" => return Err("empty output format".into()),
        _ => {
            let cols: Vec<String> = s
                .split(',')
                .map(|c| c.trim().to_ascii_uppercase())
                .filter(|c| !c.is_empty())
                .collect();
            if cols.is_empty() {
                return Err(format!("`{s}`: no column named"));
            }
            Output::Columns(cols)
        }
    })
}

/// What a listing shows, before it is printed in one format or another.
pub struct Listing {
    /// Every column this listing has, upper case.
    pub columns: &'static [&'static str],
    /// How many of them the plain table shows (the rest are `-o wide`'s).
    pub narrow: usize,
    /// One row per item, one cell per column.
    pub rows: Vec<Vec<String>>,
    /// `kind/name` per item, for `-o name`.
    pub names: Vec<String>,
    /// What `-o json`, `-o yaml` and `-o jsonpath=` print.
    pub value: Value,
}

/// The indices of the columns to print.
pub fn columns(all: &[&str], narrow: usize, format: &Output) -> Result<Vec<usize>, Failure> {
    match format {
        Output::Wide => Ok((0..all.len()).collect()),
        Output::Columns(wanted) => wanted
            .iter()
            .map(|w| {
                all.iter().position(|c| c == w).ok_or_else(|| {
                    Failure::invalid(format!(
                        "unknown column `{w}`; the columns are {}",
                        all.join(", ")
                    ))
                })
            })
            .collect(),
        _ => Ok((0..narrow.min(all.len())).collect()),
    }
}

/// A table without borders, trailing blanks trimmed.
pub fn table(header: Option<Vec<String>>, rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    let empty = rows.is_empty();
    if let Some(h) = header {
        t.set_header(h);
    }
    for r in rows {
        t.add_row(r);
    }
    if empty && t.header().is_none() {
        return String::new();
    }
    trim_lines(&t.to_string())
}

pub fn trim_lines(s: &str) -> String {
    let mut out: String = s
        .lines()
        .map(|l| l.trim_end())
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

/// Print a listing in the chosen format.
pub fn render(l: &Listing, format: &Output, no_headers: bool) -> Result<String, Failure> {
    Ok(match format {
        Output::Json => serde_json::to_string_pretty(&l.value).expect("JSON values print") + "\n",
        Output::Yaml => to_yaml(&l.value),
        Output::JsonPath(p) => p.render(&l.value),
        Output::Name => l.names.iter().map(|n| format!("{n}\n")).collect(),
        Output::Table | Output::Wide | Output::Columns(_) => {
            let idx = columns(l.columns, l.narrow, format)?;
            let header =
                (!no_headers).then(|| idx.iter().map(|&i| l.columns[i].to_string()).collect());
            let rows = l
                .rows
                .iter()
                .map(|r| {
                    idx.iter()
                        .map(|&i| r.get(i).cloned().unwrap_or_default())
                        .collect()
                })
                .collect();
            table(header, rows)
        }
    })
}

/// One row at a time (watches), cells padded to fixed widths so that rows
/// printed apart still line up; the last cell is not padded.
pub fn fixed_row(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            out += c;
        } else {
            let w = widths.get(i).copied().unwrap_or(12);
            out += &format!("{c:<w$}   ");
        }
    }
    out.trim_end().to_string()
}

/// The cells of `row` at `idx`.
pub fn pick(row: &[String], idx: &[usize]) -> Vec<String> {
    idx.iter()
        .map(|&i| row.get(i).cloned().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Listing {
        Listing {
            columns: &["NAME", "READY", "SPEC"],
            narrow: 2,
            rows: vec![vec!["sdc".into(), "True".into(), "3 shards".into()]],
            names: vec!["manateeversion/sdc".into()],
            value: serde_json::json!({"kind": "List", "items": [{"metadata": {"name": "sdc"}}]}),
        }
    }

    #[test]
    fn formats_columns_headers_names_and_jsonpath() {
        let l = listing();
        assert_eq!(
            render(&l, &Output::Table, false).unwrap(),
            "NAME  READY\nsdc   True\n"
        );
        assert_eq!(render(&l, &Output::Table, true).unwrap(), "sdc  True\n");
        let o = parse_output("spec,Name").unwrap();
        assert_eq!(render(&l, &o, true).unwrap(), "3 shards  sdc\n");
        let e = render(&l, &parse_output("name,nope").unwrap(), false).unwrap_err();
        assert_eq!(e.code, super::super::EXIT_INVALID);
        assert!(e.message.contains("NAME, READY, SPEC"), "{}", e.message);
        assert_eq!(
            render(&l, &Output::Name, false).unwrap(),
            "manateeversion/sdc\n"
        );
        for expr in [
            "{.items[*].metadata.name}",
            "$.items[0].metadata.name",
            ".items[0].metadata.name",
        ] {
            let o = parse_output(&format!("jsonpath={expr}")).unwrap();
            assert_eq!(render(&l, &o, false).unwrap(), "sdc\n", "{expr}");
        }
        assert!(parse_output("jsonpath={.items[}").is_err());
        assert!(matches!(parse_output("WIDE").unwrap(), Output::Wide));
    }
}
