//! Ring images as Manta keeps them in IMGAPI (research/resharding.md §2.4,
//! §3.7): the image file is a gzip tar whose root holds the directory
//! `hash_ring/` with the LevelDB ring in it and no other directory between.
//! manta-reshard (`templates/hashring-create-archive.sh`) also puts a stamp
//! in it, `hash_ring/manta_hash_ring_stamp.json` =
//! `{"image_uuid", "date", "source_zone"}`, so that an extracted copy tells
//! which image it came from; `manta-adm create-topology` writes none, so a
//! stamp is optional when reading. The manifest is the one both tools
//! write: `name: manta-hash-ring`, type and os `other`, not public, one
//! gzip file, manta-reshard's `manta_reshard_*` tags when given. SAPI's
//! `manta` application names the live image in `HASH_RING_IMAGE` and the
//! IMGAPI holding it in `HASH_RING_IMGAPI_SERVICE`.

use std::io::{Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use wire::fash::Ring;

use crate::error::ImageError;
use crate::{read, write};

/// The image name `manta-adm create-topology` and manta-reshard give rings.
pub const RING_IMAGE_NAME: &str = "manta-hash-ring";
/// SAPI `manta` application metadata: the live ring image's uuid.
pub const HASH_RING_IMAGE: &str = "HASH_RING_IMAGE";
/// SAPI `manta` application metadata: the IMGAPI URL the image lives in.
pub const HASH_RING_IMGAPI_SERVICE: &str = "HASH_RING_IMGAPI_SERVICE";
/// The directory at the root of the archive.
pub const HASH_RING_DIR: &str = "hash_ring";
/// The stamp inside `hash_ring/`.
pub const STAMP_FILE: &str = "manta_hash_ring_stamp.json";

/// manta-reshard's stamp: which image an extracted ring came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub image_uuid: String,
    /// `date -u +%FT%TZ`.
    pub date: String,
    /// The zone that built the image.
    pub source_zone: String,
}

impl Stamp {
    /// A stamp dated now.
    pub fn now(image_uuid: &str, source_zone: &str) -> Stamp {
        Stamp {
            image_uuid: image_uuid.into(),
            date: iso_date(time::OffsetDateTime::now_utc()),
            source_zone: source_zone.into(),
        }
    }

    /// The file as the template's heredoc writes it (tab-indented).
    pub fn to_file(&self) -> String {
        format!(
            "{{\n\t\"image_uuid\": {},\n\t\"date\": {},\n\t\"source_zone\": {}\n}}\n",
            Value::from(self.image_uuid.as_str()),
            Value::from(self.date.as_str()),
            Value::from(self.source_zone.as_str())
        )
    }
}

/// `date -u +%FT%TZ`.
pub fn iso_date(t: time::OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("a UTC time formats")
}

/// The manifest `version`: the stamp date without `-` and `:`
/// (`20181017T123456Z`), as both tools make it.
pub fn image_version(date: &str) -> String {
    date.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The manifest of a ring image whose file is `file` (as both tools write
/// it; `tags` only when not empty, as manta-reshard adds them).
pub fn manifest(
    uuid: &str,
    owner: &str,
    date: &str,
    file: &[u8],
    tags: Map<String, Value>,
) -> Value {
    let mut m = json!({
        "v": 2,
        "uuid": uuid,
        "owner": owner,
        "name": RING_IMAGE_NAME,
        "version": image_version(date),
        "state": "active",
        "public": false,
        "published_at": date,
        "type": "other",
        "os": "other",
        "files": [{
            "sha1": sha1_hex(file),
            "size": file.len(),
            "compression": "gzip",
        }],
        "description": "Manta Hash Ring",
    });
    if !tags.is_empty() {
        m["tags"] = Value::Object(tags);
    }
    m
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io(image: &str) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        image: image.into(),
        source,
    }
}

/// `tar cfz` of a ring directory as `hash_ring/`, with `stamp` as
/// `hash_ring/manta_hash_ring_stamp.json` when given (replacing one the
/// directory holds).
pub fn pack_dir(dir: &Path, stamp: Option<&Stamp>) -> Result<Vec<u8>, ImageError> {
    let label = dir.display().to_string();
    let io = io(&label);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dir_header = tar::Header::new_ustar();
    dir_header.set_entry_type(tar::EntryType::Directory);
    dir_header.set_mode(0o755);
    dir_header.set_size(0);
    tar.append_data(
        &mut dir_header,
        format!("{HASH_RING_DIR}/"),
        std::io::empty(),
    )
    .map_err(&io)?;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(&io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&io)?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if stamp.is_some() && name == STAMP_FILE {
            continue;
        }
        if e.file_type().map_err(&io)?.is_file() {
            let path = Path::new(HASH_RING_DIR).join(&name);
            tar.append_path_with_name(e.path(), path).map_err(&io)?;
        }
    }
    if let Some(s) = stamp {
        let body = s.to_file();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        tar.append_data(
            &mut h,
            format!("{HASH_RING_DIR}/{STAMP_FILE}"),
            body.as_bytes(),
        )
        .map_err(&io)?;
    }
    let gz = tar.into_inner().map_err(&io)?;
    gz.finish().map_err(&io)
}

/// Writes `ring` as a LevelDB directory and packs it (see [`pack_dir`]).
pub fn pack_ring(ring: &Ring, stamp: Option<&Stamp>) -> Result<Vec<u8>, ImageError> {
    let label = stamp.map_or_else(|| "(new)".to_string(), |s| s.image_uuid.clone());
    let tmp = tempfile::tempdir().map_err(io(&label))?;
    let dir = tmp.path().join(HASH_RING_DIR);
    write::write_ring(&dir, ring).map_err(|source| ImageError::Ring {
        image: label.clone(),
        source: Box::new(source),
    })?;
    pack_dir(&dir, stamp)
}

/// Extracts `hash_ring/` of an image file into `into` (its contents go
/// straight into `into`, as `gtar --strip-components=1 -x hash_ring` in
/// manta-reshard's update script); returns the stamp when there is one.
/// `image` names the image in errors.
pub fn unpack(bytes: &[u8], image: &str, into: &Path) -> Result<Option<Stamp>, ImageError> {
    let not_archive = |e: std::io::Error| ImageError::NotAnArchive {
        image: image.into(),
        message: e.to_string(),
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    std::fs::create_dir_all(into).map_err(io(image))?;
    let mut saw_ring = false;
    let mut stamp = None;
    for entry in archive.entries().map_err(not_archive)? {
        let mut entry = entry.map_err(not_archive)?;
        let path = entry.path().map_err(not_archive)?.into_owned();
        let mut comps = path.components().filter(|c| *c != Component::CurDir);
        if comps.next() != Some(Component::Normal(HASH_RING_DIR.as_ref())) {
            continue;
        }
        saw_ring = true;
        let rest: Vec<Component> = comps.collect();
        if rest.is_empty() {
            continue;
        }
        if rest.len() != 1 || !matches!(rest[0], Component::Normal(_)) {
            return Err(ImageError::UnsafePath {
                image: image.into(),
                path: path.display().to_string(),
            });
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = rest[0].as_os_str();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(not_archive)?;
        if name == STAMP_FILE {
            stamp =
                Some(
                    serde_json::from_slice::<Stamp>(&buf).map_err(|e| ImageError::BadStamp {
                        image: image.into(),
                        file: STAMP_FILE,
                        message: e.to_string(),
                    })?,
                );
        }
        let mut f = std::fs::File::create(into.join(name)).map_err(io(image))?;
        f.write_all(&buf).map_err(io(image))?;
    }
    if !saw_ring {
        return Err(ImageError::NoHashRing {
            image: image.into(),
        });
    }
    Ok(stamp)
}

/// A ring image's ring and stamp.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub ring: Ring,
    pub stamp: Option<Stamp>,
}

/// Extracts an image file into a temporary directory and loads its ring
/// as electric-moray would (fash's load checks, then the whole ring).
pub fn load_image(bytes: &[u8], image: &str) -> Result<LoadedImage, ImageError> {
    let tmp = tempfile::tempdir().map_err(io(image))?;
    let dir = tmp.path().join(HASH_RING_DIR);
    let stamp = unpack(bytes, image, &dir)?;
    let ring = read::load(&dir).map_err(|source| ImageError::Ring {
        image: image.into(),
        source: Box::new(source),
    })?;
    Ok(LoadedImage { ring, stamp })
}
