//! The shard topology: each shard's peers and roles, the ring's share per
//! shard and its read-only vnodes.

use std::fmt::Write as _;

use super::html::{badge, esc, page};
use super::overview::ring_table;
use crate::web::view::Overview;

pub fn render(o: &Overview) -> String {
    let mut b = String::new();
    match o.posture.as_ref().filter(|p| !p.shards.is_empty()) {
        None => b.push_str(
            "<p>No manatee shard observed: the controller serves this view with the datacenter's \
endpoints, and the stored documents name the shards.</p>",
        ),
        Some(p) => {
            for sh in &p.shards {
                let _ = write!(
                    b,
                    "<section aria-labelledby=\"shard-{0}\"><h2 id=\"shard-{0}\">Shard {0}</h2>",
                    esc(&sh.name)
                );
                if let Some(e) = &sh.error {
                    let _ = write!(b, "<p>Not observed: {}</p></section>", esc(e));
                    continue;
                }
                let _ = write!(
                    b,
                    "<p>Cluster state generation {}; {}.</p>",
                    sh.generation.map_or("-".into(), |g| g.to_string()),
                    match &sh.frozen {
                        Some(r) => format!("frozen: {}", esc(r)),
                        None if sh.one_node_write_mode => "one-node-write mode".into(),
                        None => "not frozen".into(),
                    }
                );
                b.push_str(
                    "<table><caption>Peers</caption><thead><tr><th scope=\"col\">Peer</th>\
<th scope=\"col\">Role</th><th scope=\"col\">Zone</th><th scope=\"col\">Server</th>\
<th scope=\"col\">VM</th><th scope=\"col\">PostgreSQL</th><th scope=\"col\">Lag</th>\
<th scope=\"col\">Image</th></tr></thead><tbody>",
                );
                for peer in &sh.peers {
                    let _ = write!(
                        b,
                        "<tr><th scope=\"row\">{}</th><td>{}</td><td><code>{}</code></td><td><code>{}</code></td>\
<td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        esc(&peer.alias),
                        badge(&peer.role),
                        esc(&peer.zone),
                        esc(&peer.server),
                        badge(&peer.vm_state),
                        if peer.pg_online {
                            "online"
                        } else {
                            "<strong>offline</strong>"
                        },
                        peer.lag_seconds.map_or("-".into(), |l| format!("{l:.1}s")),
                        esc(&peer.image)
                    );
                }
                b.push_str("</tbody></table></section>");
            }
        }
    }
    b.push_str("<section aria-labelledby=\"ring\"><h2 id=\"ring\">Ring</h2>");
    match &o.ring {
        Some(r) => b.push_str(&ring_table(r)),
        None => b.push_str(
            "<p>No ring: no Manta region (no ring image in SAPI, no ShardTopology stored).</p>",
        ),
    }
    b.push_str("</section>");
    page("Shard topology", "/topology", &b)
}
