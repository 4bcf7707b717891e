//! A ZooKeeper server's side of the records `coord::jute` decodes, written
//! here from `zookeeper.jute` (not from the decoder), so that generated
//! replies can be encoded and a decoded reply checked by encoding it again.

use coord::Stat;
use coord::jute::{self, MultiResult, op};

fn header(out: &mut Vec<u8>, ty: i32, done: bool, err: i32) {
    jute::put_i32(out, ty);
    jute::put_bool(out, done);
    jute::put_i32(out, err);
}

/// `Stat { long czxid; long mzxid; long ctime; long mtime; int version;
/// int cversion; int aversion; long ephemeralOwner; int dataLength;
/// int numChildren; long pzxid; }`; the fields ours drops are 0.
pub fn stat(out: &mut Vec<u8>, s: &Stat) {
    jute::put_i64(out, 0);
    jute::put_i64(out, 0);
    jute::put_i64(out, s.ctime_ms);
    jute::put_i64(out, s.mtime_ms);
    jute::put_i32(out, s.version);
    jute::put_i32(out, s.cversion);
    jute::put_i32(out, 0);
    jute::put_i64(out, s.ephemeral_owner);
    jute::put_i32(out, s.data_length);
    jute::put_i32(out, s.num_children);
    jute::put_i64(out, 0);
}

/// A `MultiResponse` body.
pub fn multi_response(results: &[MultiResult]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in results {
        match r {
            MultiResult::Create(path) => {
                header(&mut out, op::CREATE, false, 0);
                jute::put_string(&mut out, path);
            }
            MultiResult::Delete => header(&mut out, op::DELETE, false, 0),
            MultiResult::SetData(s) => {
                header(&mut out, op::SET_DATA, false, 0);
                stat(&mut out, s);
            }
            MultiResult::Check => header(&mut out, op::CHECK, false, 0),
            MultiResult::Error(code) => {
                header(&mut out, op::ERROR, false, *code);
                jute::put_i32(&mut out, *code);
            }
        }
    }
    header(&mut out, -1, true, -1);
    out
}

/// A `ConnectResponse` with the optional trailing `readOnly` byte.
pub fn connect_response(r: &jute::ConnectResponse, read_only: Option<bool>) -> Vec<u8> {
    let mut out = Vec::new();
    jute::put_i32(&mut out, r.protocol_version);
    jute::put_i32(&mut out, r.timeout_ms);
    jute::put_i64(&mut out, r.session_id);
    jute::put_buffer(&mut out, &r.passwd);
    if let Some(b) = read_only {
        jute::put_bool(&mut out, b);
    }
    out
}
