//! The web view's pages, server-rendered HTML (no build step, no
//! third-party code): [`overview`], [`document`], [`topology`],
//! [`headnodes`], [`plan`]; [`html`] the shell and escaping.

pub mod document;
pub mod headnodes;
pub mod html;
pub mod overview;
pub mod plan;
pub mod topology;
