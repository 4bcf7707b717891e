//! The targets: one function per parser or decoder, taking raw bytes and
//! asserting what must hold for any input. The harness adds no panic, no
//! hang, bounded stack and heap; each target adds its round trip (decode,
//! encode, decode again: the same value) and the invariants of its output.
//! The proptest run and the libFuzzer binaries call these same functions.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::harness::Target;

pub const DOCUMENTS: Target = Target {
    name: "documents",
    run: documents,
};
pub const MANATEE_STATE: Target = Target {
    name: "manatee_state",
    run: manatee_state,
};
pub const ELECTION: Target = Target {
    name: "election",
    run: election,
};
pub const APIS: Target = Target {
    name: "apis",
    run: apis,
};
pub const PGSTATUS: Target = Target {
    name: "pgstatus",
    run: pgstatus,
};
pub const JUTE: Target = Target {
    name: "jute",
    run: jute,
};
pub const FASH_RING: Target = Target {
    name: "fash_ring",
    run: fash_ring,
};

pub const ALL: [Target; 7] = [
    DOCUMENTS,
    MANATEE_STATE,
    ELECTION,
    APIS,
    PGSTATUS,
    JUTE,
    FASH_RING,
];

fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `crds`: parse (YAML or JSON, with the line index, the schema check and
/// the typed decode), then `validate_all` and `validate_sets`.
/// - every diagnostic of the parse is an error, and every location is inside
///   the input (line 0 = the whole input);
/// - a document that parsed, written back as JSON, parses to the same
///   document with no diagnostic.
pub fn documents(data: &[u8]) {
    let text = text(data);
    let (docs, diags) = crds::parse_documents("fuzz.yaml", &text);
    // YAML line breaks: `\r\n`, `\n` and a lone `\r`.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u64;
    let inside = |d: &crds::Diagnostic| {
        assert!(
            d.location.line <= lines,
            "diagnostic beyond the input's {lines} lines: {d}"
        );
    };
    for d in &diags {
        assert!(d.is_error(), "a parse diagnostic that is not an error: {d}");
        inside(d);
    }
    let all = crds::validate_all(&docs);
    all.iter().for_each(inside);
    let (a, b) = docs.split_at(docs.len() / 2);
    crds::validate_sets(&[a, b]).iter().for_each(inside);
    for d in &docs {
        let json = serde_json::to_string(&d.document).expect("a document serializes");
        let (again, diags) = crds::parse_documents("again.json", &json);
        assert!(
            diags.is_empty(),
            "a parsed document written back does not parse: {json}\n{diags:?}"
        );
        assert_eq!(again.len(), 1, "{json}");
        assert_eq!(again[0].document, d.document, "round trip of {json}");
    }
}

fn round_trip<T>(value: &T, what: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = serde_json::to_vec(value).expect("serializes");
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what} written back does not decode: {e}: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(&back, value, "{what} round trip");
}

/// `wire::manatee` cluster state (`/manatee/<shard>/state`): decode, the
/// peer checks, the accessors and the promote request; encode and decode
/// again to the same state.
pub fn manatee_state(data: &[u8]) {
    use wire::manatee::ClusterState;
    let Ok(state) = ClusterState::from_json(data) else {
        return;
    };
    let valid = state.validate().is_ok();
    if valid {
        assert!(state.init_wal_lsn().is_ok());
        assert!(ClusterState::parse_valid(data).is_ok());
    }
    for p in std::iter::once(&state.primary)
        .chain(state.sync.iter())
        .chain(state.asyncs.iter())
        .chain(state.deposed.iter())
    {
        assert!(state.role_of(&p.id).is_some(), "{} has no role", p.id);
        assert!(state.peer(&p.id).is_some());
        let _ = p.label();
    }
    for i in 0..=state.asyncs.len() {
        let _ = state.async_upstream(i);
    }
    let _ = (
        state.is_frozen(),
        state.freeze.reason(),
        state.freeze.date(),
    );
    if let Some(Ok(req)) = state.promote_request() {
        let _ = req.check(&state, time::OffsetDateTime::UNIX_EPOCH);
        round_trip(&req, "promote request");
    }
    let bytes = state.to_json();
    let back = ClusterState::from_json(&bytes).unwrap_or_else(|e| {
        panic!(
            "state written back does not decode: {e}: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(back, state, "cluster state round trip");
    let _ = state.with_asyncs(Vec::new()).to_json();
    if valid {
        // What a sitter writes: it must be a valid write again.
        let w = wire::manatee::prepare_state_write(
            "sdc",
            &state,
            Some(0),
            wire::manatee::HistoryWriter::Sitter,
        )
        .expect("a valid state is a valid write");
        assert_eq!(
            ClusterState::parse_valid(&w.data).ok().as_ref(),
            Some(&state)
        );
    }
}

/// `wire::manatee` election nodes: node names (one per line), their data
/// (the whole input as JSON), history node names, LSNs and the active-peer
/// list built from them.
pub fn election(data: &[u8]) {
    use wire::manatee::{ElectionNodeData, ElectionNodeName, HistoryNodeName, Lsn};
    if let Ok(d) = ElectionNodeData::from_json(data) {
        let back = ElectionNodeData::from_json(&d.to_json()).expect("data written back decodes");
        assert_eq!(back, d, "election data round trip");
        let _ = d.into_ident("x");
    }
    let text = text(data);
    let mut names = Vec::new();
    for line in text.lines() {
        if let Ok(n) = ElectionNodeName::parse(line) {
            assert_eq!(n.to_string(), line, "a node name prints as read");
            assert_eq!(ElectionNodeName::parse(&n.to_string()).as_ref(), Ok(&n));
            let _ = n.id_parts();
            names.push(line);
        }
        let h = HistoryNodeName::parse(line);
        let _ = h.seq();
        if let Ok(lsn) = line.parse::<Lsn>() {
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn), "LSN round trip");
        }
        let _ = wire::manatee::shard_from_path(line);
    }
    let blank = || ElectionNodeData {
        zone_id: "z".into(),
        ip: "i".into(),
        pg_url: "p".into(),
        backup_url: None,
        extra: Default::default(),
    };
    let peers = wire::manatee::active_peers(text.lines().map(|l| (l, blank())));
    let ids = wire::manatee::active_ids(&peers);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "active ids sorted, once"
    );
    assert!(peers.len() <= names.len());
}

macro_rules! records {
    ($data:expr, $($t:ty),* $(,)?) => {
        $(
            if let Ok(v) = serde_json::from_slice::<$t>($data) {
                round_trip(&v, stringify!($t));
            }
        )*
    };
}

/// `wire::apis`: every SAPI, VMAPI, CNAPI and IMGAPI record: decode, the
/// accessors, and the round trip (unknown fields kept in `extra`).
pub fn apis(data: &[u8]) {
    use wire::apis::*;
    records!(
        data,
        RestError,
        Application,
        Service,
        Instance,
        Manifest,
        SapiConfig,
        SapiPing,
        SapiUpdate,
        VmJobResponse,
        JobUuidResponse,
        ExecuteRequest,
        ExecuteResult,
    );
    if let Ok(vm) = serde_json::from_slice::<Vm>(data) {
        let _ = (vm.admin_ip(), vm.primary_ip(), vm.tag_str("manta_role"));
        let _ = vm.state.is_active();
        round_trip(&vm, "Vm");
    }
    if let Ok(job) = serde_json::from_slice::<Job>(data) {
        let _ = (job.error_message(), job.task(), job.vm_uuid());
        let _ = job.execution.is_terminal();
        round_trip(&job, "Job");
    }
    if let Ok(server) = serde_json::from_slice::<Server>(data) {
        let _ = server.admin_ip();
        round_trip(&server, "Server");
    }
    if let Ok(m) = serde_json::from_slice::<ImageManifest>(data) {
        let _ = m.build_stamp();
        round_trip(&m, "ImageManifest");
    }
    if let Ok(list) = serde_json::from_slice::<Vec<Vm>>(data) {
        round_trip(&list, "Vec<Vm>");
    }
    if let Ok(list) = serde_json::from_slice::<Vec<Instance>>(data) {
        round_trip(&list, "Vec<Instance>");
    }
}

/// `wire::pgstatus`: `manatee-adm pg-status` output as the controller reads
/// it through CNAPI execute.
pub fn pgstatus(data: &[u8]) {
    let text = text(data);
    if let Ok(rows) = wire::pgstatus::parse(&text) {
        for r in &rows {
            assert!(!r.peername.is_empty());
            if let Some(l) = r.lag_seconds {
                assert!(l >= 0.0 && l.is_finite(), "lag {l}");
            }
        }
    }
    for token in text.split_whitespace() {
        let _ = wire::pgstatus::parse_lag(token);
    }
}

/// `coord::jute`: the records our ZooKeeper 3.4 session decodes from the
/// server's bytes (connect response, reply header, multi response); a multi
/// response that decodes encodes back to the same bytes' meaning.
pub fn jute(data: &[u8]) {
    use coord::jute;
    let _ = jute::ConnectResponse::decode(data);
    if let Ok((_, rest)) = jute::reply(data) {
        assert_eq!(rest.len(), data.len() - 16, "the reply header is 16 bytes");
    }
    if let Ok(results) = jute::multi_response(data) {
        let bytes = crate::jute_enc::multi_response(&results);
        assert_eq!(
            jute::multi_response(&bytes).as_ref(),
            Ok(&results),
            "multi response round trip"
        );
    }
}

/// `wire::fash` `Ring::from_json` (the electric-moray ring JSON): decode, and
/// a ring that decodes writes back to JSON that decodes to the same ring.
pub fn fash_ring(data: &[u8]) {
    let text = text(data);
    if let Ok(ring) = wire::fash::Ring::from_json(&text) {
        let json = ring.to_json();
        let back = wire::fash::Ring::from_json(&json)
            .unwrap_or_else(|e| panic!("a ring written back does not load: {e}: {json}"));
        assert_eq!(back, ring, "ring round trip");
    }
}
