//! The rendered plan: `tritonctl diff` of the stored documents against the
//! datacenter, as the review prints it.

use super::html::{esc, page};
use crate::gitops::render;
use crate::gitops::review::Review;

pub fn render(review: Result<&Review, &str>) -> String {
    let b = match review {
        Ok(r) => format!(
            "<p>What the controller would do for the documents as stored: the same review \
<code>tritonctl diff</code> prints, planned against {}.</p><p><strong>{}</strong></p><pre>{}</pre>",
            esc(r.observed.as_deref().unwrap_or("nothing observed")),
            esc(&render::summary(r)),
            esc(&render::text(r, false))
        ),
        Err(e) => format!("<p>No plan: {}</p>", esc(e)),
    };
    page("Plan", "/plan", &b)
}
