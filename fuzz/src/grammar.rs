//! Generators built from a format's grammar rather than from seeds: valid
//! (and nearly valid) jute replies, pg-status rows and election node names,
//! each then cut or flipped at a random place now and then.

use coord::Stat;
use coord::jute::MultiResult;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::BoxedStrategy;

fn stat() -> impl Strategy<Value = Stat> {
    (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(
            |(
                version,
                cversion,
                ctime_ms,
                mtime_ms,
                ephemeral_owner,
                num_children,
                data_length,
            )| {
                Stat {
                    version,
                    cversion,
                    ctime_ms,
                    mtime_ms,
                    ephemeral_owner,
                    num_children,
                    data_length,
                }
            },
        )
}

/// A multi result of any type.
pub fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        "[/a-z0-9-]{0,40}|.{0,8}".prop_map(MultiResult::Create),
        Just(MultiResult::Delete),
        stat().prop_map(MultiResult::SetData),
        Just(MultiResult::Check),
        any::<i32>().prop_map(MultiResult::Error),
    ]
}

/// Damage to a well-formed input: none, a cut, or a byte changed.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Cut(Index),
    Flip(Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        1 => any::<Index>().prop_map(Damage::Cut),
        1 => (any::<Index>(), 1u8..).prop_map(|(i, b)| Damage::Flip(i, b)),
    ]
}

fn hurt(mut b: Vec<u8>, d: &Damage) -> Vec<u8> {
    match d {
        Damage::None => {}
        Damage::Cut(i) => b.truncate(i.index(b.len() + 1)),
        Damage::Flip(i, x) if !b.is_empty() => {
            let p = i.index(b.len());
            b[p] ^= x;
        }
        Damage::Flip(..) => {}
    }
    b
}

/// Multi responses (round trip when undamaged) and connect responses.
pub fn jute_replies() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (vec(multi_result(), 0..12), damage())
            .prop_map(|(rs, d)| hurt(crate::jute_enc::multi_response(&rs), &d)),
        (
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            vec(any::<u8>(), 0..20),
            proptest::option::of(any::<bool>()),
            damage()
        )
            .prop_map(|(v, t, s, p, ro, d)| {
                let r = coord::jute::ConnectResponse {
                    protocol_version: v,
                    timeout_ms: t,
                    session_id: s,
                    passwd: p,
                };
                hurt(crate::jute_enc::connect_response(&r, ro), &d)
            }),
    ]
    .boxed()
}

fn lag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_string()),
        Just("?".to_string()),
        (0u64..100, 0u64..60).prop_map(|(m, s)| format!("{m}m{s:02}s")),
        vec(
            (
                "[0-9]{1,22}",
                prop::sample::select(vec!["d", "h", "m", "s", "x", ""])
            ),
            1..4
        )
        .prop_map(|parts| parts.into_iter().map(|(n, u)| n + u).collect::<String>()),
    ]
}

/// `manatee-adm pg-status -H -o peername,role,pg-online,pg-repl,pg-lag`
/// rows, with the odd row of the wrong width.
pub fn pg_status() -> BoxedStrategy<Vec<u8>> {
    let row = (
        "[a-f0-9-]{1,36}",
        prop::sample::select(vec!["primary", "sync", "async", "deposed", "-"]),
        prop::sample::select(vec!["ok", "fail", "-"]),
        prop::sample::select(vec!["sync", "async", "potential", "-"]),
        lag(),
        0u8..8,
    )
        .prop_map(|(peer, role, online, repl, lag, odd)| match odd {
            0 => format!("{peer} {role} {online}"),
            1 => format!("{peer}\t{role}  {online} {repl} {lag} extra"),
            _ => format!("{peer} {role} {online} {repl} {lag}"),
        });
    (vec(row, 0..6), damage())
        .prop_map(|(rows, d)| hurt(rows.join("\n").into_bytes(), &d))
        .boxed()
}

/// Election and history node names, LSNs and shard paths, one per line.
pub fn election_names() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![
        (
            "[0-9.]{1,15}|[a-z:]{0,8}|",
            any::<u16>(),
            any::<u16>(),
            "[0-9]{10}|[0-9]{9,11}"
        )
            .prop_map(|(ip, a, b, seq)| format!("{ip}:{a}:{b}-{seq}")),
        ("[0-9]{1,21}", "[0-9]{1,21}").prop_map(|(g, s)| format!("{g}-{s}")),
        ("[0-9A-Fa-f]{0,9}", "[0-9A-Fa-f]{0,9}").prop_map(|(a, b)| format!("{a}/{b}")),
        "/manatee/[a-z0-9./]{0,12}",
        ".{0,24}",
    ];
    (vec(name, 0..8), damage())
        .prop_map(|(names, d)| hurt(names.join("\n").into_bytes(), &d))
        .boxed()
}
