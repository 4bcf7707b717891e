//! Reading `-f FILE|DIR|-`: every `.yaml`, `.yml` and `.json` file, parsed
//! with source locations and validated. A directory is one desired-state
//! set: rules across documents (one ManateeVersion per shard, unique names)
//! apply within each directory, so `examples/` can hold several scenarios.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crds::{Diagnostic, ParsedDocument, parse_documents, validate_all};

pub struct Input {
    pub documents: Vec<ParsedDocument>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
}

impl Input {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Read, parse and validate everything under `paths`.
pub fn read(paths: &[PathBuf]) -> anyhow::Result<Input> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut groups: BTreeMap<PathBuf, Vec<ParsedDocument>> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for file in &files {
        let (name, text) = if file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            ("<stdin>".to_string(), s)
        } else {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            (file.display().to_string(), text)
        };
        let (docs, diags) = parse_documents(&name, &text);
        diagnostics.extend(diags);
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        groups.entry(dir).or_default().extend(docs);
    }
    let mut documents = Vec::new();
    for (_, group) in groups {
        diagnostics.extend(validate_all(&group));
        documents.extend(group);
    }
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(Input {
        documents,
        diagnostics,
        files: files.len(),
    })
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if p.as_os_str() == "-" {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let meta =
        std::fs::metadata(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect(&e, out)?;
        } else if matches!(
            e.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(e);
        }
    }
    Ok(())
}
