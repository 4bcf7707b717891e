//! The few ZooKeeper wire records (jute encoding) that [`crate::zk34`] needs,
//! written from the record definitions in ZooKeeper's `zookeeper.jute` and
//! the multi framing of `MultiTransactionRecord` / `MultiResponse`.
//!
//! Jute binary encoding: `int` is 4 bytes big-endian, `long` 8 bytes
//! big-endian, `boolean` one byte (0/1), `buffer` and `ustring` an `int`
//! length then the bytes (-1 for null), `vector` an `int` count then the
//! elements. Every packet on the connection is an `int` length then that
//! many bytes.
//!
//! Records used (field order as in `zookeeper.jute`):
//! - `ConnectRequest { int protocolVersion; long lastZxidSeen; int timeOut;
//!   long sessionId; buffer passwd; }` followed by `boolean readOnly`, which
//!   3.4 servers read when present.
//! - `ConnectResponse { int protocolVersion; int timeOut; long sessionId;
//!   buffer passwd; }` optionally followed by `boolean readOnly`. A session
//!   the server no longer knows is answered with `timeOut` 0 (and session 0).
//! - `RequestHeader { int xid; int type; }`, `ReplyHeader { int xid; long
//!   zxid; int err; }`. Reply xid -2 answers a ping, -1 is a watch event.
//! - A multi request (opcode 14) is, per operation, `MultiHeader { int type;
//!   boolean done; int err; }` with `done` false and `err` -1, then the
//!   operation's request record; it ends with `MultiHeader { -1, true, -1 }`.
//!   The operation records: `CreateRequest { ustring path; buffer data;
//!   vector<ACL> acl; int flags; }` (type 1), `DeleteRequest { ustring path;
//!   int version; }` (2), `SetDataRequest { ustring path; buffer data; int
//!   version; }` (5), `CheckVersionRequest { ustring path; int version; }`
//!   (13). `ACL { int perms; Id id; }`, `Id { ustring scheme; ustring id; }`.
//! - A multi response is, per operation, a `MultiHeader` (type = the
//!   operation's opcode, or -1 for an error) and its result record:
//!   `CreateResponse { ustring path; }` for 1, nothing for 2 and 13,
//!   `SetDataResponse { Stat stat; }` for 5, `ErrorResponse { int err; }`
//!   for -1; it ends with a `MultiHeader` whose `done` is true.
//! - `SyncRequest { ustring path; }` is not used here (the main session syncs).

use crate::Stat;

pub const PROTOCOL_VERSION: i32 = 0;

/// Opcodes (`ZooDefs.OpCode`).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const SET_DATA: i32 = 5;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CLOSE_SESSION: i32 = -11;
    /// `AuthPacket { int type; ustring scheme; buffer auth; }` (addauth).
    pub const AUTH: i32 = 100;
    /// The type of an error result inside a multi response.
    pub const ERROR: i32 = -1;
}

/// Reserved xids (`ClientCnxn`).
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    /// The xid of an auth packet and of its reply.
    pub const AUTH: i32 = -4;
}

/// Error codes (`KeeperException.Code`).
pub mod code {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const DATA_INCONSISTENCY: i32 = -3;
    pub const CONNECTION_LOSS: i32 = -4;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const OPERATION_TIMEOUT: i32 = -7;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const API_ERROR: i32 = -100;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const SESSION_MOVED: i32 = -118;
    pub const NOT_READ_ONLY: i32 = -119;

    /// ZooKeeper's name for a code, for messages.
    pub fn name(code: i32) -> &'static str {
        match code {
            OK => "ok",
            SYSTEM_ERROR => "system error",
            RUNTIME_INCONSISTENCY => "runtime inconsistency",
            DATA_INCONSISTENCY => "data inconsistency",
            CONNECTION_LOSS => "connection loss",
            MARSHALLING_ERROR => "marshalling error",
            UNIMPLEMENTED => "unimplemented",
            OPERATION_TIMEOUT => "operation timeout",
            BAD_ARGUMENTS => "bad arguments",
            API_ERROR => "api error",
            NO_NODE => "no node",
            NO_AUTH => "not authenticated",
            BAD_VERSION => "bad version",
            NO_CHILDREN_FOR_EPHEMERALS => "no children for ephemerals",
            NODE_EXISTS => "node exists",
            NOT_EMPTY => "not empty",
            SESSION_EXPIRED => "session expired",
            INVALID_ACL => "invalid acl",
            AUTH_FAILED => "auth failed",
            SESSION_MOVED => "session moved",
            NOT_READ_ONLY => "not read-only",
            _ => "unknown error code",
        }
    }
}

/// `ZooDefs.Perms.ALL` (read, write, create, delete, admin).
pub const PERMS_ALL: i32 = 31;

/// CreateMode flags as the server reads them.
pub const FLAG_EPHEMERAL: i32 = 1;
pub const FLAG_SEQUENTIAL: i32 = 2;

/// A record that did not decode: what and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed ZooKeeper reply: {0}")]
pub struct DecodeError(pub String);

// ------------------------------------------------------------------ encoding

pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

pub fn put_buffer(out: &mut Vec<u8>, b: &[u8]) {
    put_i32(out, len_i32(b.len()));
    out.extend_from_slice(b);
}

pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_buffer(out, s.as_bytes());
}

fn len_i32(n: usize) -> i32 {
    // Requests are far below ZooKeeper's 1 MiB jute.maxbuffer; a length
    // beyond i32 cannot be sent at all.
    i32::try_from(n).expect("record longer than 2 GiB")
}

/// A whole packet: the length prefix, then `body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    put_i32(&mut out, len_i32(body.len()));
    out.extend_from_slice(body);
    out
}

/// `ConnectRequest` plus the trailing `readOnly` flag (false).
pub fn connect_request(last_zxid: i64, timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(45);
    put_i32(&mut out, PROTOCOL_VERSION);
    put_i64(&mut out, last_zxid);
    put_i32(&mut out, timeout_ms);
    put_i64(&mut out, session_id);
    put_buffer(&mut out, passwd);
    put_bool(&mut out, false);
    out
}

/// `RequestHeader` then `body`.
pub fn request(xid: i32, opcode: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    put_i32(&mut out, xid);
    put_i32(&mut out, opcode);
    out.extend_from_slice(body);
    out
}

/// One operation of a multi, in wire terms (paths already chrooted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiOp<'a> {
    /// Plain CREATE (opcode 1) with its ACL (`vector<ACL>`).
    Create {
        path: &'a str,
        data: &'a [u8],
        acl: &'a [crate::Acl],
        flags: i32,
    },
    Delete {
        path: &'a str,
        version: i32,
    },
    SetData {
        path: &'a str,
        data: &'a [u8],
        version: i32,
    },
    Check {
        path: &'a str,
        version: i32,
    },
}

impl MultiOp<'_> {
    pub fn opcode(&self) -> i32 {
        match self {
            MultiOp::Create { .. } => op::CREATE,
            MultiOp::Delete { .. } => op::DELETE,
            MultiOp::SetData { .. } => op::SET_DATA,
            MultiOp::Check { .. } => op::CHECK,
        }
    }
}

fn multi_header(out: &mut Vec<u8>, ty: i32, done: bool, err: i32) {
    put_i32(out, ty);
    put_bool(out, done);
    put_i32(out, err);
}

/// `vector<ACL>`: a count, then `ACL { int perms; Id { ustring scheme;
/// ustring id; } }` per entry.
pub fn put_acl(out: &mut Vec<u8>, acl: &[crate::Acl]) {
    put_i32(out, acl.len() as i32);
    for a in acl {
        put_i32(out, a.perms.0);
        put_string(out, &a.id.scheme);
        put_string(out, &a.id.id);
    }
}

/// The body of an auth packet (`addauth scheme auth`), type 0.
pub fn auth_packet(scheme: &str, auth: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_i32(&mut out, 0);
    put_string(&mut out, scheme);
    put_buffer(&mut out, auth);
    out
}

/// The body of a multi request (`MultiTransactionRecord`).
pub fn multi_request(ops: &[MultiOp<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in ops {
        multi_header(&mut out, o.opcode(), false, -1);
        match *o {
            MultiOp::Create {
                path,
                data,
                acl,
                flags,
            } => {
                put_string(&mut out, path);
                put_buffer(&mut out, data);
                put_acl(&mut out, acl);
                put_i32(&mut out, flags);
            }
            MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                put_string(&mut out, path);
                put_i32(&mut out, version);
            }
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                put_string(&mut out, path);
                put_buffer(&mut out, data);
                put_i32(&mut out, version);
            }
        }
    }
    multi_header(&mut out, -1, true, -1);
    out
}

// ------------------------------------------------------------------ decoding

/// Reads jute values from the front of a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError(format!(
                "{}: {field} needs {n} bytes, {} left",
                self.what,
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn i32(&mut self, field: &str) -> Result<i32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    pub fn i64(&mut self, field: &str) -> Result<i64, DecodeError> {
        let b = self.take(8, field)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn bool(&mut self, field: &str) -> Result<bool, DecodeError> {
        Ok(self.take(1, field)?[0] != 0)
    }

    /// A buffer; null (-1) reads as empty.
    pub fn buffer(&mut self, field: &str) -> Result<&'a [u8], DecodeError> {
        let n = self.i32(field)?;
        if n < 0 {
            return Ok(&[]);
        }
        self.take(n as usize, field)
    }

    pub fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        let b = self.buffer(field)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| DecodeError(format!("{}: {field} is not UTF-8", self.what)))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
}

impl ConnectResponse {
    pub fn decode(body: &[u8]) -> Result<ConnectResponse, DecodeError> {
        let mut r = Reader::new(body, "ConnectResponse");
        let resp = ConnectResponse {
            protocol_version: r.i32("protocolVersion")?,
            timeout_ms: r.i32("timeOut")?,
            session_id: r.i64("sessionId")?,
            passwd: r.buffer("passwd")?.to_vec(),
        };
        // An optional readOnly byte may follow; we never ask for read-only.
        Ok(resp)
    }

    /// The server does not know (any more) the session we presented.
    pub fn is_expired(&self) -> bool {
        self.timeout_ms <= 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

/// A reply packet's header and the rest of its body.
pub fn reply(body: &[u8]) -> Result<(ReplyHeader, &[u8]), DecodeError> {
    let mut r = Reader::new(body, "ReplyHeader");
    let header = ReplyHeader {
        xid: r.i32("xid")?,
        zxid: r.i64("zxid")?,
        err: r.i32("err")?,
    };
    Ok((header, r.buf))
}

/// `Stat`, mapped onto ours.
pub fn stat(r: &mut Reader<'_>) -> Result<Stat, DecodeError> {
    let _czxid = r.i64("czxid")?;
    let _mzxid = r.i64("mzxid")?;
    let ctime_ms = r.i64("ctime")?;
    let mtime_ms = r.i64("mtime")?;
    let version = r.i32("version")?;
    let cversion = r.i32("cversion")?;
    let _aversion = r.i32("aversion")?;
    let ephemeral_owner = r.i64("ephemeralOwner")?;
    let data_length = r.i32("dataLength")?;
    let num_children = r.i32("numChildren")?;
    let _pzxid = r.i64("pzxid")?;
    Ok(Stat {
        version,
        cversion,
        ctime_ms,
        mtime_ms,
        ephemeral_owner,
        num_children,
        data_length,
    })
}

/// One entry of a multi response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiResult {
    /// The path the server created (sequence suffix included; chrooted).
    Create(String),
    Delete,
    SetData(Stat),
    Check,
    /// `err` 0 marks an operation before the failing one (it would have
    /// succeeded); the failing one carries its code; those after it carry
    /// RUNTIMEINCONSISTENCY.
    Error(i32),
}

/// A `MultiResponse` body.
pub fn multi_response(body: &[u8]) -> Result<Vec<MultiResult>, DecodeError> {
    let mut r = Reader::new(body, "MultiResponse");
    let mut out = Vec::new();
    loop {
        let ty = r.i32("MultiHeader.type")?;
        let done = r.bool("MultiHeader.done")?;
        let _err = r.i32("MultiHeader.err")?;
        if done {
            return Ok(out);
        }
        out.push(match ty {
            op::CREATE => MultiResult::Create(r.string("CreateResponse.path")?),
            op::CREATE2 => {
                let path = r.string("Create2Response.path")?;
                stat(&mut r)?;
                MultiResult::Create(path)
            }
            op::DELETE => MultiResult::Delete,
            op::SET_DATA => MultiResult::SetData(stat(&mut r)?),
            op::CHECK => MultiResult::Check,
            op::ERROR => MultiResult::Error(r.i32("ErrorResponse.err")?),
            other => {
                return Err(DecodeError(format!(
                    "MultiResponse: result type {other} at position {}",
                    out.len()
                )));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_in_a_multi_is_opcode_1_with_the_open_acl() {
        let open = crate::Acl::open();
        let body = multi_request(&[MultiOp::Create {
            path: "/a",
            data: b"xy",
            acl: &open,
            flags: FLAG_SEQUENTIAL,
        }]);
        let mut want = Vec::new();
        want.extend(1i32.to_be_bytes()); // type CREATE
        want.push(0); // done
        want.extend((-1i32).to_be_bytes()); // err
        want.extend(2i32.to_be_bytes());
        want.extend(b"/a");
        want.extend(2i32.to_be_bytes());
        want.extend(b"xy");
        want.extend(1i32.to_be_bytes()); // one ACL
        want.extend(31i32.to_be_bytes());
        want.extend(5i32.to_be_bytes());
        want.extend(b"world");
        want.extend(6i32.to_be_bytes());
        want.extend(b"anyone");
        want.extend(2i32.to_be_bytes()); // flags
        want.extend((-1i32).to_be_bytes()); // end: type -1, done, err -1
        want.push(1);
        want.extend((-1i32).to_be_bytes());
        assert_eq!(body, want);
    }

    #[test]
    fn a_create_carries_its_acl_and_auth_packets_their_credentials() {
        use crate::{Acl, Id, Perms};
        let acl = vec![
            Acl::new(Perms::READ, Id::digest("alice:h=")),
            Acl::new(Perms::ALL, Id::creator()),
        ];
        let body = multi_request(&[MultiOp::Create {
            path: "/a",
            data: b"",
            acl: &acl,
            flags: 0,
        }]);
        let mut r = Reader::new(&body, "test");
        assert_eq!(r.i32("type").unwrap(), 1);
        r.bool("done").unwrap();
        r.i32("err").unwrap();
        assert_eq!(r.string("path").unwrap(), "/a");
        assert_eq!(r.buffer("data").unwrap(), b"");
        assert_eq!(r.i32("acls").unwrap(), 2);
        assert_eq!(r.i32("perms").unwrap(), 1);
        assert_eq!(r.string("scheme").unwrap(), "digest");
        assert_eq!(r.string("id").unwrap(), "alice:h=");
        assert_eq!(r.i32("perms").unwrap(), 31);
        assert_eq!(r.string("scheme").unwrap(), "auth");
        assert_eq!(r.string("id").unwrap(), "");
        assert_eq!(r.i32("flags").unwrap(), 0);

        let p = auth_packet("digest", b"alice:pw");
        let mut r = Reader::new(&p, "test");
        assert_eq!(r.i32("type").unwrap(), 0);
        assert_eq!(r.string("scheme").unwrap(), "digest");
        assert_eq!(r.buffer("auth").unwrap(), b"alice:pw");
        assert!(r.is_empty());
    }

    #[test]
    fn delete_set_and_check_records() {
        let body = multi_request(&[
            MultiOp::Delete {
                path: "/d",
                version: 3,
            },
            MultiOp::SetData {
                path: "/s",
                data: b"",
                version: -1,
            },
            MultiOp::Check {
                path: "/c",
                version: 0,
            },
        ]);
        let mut r = Reader::new(&body, "test");
        for (ty, path) in [(2, "/d"), (5, "/s"), (13, "/c")] {
            assert_eq!(r.i32("type").unwrap(), ty);
            assert!(!r.bool("done").unwrap());
            assert_eq!(r.i32("err").unwrap(), -1);
            assert_eq!(r.string("path").unwrap(), path);
            match ty {
                2 => assert_eq!(r.i32("version").unwrap(), 3),
                5 => {
                    assert_eq!(r.buffer("data").unwrap(), b"");
                    assert_eq!(r.i32("version").unwrap(), -1);
                }
                _ => assert_eq!(r.i32("version").unwrap(), 0),
            }
        }
        assert_eq!(r.i32("type").unwrap(), -1);
        assert!(r.bool("done").unwrap());
        assert_eq!(r.i32("err").unwrap(), -1);
        assert!(r.is_empty());
    }

    #[test]
    fn connect_request_layout() {
        let b = connect_request(9, 4000, 0x77, &[0; 16]);
        let mut r = Reader::new(&b, "test");
        assert_eq!(r.i32("v").unwrap(), 0);
        assert_eq!(r.i64("zxid").unwrap(), 9);
        assert_eq!(r.i32("timeout").unwrap(), 4000);
        assert_eq!(r.i64("session").unwrap(), 0x77);
        assert_eq!(r.buffer("passwd").unwrap(), &[0; 16]);
        assert!(!r.bool("readOnly").unwrap());
        assert!(r.is_empty());
    }

    fn header(out: &mut Vec<u8>, ty: i32, done: bool, err: i32) {
        put_i32(out, ty);
        put_bool(out, done);
        put_i32(out, err);
    }

    #[test]
    fn multi_responses_decode() {
        let mut b = Vec::new();
        header(&mut b, 1, false, 0);
        put_string(&mut b, "/p/s-0000000004");
        header(&mut b, 5, false, 0);
        for v in [1i64, 2, 3, 4] {
            put_i64(&mut b, v);
        }
        for v in [7i32, 1, 0] {
            put_i32(&mut b, v);
        }
        put_i64(&mut b, 0);
        put_i32(&mut b, 2);
        put_i32(&mut b, 0);
        put_i64(&mut b, 5);
        header(&mut b, 2, false, 0);
        header(&mut b, 13, false, 0);
        header(&mut b, -1, false, -101);
        put_i32(&mut b, -101);
        header(&mut b, -1, true, -1);
        let results = multi_response(&b).unwrap();
        assert_eq!(results[0], MultiResult::Create("/p/s-0000000004".into()));
        match &results[1] {
            MultiResult::SetData(s) => {
                assert_eq!(
                    (s.ctime_ms, s.mtime_ms, s.version, s.cversion),
                    (3, 4, 7, 1)
                );
                assert_eq!(s.data_length, 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            &results[2..],
            &[
                MultiResult::Delete,
                MultiResult::Check,
                MultiResult::Error(-101)
            ]
        );
        // Truncated replies are errors, not panics.
        for cut in 0..b.len() - 1 {
            assert!(multi_response(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn expired_connect_response() {
        let mut b = Vec::new();
        put_i32(&mut b, 0);
        put_i32(&mut b, 0);
        put_i64(&mut b, 0);
        put_buffer(&mut b, &[0; 16]);
        b.push(0);
        let r = ConnectResponse::decode(&b).unwrap();
        assert!(r.is_expired());
    }
}
