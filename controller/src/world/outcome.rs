//! What became of a SAPI call whose answer never came.
//!
//! SAPI's CreateInstance, UpgradeInstance and DeleteInstance are
//! synchronous: the answer comes once the VMAPI job ends, which may take an
//! hour. A client that times out, or whose connection breaks, does not know
//! whether the call went out, is still running, or is done; SAPI and the
//! workflow runner go on either way. So before anything is decided the
//! world is asked ([`resolve_after_timeout`]): the VM's jobs of the call's
//! task that were not there before it was sent, the SAPI instance and the
//! VM. Then [`sapi_call`] follows one rule for every caller:
//!
//! - done: proceed as if the answer had come;
//! - failed (the job ended in failure): the error SAPI would have answered;
//! - still running: wait for it, never send again;
//! - not started (no trace, also after [`Timeouts::settle`]): send again,
//!   once; a second unknown outcome with no trace stops with what was seen.
//!
//! [`Timeouts::settle`]: crate::clients::Timeouts::settle

use std::collections::HashSet;
use std::future::Future;

use reconcilers::error::WorldError;
use wire::apis::{Job, JobExecution};

use crate::clients::{ApiError, Triton};
use crate::world::e;

/// A SAPI call that waits for a VMAPI job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SapiCall<'a> {
    /// `POST /instances` with this instance (and zone) uuid.
    Create { uuid: &'a str },
    /// `PUT /instances/:zone/upgrade` to `image`.
    Upgrade { zone: &'a str, image: &'a str },
    /// `DELETE /instances/:zone`.
    Delete { zone: &'a str },
}

impl SapiCall<'_> {
    fn vm(&self) -> &str {
        match self {
            SapiCall::Create { uuid } => uuid,
            SapiCall::Upgrade { zone, .. } | SapiCall::Delete { zone } => zone,
        }
    }

    /// The VMAPI job task the call starts.
    fn task(&self) -> &'static str {
        match self {
            SapiCall::Create { .. } => "provision",
            SapiCall::Upgrade { .. } => "reprovision",
            SapiCall::Delete { .. } => "destroy",
        }
    }

    /// The restify code SAPI answers when the job fails.
    fn failed_code(&self) -> &'static str {
        match self {
            SapiCall::Create { .. } => wire::apis::codes::PROVISION_FAILED,
            SapiCall::Upgrade { .. } => wire::apis::codes::REPROVISION_FAILED,
            SapiCall::Delete { .. } => wire::apis::codes::DESTROY_FAILED,
        }
    }

    fn describe(&self) -> String {
        match self {
            SapiCall::Create { uuid } => format!("sapi POST /instances (uuid {uuid})"),
            SapiCall::Upgrade { zone, image } => {
                format!("sapi PUT /instances/{zone}/upgrade (image {image})")
            }
            SapiCall::Delete { zone } => format!("sapi DELETE /instances/{zone}"),
        }
    }
}

/// What the world says about a call whose answer was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Its effect is there.
    Done,
    /// Its job is queued or running (`Some`), or the job ended and SAPI's
    /// own follow-up (keeping or dropping the record) is not visible yet.
    InFlight(Option<String>),
    /// Its job failed: the outcome is known, and it is a failure.
    Failed { job: String, message: String },
    /// No trace of it.
    NotStarted,
}

/// The uuids of the VM's jobs now: what a call sent afterwards did not start.
pub async fn jobs_before(triton: &Triton, vm: &str) -> Result<HashSet<String>, WorldError> {
    Ok(vm_jobs(triton, vm)
        .await?
        .into_iter()
        .map(|j| j.uuid)
        .collect())
}

async fn vm_jobs(triton: &Triton, vm: &str) -> Result<Vec<Job>, WorldError> {
    match triton.vmapi.vm_jobs(vm).await {
        Ok(jobs) => Ok(jobs),
        Err(x) if x.is_not_found() => Ok(Vec::new()),
        Err(x) => Err(e(x)),
    }
}

/// Whether the call's effect is visible: the zone runs the image (upgrade),
/// the instance exists and its zone runs (create), the instance is gone
/// (delete).
async fn effect_visible(triton: &Triton, call: &SapiCall<'_>) -> Result<bool, WorldError> {
    match call {
        SapiCall::Upgrade { zone, image } => vm_running_on(triton, zone, Some(image)).await,
        SapiCall::Create { uuid } => {
            Ok(instance_exists(triton, uuid).await? && vm_running_on(triton, uuid, None).await?)
        }
        SapiCall::Delete { zone } => Ok(!instance_exists(triton, zone).await?),
    }
}

async fn vm_running_on(triton: &Triton, vm: &str, image: Option<&str>) -> Result<bool, WorldError> {
    match triton.vmapi.vm(vm).await {
        Ok(vm) => Ok(vm.state.as_str() == "running"
            && image.is_none_or(|i| vm.image_uuid.as_deref() == Some(i))),
        Err(x) if x.is_not_found() => Ok(false),
        Err(x) => Err(e(x)),
    }
}

async fn instance_exists(triton: &Triton, uuid: &str) -> Result<bool, WorldError> {
    match triton.sapi.instance(uuid).await {
        Ok(_) => Ok(true),
        Err(x) if x.is_not_found() => Ok(false),
        Err(x) => Err(e(x)),
    }
}

/// Find out what became of `call`, sent after `before` was taken
/// ([`jobs_before`]), from the world alone.
pub async fn resolve_after_timeout(
    triton: &Triton,
    call: &SapiCall<'_>,
    before: &HashSet<String>,
) -> Result<Resolved, WorldError> {
    // Newest first, as VMAPI lists them.
    let ours = vm_jobs(triton, call.vm())
        .await?
        .into_iter()
        .find(|j| j.task() == Some(call.task()) && !before.contains(&j.uuid));
    let visible = effect_visible(triton, call).await?;
    Ok(match ours {
        Some(j) if !j.execution.is_terminal() => Resolved::InFlight(Some(j.uuid)),
        Some(j) if j.execution == JobExecution::Succeeded || visible => {
            if visible {
                Resolved::Done
            } else {
                Resolved::InFlight(None)
            }
        }
        Some(j) => {
            let message = j
                .error_message()
                .unwrap_or_else(|| format!("job {} {}", j.uuid, j.execution.as_str()));
            // SAPI ignores a destroy that found the VM gone.
            if matches!(call, SapiCall::Delete { .. }) && message.contains("not found") {
                Resolved::InFlight(None)
            } else {
                Resolved::Failed {
                    job: j.uuid,
                    message,
                }
            }
        }
        None if visible => Resolved::Done,
        None => Resolved::NotStarted,
    })
}

/// Poll a job until it ends (at most `Timeouts::job_wait`).
pub async fn wait_for_job(triton: &Triton, job: &str) -> Result<Job, WorldError> {
    let t = triton.timeouts();
    let until = tokio::time::Instant::now() + t.job_wait;
    loop {
        let j = triton.vmapi.get_job(job).await.map_err(e)?;
        if j.execution.is_terminal() {
            return Ok(j);
        }
        if tokio::time::Instant::now() >= until {
            return Err(WorldError::TimedOut(format!(
                "vmapi job {job} ({}) still {} after {}s",
                j.task().unwrap_or("?"),
                j.execution.as_str(),
                t.job_wait.as_secs()
            )));
        }
        tokio::time::sleep(t.job_poll).await;
    }
}

/// What [`settle`] ends with: the outcome, known.
enum Known {
    Done,
    Failed { job: String, message: String },
    NotStarted,
}

/// Resolve until the outcome is known: a job in flight is waited for, and
/// "no trace" is looked at again after `Timeouts::settle` (twice as long
/// for SAPI's follow-up after a job that ended).
async fn settle(
    triton: &Triton,
    call: &SapiCall<'_>,
    before: &HashSet<String>,
) -> Result<Known, WorldError> {
    let pause = triton.timeouts().settle;
    let mut looked_again = false;
    let mut follow_ups = 0u32;
    loop {
        match resolve_after_timeout(triton, call, before).await? {
            Resolved::InFlight(Some(job)) => {
                wait_for_job(triton, &job).await?;
            }
            Resolved::InFlight(None) if follow_ups < 2 => {
                follow_ups += 1;
                tokio::time::sleep(pause).await;
            }
            Resolved::InFlight(None) => {
                return Err(WorldError::Unexpected(format!(
                    "{}: its job ended but SAPI still does not show the result after {:?}",
                    call.describe(),
                    pause * 2
                )));
            }
            Resolved::NotStarted if !looked_again => {
                looked_again = true;
                tokio::time::sleep(pause).await;
            }
            Resolved::NotStarted => return Ok(Known::NotStarted),
            Resolved::Done => return Ok(Known::Done),
            Resolved::Failed { job, message } => return Ok(Known::Failed { job, message }),
        }
    }
}

/// Send a SAPI call that waits for a VMAPI job, and when its answer is
/// lost (timed out, connection broken) follow the module's rule. A call
/// of the same task already in flight for the VM (sent before a restart,
/// or by a call whose answer was lost) is waited for instead of sending.
pub async fn sapi_call<T, F, Fut>(
    triton: &Triton,
    call: SapiCall<'_>,
    send: F,
) -> Result<(), WorldError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let jobs = vm_jobs(triton, call.vm()).await?;
    let running = jobs
        .iter()
        .find(|j| j.task() == Some(call.task()) && !j.execution.is_terminal())
        .map(|j| j.uuid.clone());
    let before: HashSet<String> = jobs.into_iter().map(|j| j.uuid).collect();
    if let Some(running) = running {
        wait_for_job(triton, &running).await?;
        if effect_visible(triton, &call).await? {
            return Ok(());
        }
    }
    let mut sent = 0;
    loop {
        sent += 1;
        let err = match send().await {
            Ok(_) => return Ok(()),
            Err(err) if !err.outcome_unknown() => return Err(e(err)),
            Err(err) => err,
        };
        tracing::warn!(call = %call.describe(), error = %err, "answer lost; asking the world what happened");
        match settle(triton, &call, &before).await? {
            Known::Done => return Ok(()),
            Known::Failed { job, message } => {
                return Err(WorldError::Api {
                    what: call.describe(),
                    status: 500,
                    code: call.failed_code().to_string(),
                    message: format!("{message} (job {job})"),
                });
            }
            Known::NotStarted if sent < 2 => {
                tracing::warn!(call = %call.describe(), "no trace of the call; sending it again, once");
            }
            Known::NotStarted => {
                return Err(e(err).context(format!(
                    "sent twice, no job and no effect seen either time (looked again after {:?})",
                    triton.timeouts().settle
                )));
            }
        }
    }
}
