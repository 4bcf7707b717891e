//! How SAPI's synchronous instance calls (create, upgrade, delete) wait for
//! their VMAPI job, and why a client that goes away changes nothing.
//!
//! Real SAPI (`lib/server/vmapiplus.js` `waitForJob`) polls `GET /jobs/:uuid`
//! every 5 s until the job succeeds or fails, and gives up after 720 polls
//! (an hour) with a plain `Error('polling for job timed out')`. Node does not
//! stop a request's work when its client disconnects: the job runs on in
//! the workflow runner and SAPI's own follow-up (deleting the instance
//! record of a failed provision, dropping the record after a destroy) still
//! happens. The simulator's HTTP server, on the other hand, drops a
//! handler's future when its connection closes, so every synchronous call
//! runs in a task of its own ([`Datacenter::sapi_detached`]) that the
//! handler only waits for.

use std::future::Future;
use std::time::Duration;

use wire::apis::Job;

use super::Datacenter;
use super::error::ApiError;

/// SAPI polls a job this often (real time, scaled by the clock).
pub const SAPI_JOB_POLL: Duration = Duration::from_secs(5);
/// And at most this many times before answering an error.
pub const SAPI_JOB_POLLS: u32 = 720;

impl Datacenter {
    /// Run one SAPI call in a task of its own: the caller waits for its
    /// answer, but dropping the caller (a client that disconnected) leaves
    /// the call running to its end, effects included.
    pub async fn sapi_detached<T, Fut>(&self, call: Fut) -> Result<T, ApiError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        match tokio::spawn(call).await {
            Ok(answer) => answer,
            Err(e) => Err(ApiError::uncoded(
                500,
                format!("request handler failed: {e}"),
            )),
        }
    }

    /// SAPI's `waitForJob`: the job once it succeeded or failed. Past 720
    /// scaled polls of 5 s (an hour) SAPI stops waiting and answers a 500
    /// without a code; the job itself carries on. At time scale 0 there is
    /// no limit (nothing takes time).
    pub(crate) async fn sapi_wait_job(&self, job: &str) -> Result<Job, ApiError> {
        let limit = self.clock().scaled(SAPI_JOB_POLL * SAPI_JOB_POLLS);
        if limit.is_zero() {
            return self.wait_job(job).await;
        }
        match tokio::time::timeout(limit, self.wait_job(job)).await {
            Ok(done) => done,
            Err(_) => Err(ApiError::uncoded(500, "polling for job timed out")),
        }
    }
}
