//! Which strategy a ManateeVersion takes for a shard: rolling within a
//! major, the transplant across v1 -> v2.

use crds::manatee::Strategy;
use serde::{Deserialize, Serialize};

use crate::error::{Refusal, RefusalReason};

/// Which strategy a ManateeVersion resolves to for a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolved {
    Rolling,
    Transplant,
}

/// Resolve `strategy` given the majors the shard's zones run and the target's.
/// `Err` is a preflight refusal.
pub fn resolve_strategy(
    strategy: Strategy,
    running: &[u32],
    target: Option<u32>,
    image: &str,
) -> Result<Resolved, Refusal> {
    let crosses = |t: u32| running.iter().any(|&r| r != t);
    match (strategy, target) {
        (_, Some(t)) if running.iter().any(|&r| r > t) => Err(Refusal::new(
            RefusalReason::MajorDowngrade,
            format!(
                "image {image} carries manatee v{t} but the shard runs v{}; going back a major is the reverse transplant, which tritonctl only plans on explicit approval",
                running.iter().max().unwrap_or(&0)
            ),
        )),
        (Strategy::Rolling | Strategy::Switchover, Some(t)) if crosses(t) => Err(Refusal::new(
            RefusalReason::MajorVersionChange,
            format!(
                "a rolling upgrade cannot cross manatee majors (v{} -> v{t}): a v2 sitter never sets up a cluster on a v1 database and the reprovisioned peer would stay unassigned; use `strategy: transplant` (or `auto`)",
                running.iter().min().unwrap_or(&0)
            ),
        )),
        (Strategy::Auto, Some(t)) if crosses(t) => Ok(Resolved::Transplant),
        (Strategy::Transplant, Some(t)) if !crosses(t) => Err(Refusal::new(
            RefusalReason::NoMajorChange,
            format!(
                "`strategy: transplant` moves a shard from manatee v1 to v2, but the shard already runs v{t}; use `rolling` or `auto`"
            ),
        )),
        (Strategy::Transplant, None) => Err(Refusal::new(
            RefusalReason::UnknownMajor,
            format!(
                "image {image} does not say which manatee major it carries (IMGAPI tags.manatee_major or an sdc-manatee version timestamp); tag it"
            ),
        )),
        (Strategy::Transplant, Some(_)) => Ok(Resolved::Transplant),
        _ => Ok(Resolved::Rolling),
    }
}
