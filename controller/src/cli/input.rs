//! Reading `-f FILE|DIR|-`: every `.yaml`, `.yml` and `.json` file, parsed
//! with source locations and validated. A directory is one desired-state
//! set: rules across documents (one ManateeVersion per shard, one
//! HeadnodeSet per datacenter) apply within each directory; a kind and name
//! may appear once in the whole input, because the input is stored as a
//! whole (so `examples/`, which holds several sets, is refused as one input).
//!
//! What is read, so that no input can hang or exhaust us: regular files
//! only (a FIFO, a device or a socket is refused with its path, never
//! opened for a blocking read), each file and each directory once however
//! many paths or symlinks reach it (by device and inode, so symlink loops
//! end), and at most [`MAX_FILE_BYTES`] per file. An input without a single
//! document is an error, as kubectl's "no objects passed to apply".

use std::collections::{BTreeMap, HashSet};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crds::{Diagnostic, ParsedDocument, Severity, SourceLocation, parse_documents, validate_sets};

/// The largest document file read (16 MiB): far above any real desired
/// state, far below what would hurt.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

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

/// Read, parse and validate everything under `paths`. An `Err` means some
/// path could not be read (every such path is named); problems in the
/// documents are `diagnostics`.
pub fn read(paths: &[PathBuf]) -> anyhow::Result<Input> {
    let mut walk = Walk::default();
    for p in paths {
        walk.arg(p);
    }
    let mut texts = Vec::new();
    let mut unreadable = Vec::new();
    for file in &walk.files {
        match read_text(file) {
            Ok(t) => texts.push(t),
            Err(why) => unreadable.push((file.path.clone(), why)),
        }
    }
    for (path, why) in unreadable {
        walk.refuse(&path, why);
    }
    if !walk.refused.is_empty() {
        anyhow::bail!(
            "cannot read the input; nothing was read:\n  {}",
            walk.refused.join("\n  ")
        );
    }

    let mut groups: BTreeMap<PathBuf, Vec<ParsedDocument>> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    let mut empty = Vec::new();
    for (file, (name, text)) in walk.files.iter().zip(texts) {
        let (docs, diags) = parse_documents(&name, &text);
        if docs.is_empty() && diags.is_empty() {
            empty.push(name);
        }
        diagnostics.extend(diags);
        let dir = file
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        groups.entry(dir).or_default().extend(docs);
    }
    let sets: Vec<&[ParsedDocument]> = groups.values().map(Vec::as_slice).collect();
    diagnostics.extend(validate_sets(&sets));
    let documents: Vec<ParsedDocument> = groups.into_values().flatten().collect();
    if documents.is_empty() && diagnostics.is_empty() {
        let given: Vec<String> = paths.iter().map(|p| display(p)).collect();
        diagnostics.push(whole(
            given.join(", "),
            "no documents in the input, nothing to apply: give -f files or directories holding \
             *.yaml, *.yml or *.json documents",
            Severity::Error,
        ));
    } else {
        for name in empty {
            diagnostics.push(whole(name, "holds no documents", Severity::Warning));
        }
    }
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(Input {
        documents,
        diagnostics,
        files: walk.files.len(),
    })
}

/// A diagnostic about a whole file or input (line 0).
fn whole(file: String, message: &str, severity: Severity) -> Diagnostic {
    Diagnostic {
        location: SourceLocation {
            file,
            line: 0,
            column: 0,
        },
        path: String::new(),
        message: message.to_string(),
        severity,
    }
}

fn display(p: &Path) -> String {
    if p.as_os_str() == "-" {
        "<stdin>".into()
    } else {
        p.display().to_string()
    }
}

/// A file to read, with the identity it had when the walk found it.
struct FileToRead {
    path: PathBuf,
    /// (device, inode); None for standard input.
    id: Option<(u64, u64)>,
}

#[derive(Default)]
struct Walk {
    files: Vec<FileToRead>,
    seen_files: HashSet<(u64, u64)>,
    seen_dirs: HashSet<(u64, u64)>,
    stdin: bool,
    refused: Vec<String>,
}

fn id(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn is_document_name(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|x| x.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

impl Walk {
    fn refuse(&mut self, p: &Path, why: impl std::fmt::Display) {
        self.refused.push(format!("{}: {why}", p.display()));
    }

    /// A path given with -f: a file is read whatever its name.
    fn arg(&mut self, p: &Path) {
        if p.as_os_str() == "-" {
            if !self.stdin {
                self.stdin = true;
                self.files.push(FileToRead {
                    path: p.to_path_buf(),
                    id: None,
                });
            }
            return;
        }
        match std::fs::metadata(p) {
            Err(e) => self.refuse(p, e),
            Ok(m) if m.is_dir() => self.dir(p, &m),
            Ok(m) => self.file(p, &m),
        }
    }

    fn dir(&mut self, p: &Path, m: &Metadata) {
        // Reached before: a second path to it, or a symlink loop.
        if !self.seen_dirs.insert(id(m)) {
            return;
        }
        let entries = match std::fs::read_dir(p) {
            Ok(rd) => rd.collect::<Result<Vec<_>, _>>(),
            Err(e) => Err(e),
        };
        let mut entries: Vec<PathBuf> = match entries {
            Ok(es) => es.into_iter().map(|e| e.path()).collect(),
            Err(e) => return self.refuse(p, e),
        };
        entries.sort();
        for e in entries {
            match std::fs::metadata(&e) {
                Ok(m) if m.is_dir() => self.dir(&e, &m),
                Ok(m) if is_document_name(&e) => self.file(&e, &m),
                Err(err) if is_document_name(&e) => self.refuse(&e, err),
                _ => {}
            }
        }
    }

    fn file(&mut self, p: &Path, m: &Metadata) {
        if let Err(why) = regular_and_small(m) {
            return self.refuse(p, why);
        }
        if self.seen_files.insert(id(m)) {
            self.files.push(FileToRead {
                path: p.to_path_buf(),
                id: Some(id(m)),
            });
        }
    }
}

fn regular_and_small(m: &Metadata) -> Result<(), String> {
    let t = m.file_type();
    if !t.is_file() {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(format!(
            "not a regular file ({what}); only regular files are read (use -f - to read a pipe)"
        ));
    }
    if m.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(())
}

fn too_big() -> String {
    format!("larger than the 16 MiB ({MAX_FILE_BYTES} bytes) a document file may hold")
}

/// The file's name (for diagnostics) and text.
fn read_text(f: &FileToRead) -> Result<(String, String), String> {
    let mut bytes = Vec::new();
    if f.id.is_none() {
        std::io::stdin()
            .lock()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
    } else {
        // Non-blocking, so that a file swapped for a FIFO since the walk
        // cannot block the open; then check it is still what the walk saw.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&f.path)
            .map_err(|e| e.to_string())?;
        let m = file.metadata().map_err(|e| e.to_string())?;
        regular_and_small(&m)?;
        if Some(id(&m)) != f.id {
            return Err("changed while being read; try again".into());
        }
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((display(&f.path), text))
}
