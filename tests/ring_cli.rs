//! `tritonctl ring`: create, locate, show and diff on LevelDB ring
//! directories and on ring images in the simulated IMGAPI, as an operator
//! runs them (the binary; build it first with `cargo build -p tritonctl`).

use std::process::Output;

use e2e::{run, stderr, stdout};
use serde_json::{Value, json};
use wire::fash::Ring;

const P1: &str = "tcp://1.moray.emy-11.joyent.us:2020";
const P2: &str = "tcp://2.moray.emy-11.joyent.us:2020";
const P3: &str = "tcp://3.moray.emy-11.joyent.us:2020";

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn ok(o: Output) -> String {
    assert_eq!(
        code(&o),
        0,
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn json_of(o: Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// The fash README walk-through: create the six-vnode ring, get-node.
#[test]
fn create_then_locate_the_fash_readme_key() {
    let d = tempfile::tempdir().unwrap();
    let ring = d.path().join("hash_ring");
    let r = ring.to_str().unwrap();
    let pnodes = format!("{P2},{P1}");
    let out = ok(run(
        d.path(),
        &["ring", "create", "-v", "6", "-p", &pnodes, "-o", r],
    ));
    assert_eq!(
        out,
        format!("created ring {r}: 6 vnodes on 2 pnodes (sha256, fash 2.1.0)\n")
    );
    // What fash wrote, as LevelDB holds it.
    assert_eq!(
        fashdb::load(&ring).unwrap(),
        Ring::create(6, &[P1, P2]).unwrap()
    );

    let out = ok(run(
        d.path(),
        &["ring", "locate", "-l", r, "/yunong/yunong.txt"],
    ));
    assert_eq!(
        out,
        format!(
            "KEY                 VNODE  PNODE                                DATA\n/yunong/yunong.txt  4      {P1}  1\n"
        )
    );
    let v = json_of(run(
        d.path(),
        &[
            "ring",
            "locate",
            "-l",
            r,
            "-j",
            "/yunong/yunong.txt",
            "yunong",
        ],
    ));
    assert_eq!(
        v,
        json!([
            {"key": "/yunong/yunong.txt", "bucket": null, "hashed": "/yunong/yunong.txt", "vnode": 4, "pnode": P1, "data": 1},
            {"key": "yunong", "bucket": null, "hashed": "yunong", "vnode": 0, "pnode": P1, "data": 1},
        ])
    );
    // With --bucket manta the key hashes by its directory, as electric-moray routes it.
    let out = ok(run(
        d.path(),
        &[
            "ring",
            "locate",
            "-l",
            r,
            "--bucket",
            "manta",
            "-H",
            "-o",
            "vnode,hashed",
            "/yunong/yunong.txt/x",
        ],
    ));
    assert_eq!(out, "4  /yunong/yunong.txt\n");
    // A second create into the same directory is refused, naming it.
    let o = run(d.path(), &["ring", "create", "-v", "6", "-p", P1, "-o", r]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!("{r}: not empty")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn show_lists_pnodes_and_data_vnodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("r");
    let mut ring = Ring::create(12, &[P1, P2]).unwrap();
    ring.remap_from(P2, &[1, 3], P3).unwrap();
    ring.set_read_only(&[3, 4], true).unwrap();
    fashdb::write_ring(&dir, &ring).unwrap();
    let r = dir.to_str().unwrap();
    let out = ok(run(d.path(), &["ring", "show", "-l", r]));
    assert_eq!(
        out,
        format!(
            "ring {r}: 12 vnodes, 3 pnodes, sha256, fash 2.1.0\n\
PNODE                                VNODES  DATA\n\
{P1}  6       1\n\
{P2}  4       0\n\
{P3}  2       1\n\
\n\
VNODE  PNODE                                DATA\n\
3      {P3}  ro\n\
4      {P1}  ro\n"
        )
    );
    let v = json_of(run(d.path(), &["ring", "show", "-l", r, "-j"]));
    assert_eq!(v["vnodes"], 12);
    assert_eq!(
        v["pnodes"][2],
        json!({"pnode": P3, "vnodes": 2, "dataVnodes": 1})
    );
    assert_eq!(
        v["dataVnodes"][0],
        json!({"vnode": 3, "pnode": P3, "data": "ro"})
    );
    assert_eq!(
        v["algorithm"]["VNODE_HASH_INTERVAL"],
        json!(ring.interval_hex())
    );
    let out = ok(run(d.path(), &["ring", "show", "-l", r, "-o", "name"]));
    assert_eq!(out, format!("{P1}\n{P2}\n{P3}\n"));
}

#[test]
fn diff_names_the_vnodes_that_move_and_the_data_that_changes() {
    let d = tempfile::tempdir().unwrap();
    let before = Ring::create(12, &[P1, P2]).unwrap();
    let mut after = before.clone();
    after.remap_from(P2, &[1, 3, 5, 9], P3).unwrap();
    after.set_read_only(&[0], true).unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    fashdb::write_ring(&a, &before).unwrap();
    fashdb::write_ring(&b, &after).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = ok(run(d.path(), &["ring", "diff", a, b]));
    assert_eq!(
        out,
        format!(
            "FROM                                 TO                                   COUNT  VNODES\n\
{P2}  {P3}  4      1,3,5,9\n\
vnode 0: data 1 -> ro\n\
pnode added: {P3}\n"
        )
    );
    let v = json_of(run(d.path(), &["ring", "diff", a, b, "-j"]));
    assert_eq!(v["identical"], false);
    assert_eq!(v["movedVnodes"], 4);
    assert_eq!(v["moves"][0]["vnodes"], json!([1, 3, 5, 9]));
    // The JSON form plans keep compares with a directory.
    let plan = d.path().join("plan.json");
    std::fs::write(&plan, after.to_json()).unwrap();
    let out = ok(run(d.path(), &["ring", "diff", plan.to_str().unwrap(), b]));
    assert_eq!(out, format!("{} and {b}: identical\n", plan.display()));
    let o = run(d.path(), &["ring", "diff", a, "nowhere"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("nowhere: no such ring directory"),
        "{}",
        stderr(&o)
    );
}

/// A ring directory fash would not load is refused with the directory and
/// the key at fault.
#[test]
fn a_broken_ring_directory_is_named_with_its_fault() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("half");
    {
        let mut db = rusty_leveldb::DB::open(&dir, rusty_leveldb::Options::default()).unwrap();
        db.put(b"VNODE_COUNT", b"6").unwrap();
        db.close().unwrap();
    }
    let r = dir.to_str().unwrap();
    let o = run(d.path(), &["ring", "show", "-l", r]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        format!(
            "error: {r}: no COMPLETE key: the ring was never finished (fash writes COMPLETE last, and will not load a ring without it)\n"
        )
    );
    let o = run(d.path(), &["ring", "show"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("-l DIR"), "{}", stderr(&o));
}

/// `--image UUID`: the ring image is fetched from IMGAPI and read as
/// electric-moray's setup reads it.
#[tokio::test]
async fn locate_and_show_a_ring_image_from_imgapi() {
    let dc = sim::dc::Datacenter::new(sim::dc::DcConfig::default());
    let owner = "930896af-bf8c-48d4-885c-6573a94b1853";
    let ring = Ring::create(6, &[P1, P2]).unwrap();
    let image =
        sim::manta::ring_image::publish_ring_image(&dc, &ring, owner, Default::default()).unwrap();
    let servers = sim::http::SimServers::start(dc.clone()).await.unwrap();
    let imgapi = servers.urls().imgapi.clone();
    let d = tempfile::tempdir().unwrap();
    let dp = d.path().to_path_buf();
    let (img, url) = (image.clone(), imgapi.clone());
    let v = tokio::task::spawn_blocking(move || {
        json_of(run(
            &dp,
            &[
                "ring",
                "locate",
                "--image",
                &img,
                "--imgapi",
                &url,
                "-j",
                "/yunong/yunong.txt",
            ],
        ))
    })
    .await
    .unwrap();
    assert_eq!(v[0]["vnode"], 4);
    assert_eq!(v[0]["pnode"], P1);
    let dp = d.path().to_path_buf();
    let (img, url) = (image.clone(), imgapi.clone());
    let v = tokio::task::spawn_blocking(move || {
        json_of(run(
            &dp,
            &["ring", "show", "--image", &img, "--imgapi", &url, "-j"],
        ))
    })
    .await
    .unwrap();
    assert_eq!(v["stamp"]["image_uuid"], json!(image));
    assert_eq!(v["ring"], json!(format!("image {image}")));
    // Without --imgapi the command says what is missing.
    let dp = d.path().to_path_buf();
    let img = image.clone();
    let o = tokio::task::spawn_blocking(move || run(&dp, &["ring", "show", "--image", &img]))
        .await
        .unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("give --imgapi URL"), "{}", stderr(&o));
    servers.shutdown().await;
}
