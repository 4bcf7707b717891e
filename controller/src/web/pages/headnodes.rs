//! The datacenter's headnodes and the core instances on each.

use std::fmt::Write as _;

use super::html::{badge, esc, page};
use crate::web::view::Overview;

pub fn render(o: &Overview) -> String {
    let mut b = String::new();
    match o.posture.as_ref() {
        None => b.push_str(
            "<p>Not observed: the controller serves this view with the datacenter's endpoints.</p>",
        ),
        Some(p) if p.headnodes.is_empty() => b.push_str("<p>CNAPI lists no headnode.</p>"),
        Some(p) => {
            for h in &p.headnodes {
                let _ = write!(
                    b,
                    "<section aria-labelledby=\"hn-{0}\"><h2 id=\"hn-{0}\">{0}</h2><p>Server <code>{1}</code>, {2}; {3} core instance(s).</p>",
                    esc(&h.hostname),
                    esc(&h.uuid),
                    badge(&h.status),
                    h.instances.len()
                );
                if !h.instances.is_empty() {
                    b.push_str(
                        "<table><caption>Core instances</caption><thead><tr><th scope=\"col\">Instance</th>\
<th scope=\"col\">Role</th><th scope=\"col\">State</th><th scope=\"col\">UUID</th></tr></thead><tbody>",
                    );
                    for i in &h.instances {
                        let _ = write!(
                            b,
                            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                            esc(&i.alias),
                            esc(&i.role),
                            badge(&i.state),
                            esc(&i.uuid)
                        );
                    }
                    b.push_str("</tbody></table>");
                }
                b.push_str("</section>");
            }
        }
    }
    page("Headnodes", "/headnodes", &b)
}
