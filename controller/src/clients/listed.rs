//! List answers decoded one record at a time.
//!
//! Real SAPI stores whatever JSON types a client sent, so one record of a
//! list can be unreadable (`master: "true"`, `metadata: []`) while the rest
//! are fine. A [`Listed`] keeps both and makes the caller say what an
//! unreadable record means for it:
//!
//! - [`Listed::all`]: every record matters (the application or service a
//!   lookup names, the members of a shard): an odd one is an error naming
//!   its uuid and field (`ApiError::Decode`, a `WorldError::Malformed` to
//!   the reconcilers, so the plan is blocked with that reason in the
//!   Degraded condition and its Warning event, never skipped).
//! - [`Listed::scoped`]: only records of one scope matter (one Manta shard's
//!   postgres zones among all shards'; the servers a HeadnodeSet names): an
//!   odd record that is, or may be, in scope is an error; one that is
//!   clearly not is logged and left out.
//! - [`Listed::lenient`]: nothing is decided from the list (change
//!   detection): the readable records, plus the odd ones to log or count.

use serde::de::DeserializeOwned;
use serde_json::Value;
use wire::records::{OddRecord, Records, decode_records};

use super::{ApiError, HttpApi};

/// A decoded list with where it came from.
#[derive(Clone, Debug)]
pub struct Listed<T> {
    pub api: &'static str,
    pub path: String,
    pub records: Records<T>,
}

impl HttpApi {
    /// `GET` a list and decode each element on its own.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Listed<T>, ApiError> {
        let body: Value = self.get(path, query).await?;
        let records = decode_records(body).map_err(|e| ApiError::Decode {
            api: self.api,
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(Listed {
            api: self.api,
            path: path.to_string(),
            records,
        })
    }
}

impl<T> Listed<T> {
    /// The odd records as one error naming each (uuid, field, reason).
    pub fn odd_error(&self, odd: &[&OddRecord]) -> ApiError {
        let n = odd.len();
        let list = odd
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::Decode {
            api: self.api,
            path: self.path.clone(),
            message: format!(
                "{n} record{} could not be read: {list}",
                if n == 1 { "" } else { "s" }
            ),
        }
    }

    /// Every record, or an error naming the odd ones.
    pub fn all(self) -> Result<Vec<T>, ApiError> {
        if self.records.odd.is_empty() {
            return Ok(self.records.ok);
        }
        let odd: Vec<&OddRecord> = self.records.odd.iter().collect();
        Err(self.odd_error(&odd))
    }

    /// The records in scope (`keep`), or an error when an odd record may be
    /// in scope (`maybe_ours`); odd records out of scope are logged.
    pub fn scoped(
        self,
        keep: impl Fn(&T) -> bool,
        maybe_ours: impl Fn(&OddRecord) -> bool,
    ) -> Result<Vec<T>, ApiError> {
        let (ours, others): (Vec<&OddRecord>, Vec<&OddRecord>) =
            self.records.odd.iter().partition(|o| maybe_ours(o));
        if !ours.is_empty() {
            return Err(self.odd_error(&ours));
        }
        for o in others {
            tracing::warn!(api = self.api, path = %self.path, "ignoring an unreadable record out of scope: {o}");
        }
        Ok(self.records.ok.into_iter().filter(|t| keep(t)).collect())
    }

    /// The readable records and the odd ones (each also logged).
    pub fn lenient(self) -> (Vec<T>, Vec<OddRecord>) {
        for o in &self.records.odd {
            tracing::warn!(api = self.api, path = %self.path, "unreadable record: {o}");
        }
        (self.records.ok, self.records.odd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wire::apis::Instance;

    fn listed(body: Value) -> Listed<Instance> {
        Listed {
            api: "sapi",
            path: "/instances".into(),
            records: decode_records(body).unwrap(),
        }
    }

    fn body() -> Value {
        json!([
            {"uuid": "a", "service_uuid": "s", "metadata": {"SHARD": "1"}},
            {"uuid": "b", "service_uuid": "s", "master": "true", "metadata": {"SHARD": "2"}},
            {"uuid": "c", "service_uuid": "s", "metadata": []}
        ])
    }

    #[test]
    fn all_names_each_odd_record_by_uuid_and_field() {
        let e = listed(body()).all().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("2 records could not be read"), "{text}");
        assert!(text.contains("record b field `master`"), "{text}");
        assert!(text.contains("record c field `metadata`"), "{text}");
        assert!(matches!(
            reconcilers::error::WorldError::from(e),
            reconcilers::error::WorldError::Malformed(_)
        ));
    }

    #[test]
    fn scoped_blocks_on_an_odd_record_that_may_be_in_scope() {
        let shard = |s: &'static str| {
            move |o: &OddRecord| o.raw_str(&["metadata", "SHARD"]).is_none_or(|x| x == s)
        };
        let keep = |s: &'static str| {
            move |i: &Instance| i.metadata.get("SHARD").and_then(Value::as_str) == Some(s)
        };
        // Shard 1: `b` is shard 2's, but `c`'s shard cannot be read.
        let e = listed(body()).scoped(keep("1"), shard("1")).unwrap_err();
        assert!(e.to_string().contains("record c field `metadata`"), "{e}");
        assert!(!e.to_string().contains("record b"), "{e}");
        // Without `c`, shard 1 is readable and `b` is left out.
        let mut v = body();
        v.as_array_mut().unwrap().pop();
        let ok = listed(v.clone()).scoped(keep("1"), shard("1")).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].uuid, "a");
        // Shard 2's own zone `b` is unreadable: shard 2 is blocked.
        let e = listed(v).scoped(keep("2"), shard("2")).unwrap_err();
        assert!(e.to_string().contains("record b field `master`"), "{e}");
    }

    #[test]
    fn lenient_keeps_the_readable_records() {
        let (ok, odd) = listed(body()).lenient();
        assert_eq!(ok.len(), 1);
        assert_eq!(odd.len(), 2);
    }
}
