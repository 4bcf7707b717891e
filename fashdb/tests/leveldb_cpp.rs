//! Compatibility with LevelDB itself (the C++ library node-fash's leveldown
//! wraps): a ring directory we write is opened and read, every key and
//! value, by the C++ LevelDB; and a LevelDB the C++ library writes with
//! Snappy compression on is read by ours.
//!
//! The C++ side is a small C program against `leveldb/c.h` (Debian's
//! `libleveldb-dev`), built with the system C compiler when the test runs.
//! Without them the tests print a note and pass, unless
//! TRITONCTL_REQUIRE_LEVELDB=1 (CI sets it; `scripts/test` installs the
//! package), where they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use fashdb::{entries, load, write_ring};
use serde_json::json;
use wire::fash::Ring;

const TOOL_C: &str = r#"
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)p[i]);
}

static int unhex(const char *s, size_t n, char *out) {
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned int b;
        if (sscanf(s + i, "%2x", &b) != 1) return -1;
        out[i / 2] = (char)b;
    }
    return (int)(n / 2);
}

static int fail(const char *what, char *err) {
    fprintf(stderr, "%s: %s\n", what, err ? err : "?");
    return 2;
}

int main(int argc, char **argv) {
    char *err = NULL;
    if (argc == 3 && strcmp(argv[1], "dump") == 0) {
        leveldb_options_t *o = leveldb_options_create();
        leveldb_options_set_create_if_missing(o, 0);
        leveldb_options_set_paranoid_checks(o, 1);
        leveldb_t *db = leveldb_open(o, argv[2], &err);
        if (err) return fail("open", err);
        leveldb_readoptions_t *ro = leveldb_readoptions_create();
        leveldb_readoptions_set_verify_checksums(ro, 1);
        leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
        for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
            size_t kl, vl;
            const char *k = leveldb_iter_key(it, &kl);
            const char *v = leveldb_iter_value(it, &vl);
            hex(k, kl); putchar(' '); hex(v, vl); putchar('\n');
        }
        leveldb_iter_get_error(it, &err);
        if (err) return fail("iterate", err);
        leveldb_iter_destroy(it);
        /* fash's loader reads these with get */
        size_t n;
        char *c = leveldb_get(db, ro, "COMPLETE", 8, &n, &err);
        if (err || !c) return fail("get COMPLETE", err);
        leveldb_free(c);
        leveldb_close(db);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "load") == 0) {
        leveldb_options_t *o = leveldb_options_create();
        leveldb_options_set_create_if_missing(o, 1);
        leveldb_options_set_error_if_exists(o, 1);
        leveldb_options_set_compression(o, leveldb_snappy_compression);
        leveldb_options_set_write_buffer_size(o, 256 * 1024);
        leveldb_t *db = leveldb_open(o, argv[2], &err);
        if (err) return fail("open", err);
        FILE *f = fopen(argv[3], "r");
        if (!f) return fail("input", NULL);
        leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
        leveldb_writebatch_t *b = leveldb_writebatch_create();
        char *line = NULL; size_t cap = 0; ssize_t len; int count = 0;
        while ((len = getline(&line, &cap, f)) > 0) {
            if (line[len - 1] == '\n') line[--len] = 0;
            char *sp = strchr(line, ' ');
            if (!sp) return fail("input line", NULL);
            size_t kl = sp - line, vl = len - kl - 1;
            char *k = malloc(kl / 2 + 1), *v = malloc(vl / 2 + 1);
            int kn = unhex(line, kl, k), vn = unhex(sp + 1, vl, v);
            if (kn < 0 || vn < 0) return fail("hex", NULL);
            leveldb_writebatch_put(b, k, kn, v, vn);
            free(k); free(v);
            if (++count % 1000 == 0) {
                leveldb_write(db, wo, b, &err);
                if (err) return fail("write", err);
                leveldb_writebatch_clear(b);
            }
        }
        leveldb_write(db, wo, b, &err);
        if (err) return fail("write", err);
        leveldb_compact_range(db, NULL, 0, NULL, 0);
        leveldb_close(db);
        return 0;
    }
    fprintf(stderr, "usage: dump DIR | load DIR FILE\n");
    return 1;
}
"#;

/// The C tool, built once per test binary, or None (with a note) when the
/// compiler or the LevelDB headers are missing and CI does not require them.
fn tool() -> Option<PathBuf> {
    static TOOL: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let built = TOOL.get_or_init(|| {
        if !Path::new("/usr/include/leveldb/c.h").exists() {
            return Err("the LevelDB headers (/usr/include/leveldb/c.h, Debian's libleveldb-dev) are not installed".into());
        }
        // Built once into cargo's per-target scratch directory; each
        // process builds under its own name and renames, so parallel test
        // processes never see half a binary.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fashdb-ldbtool");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let bin = dir.join("ldbtool");
        let src = dir.join("ldbtool.c");
        if bin.exists() && std::fs::read_to_string(&src).is_ok_and(|s| s == TOOL_C) {
            return Ok(bin);
        }
        let pid = std::process::id();
        let my_src = dir.join(format!("ldbtool.{pid}.c"));
        std::fs::write(&my_src, TOOL_C).map_err(|e| e.to_string())?;
        let my_bin = dir.join(format!("ldbtool.{pid}"));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .arg("-O1")
            .arg("-o")
            .arg(&my_bin)
            .arg(&my_src)
            .arg("-lleveldb")
            .output()
            .map_err(|e| format!("cannot run the C compiler `{cc}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the LevelDB tool failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&my_bin, &bin).map_err(|e| e.to_string())?;
        std::fs::rename(&my_src, &src).map_err(|e| e.to_string())?;
        Ok(bin)
    });
    match built {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            if std::env::var("TRITONCTL_REQUIRE_LEVELDB").as_deref() == Ok("1") {
                panic!("TRITONCTL_REQUIRE_LEVELDB=1 but {why}");
            }
            eprintln!("note: skipping the C++ LevelDB compatibility check: {why}");
            None
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every entry as the C++ LevelDB reads it.
fn cpp_dump(tool: &Path, dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let out = Command::new(tool).arg("dump").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "C++ LevelDB could not read {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (unhex(k), unhex(v))
        })
        .collect()
}

fn sample_ring() -> Ring {
    let p = |i: u32| format!("tcp://{i}.moray.staging.joyent.us:2020");
    let mut ring = Ring::create(20_000, &[p(1), p(2)]).unwrap();
    let moved: Vec<u32> = ring
        .vnodes_of(&p(2))
        .unwrap()
        .into_iter()
        .step_by(2)
        .collect();
    ring.remap_from(&p(2), &moved, &p(3)).unwrap();
    ring.set_read_only(&moved[..5], true).unwrap();
    ring.set_data(11, json!({"k": [1, "two"]})).unwrap();
    ring
}

#[test]
fn a_ring_directory_we_write_is_read_by_leveldb_itself() {
    let Some(tool) = tool() else { return };
    let ring = sample_ring();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("hash_ring");
    write_ring(&dir, &ring).unwrap();
    let ours = entries(&dir).unwrap();
    let theirs = cpp_dump(&tool, &dir);
    assert_eq!(theirs.len(), ours.len());
    assert!(
        theirs == ours,
        "C++ LevelDB reads other entries than we wrote"
    );
    // After the C++ library opened (and recovered) it, it still loads.
    assert_eq!(load(&dir).unwrap(), ring);
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Compression types of a table file's data blocks: the footer names the
/// index block, whose entries are the data blocks' handles; each block is
/// followed by its 1-byte type (0 none, 1 Snappy) and a checksum.
fn data_block_types(table: &[u8]) -> Vec<u8> {
    let footer = &table[table.len() - 48..];
    assert_eq!(
        &footer[40..],
        &0xdb4775248b80fb57u64.to_le_bytes(),
        "table magic"
    );
    let mut at = 0;
    let _meta = (varint(footer, &mut at), varint(footer, &mut at));
    let (off, size) = (
        varint(footer, &mut at) as usize,
        varint(footer, &mut at) as usize,
    );
    let raw = &table[off..off + size];
    let index = match table[off + size] {
        0 => raw.to_vec(),
        1 => snap::raw::Decoder::new().decompress_vec(raw).unwrap(),
        t => panic!("index block compression {t}"),
    };
    let restarts = u32::from_le_bytes(index[index.len() - 4..].try_into().unwrap()) as usize;
    let end = index.len() - 4 - 4 * restarts;
    let mut at = 0;
    let mut types = Vec::new();
    while at < end {
        let _shared = varint(&index, &mut at);
        let unshared = varint(&index, &mut at) as usize;
        let vlen = varint(&index, &mut at) as usize;
        at += unshared;
        let mut h = at;
        let (boff, bsize) = (
            varint(&index, &mut h) as usize,
            varint(&index, &mut h) as usize,
        );
        types.push(table[boff + bsize]);
        at += vlen;
    }
    types
}

#[test]
fn a_leveldb_written_by_leveldb_itself_with_snappy_is_read_by_ours() {
    let Some(tool) = tool() else { return };
    let ring = sample_ring();
    let d = tempfile::tempdir().unwrap();
    let ours = d.path().join("ours");
    write_ring(&ours, &ring).unwrap();
    let want = entries(&ours).unwrap();
    let input = d.path().join("entries.hex");
    let mut f = std::fs::File::create(&input).unwrap();
    for (k, v) in &want {
        writeln!(f, "{} {}", hex(k), hex(v)).unwrap();
    }
    drop(f);
    let theirs = d.path().join("theirs");
    let out = Command::new(&tool)
        .arg("load")
        .arg(&theirs)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The C++ library did compress: Snappy data blocks are there to read.
    let mut types = Vec::new();
    for e in std::fs::read_dir(&theirs).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ldb" || x == "sst") {
            types.extend(data_block_types(&std::fs::read(&p).unwrap()));
        }
    }
    let snappy = types.iter().filter(|t| **t == 1).count();
    assert!(
        snappy > 0,
        "no Snappy data block among {} blocks",
        types.len()
    );
    assert_eq!(entries(&theirs).unwrap(), want);
    assert_eq!(load(&theirs).unwrap(), ring);
}
