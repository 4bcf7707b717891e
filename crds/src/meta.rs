//! The Kubernetes-style envelope shared by every kind.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::Status;

/// The only API version this release reads and writes.
pub const API_VERSION: &str = "tritonctl/v1alpha1";

/// Identity and bookkeeping of a document. `name` is written by users;
/// `generation` and `resourceVersion` are set by the store and only echoed
/// back by users (a stale `resourceVersion` makes an apply fail).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique per kind. Lowercase letters, digits, `-` and `.`; at most 253 characters.
    pub name: String,
    /// Bumped by the store each time `spec` changes. Read-only for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Opaque version of the stored document. Send it back to apply only on
    /// top of exactly that version (optimistic concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A document of one kind: envelope, user-written `spec`, controller-written `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource<S> {
    /// Always `tritonctl/v1alpha1`.
    pub api_version: String,
    /// The kind's name, e.g. `ManateeVersion`.
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: S,
    /// Written only by the controller; ignored (and left out of diffs) on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl<S> Resource<S> {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}
