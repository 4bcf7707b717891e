//! Contract tests: SAPI's synchronous instance calls (create, upgrade,
//! delete) hold their answer until the VMAPI job ends, and a client that
//! goes away mid-call changes nothing: the job and SAPI's follow-up run to
//! their end as real SAPI's would (research/triton-apis.md §1.6).
//!
//! A client "goes away" by aborting the task that sends the request once
//! the call's job exists: the connection closes, and the simulator's HTTP
//! server drops the handler.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sim::dc::{Datacenter, DcConfig, SdcScenario, SeededSdc, SimDurations, seed_sdc};
use sim::http::SimServers;
use tokio::task::JoinHandle;
use wire::apis::{Job, JobExecution};

struct Env {
    dc: Datacenter,
    seeded: SeededSdc,
    srv: SimServers,
}

impl Env {
    async fn new(scale: f64) -> Env {
        Self::with_durations(scale, SimDurations::default()).await
    }

    async fn with_durations(scale: f64, durations: SimDurations) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dc = Datacenter::new(DcConfig {
            time_scale: scale,
            durations,
            ..Default::default()
        });
        let seeded = seed_sdc(&dc, &SdcScenario::default());
        let srv = SimServers::start(dc.clone()).await.expect("bind loopback");
        Env { dc, seeded, srv }
    }

    fn sapi(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().sapi)
    }

    /// Send a request in a task of its own: (status, body) when it ends.
    fn spawn(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> JoinHandle<(StatusCode, Value)> {
        tokio::spawn(async move {
            let mut rq = Client::new()
                .request(method, url)
                .header("accept-version", "~2");
            if let Some(b) = body {
                rq = rq.json(&b);
            }
            let r = rq.send().await.unwrap();
            let s = r.status();
            let text = r.text().await.unwrap();
            (s, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// The VM's newest job of `task` once it exists.
    async fn job_of(&self, vm: &str, task: &str) -> Job {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(j) = self.jobs_of(vm, task).pop() {
                return j;
            }
            assert!(Instant::now() < deadline, "no {task} job for {vm}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn jobs_of(&self, vm: &str, task: &str) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .dc
            .jobs()
            .into_iter()
            .filter(|j| j.vm_uuid() == Some(vm) && j.task() == Some(task))
            .collect();
        jobs.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        jobs
    }

    /// Wait until `cond` holds (the detached call's follow-up runs right
    /// after its job ends).
    async fn eventually(&self, what: &str, cond: impl Fn(&Datacenter) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(&self.dc) {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The answer of an upgrade arrives only once its reprovision job has
/// ended: while the job runs, the call is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_answers_only_after_its_job_ends() {
    // A reprovision takes 900 ms.
    let e = Env::new(1.0 / 1000.0).await;
    let m0 = e.seeded.instance("manatee0").to_string();
    let next = e.seeded.images["manatee-next"].clone();
    let call = e.spawn(
        reqwest::Method::PUT,
        e.sapi(&format!("/instances/{m0}/upgrade")),
        Some(json!({"image_uuid": next})),
    );
    let job = e.job_of(&m0, "reprovision").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.dc.vm(&m0).unwrap().state.as_str() != "provisioning" {
        assert!(Instant::now() < deadline, "the reprovision never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(!call.is_finished(), "SAPI answered while the job ran");
    let (s, v) = call.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    // By the time the answer came, the job had ended and the zone ran the image.
    let done = e.dc.job(&job.uuid).expect("the job");
    assert_eq!(done.execution, JobExecution::Succeeded, "{done:?}");
    assert_eq!(e.dc.vm(&m0).unwrap().image_uuid.as_deref(), Some(&*next));
    e.srv.shutdown().await;
}

/// A client that disconnects mid-upgrade finds the upgrade done later,
/// exactly as if it had stayed: one reprovision, the new image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_upgrade_still_sees_the_upgrade_done() {
    let e = Env::new(1.0 / 1000.0).await;
    let m0 = e.seeded.instance("manatee0").to_string();
    let next = e.seeded.images["manatee-next"].clone();
    let call = e.spawn(
        reqwest::Method::PUT,
        e.sapi(&format!("/instances/{m0}/upgrade")),
        Some(json!({"image_uuid": next})),
    );
    let job = e.job_of(&m0, "reprovision").await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let done = e.dc.wait_job(&job.uuid).await.unwrap();
    assert_eq!(done.execution, JobExecution::Succeeded, "{done:?}");
    let vm = e.dc.vm(&m0).unwrap();
    assert_eq!(vm.image_uuid.as_deref(), Some(&*next));
    assert_eq!(vm.state.as_str(), "running");
    assert_eq!(e.jobs_of(&m0, "reprovision").len(), 1);
    e.srv.shutdown().await;
}

/// A failed provision deletes the instance record, as real SAPI does,
/// whether or not the client waited for the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_provision_leaves_no_instance_record() {
    // The job waits 200 ms in the queue, then fails.
    let e = Env::new(1.0 / 10.0).await;
    let manatee = e.seeded.services["manatee"].clone();
    let cn = e.seeded.computes[0].clone();
    e.dc.fail_next_jobs(2, Some("provision"), "no space left on device");

    // The client stays: 500 ProvisionFailedError, and no record.
    let stayed = "11111111-1111-4111-8111-111111111111";
    let (s, v) = e
        .spawn(
            reqwest::Method::POST,
            e.sapi("/instances"),
            Some(json!({"service_uuid": manatee, "uuid": stayed,
                        "params": {"alias": "manatee8", "server_uuid": cn}})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["code"], "ProvisionFailedError", "{v}");
    assert!(e.dc.instance(stayed).is_none());

    // The client goes away while the job is queued: the record goes all the same.
    let left = "22222222-2222-4222-8222-222222222222";
    let call = e.spawn(
        reqwest::Method::POST,
        e.sapi("/instances"),
        Some(json!({"service_uuid": manatee, "uuid": left,
                    "params": {"alias": "manatee9", "server_uuid": cn}})),
    );
    let job = e.job_of(left, "provision").await;
    call.abort();
    let _ = call.await;
    let done = e.dc.wait_job(&job.uuid).await.unwrap();
    assert_eq!(done.execution, JobExecution::Failed, "{done:?}");
    e.eventually("the failed instance's record is deleted", |dc| {
        dc.instance(left).is_none()
    })
    .await;
    assert_eq!(e.dc.vm(left).unwrap().state.as_str(), "failed");
    e.srv.shutdown().await;
}

/// A client that disconnects mid-delete: the zone is destroyed and the
/// instance record dropped once the destroy ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_delete_still_sees_the_record_dropped() {
    // A destroy takes 600 ms.
    let e = Env::new(1.0 / 100.0).await;
    let b2 = e.seeded.instance("binder2").to_string();
    let call = e.spawn(
        reqwest::Method::DELETE,
        e.sapi(&format!("/instances/{b2}")),
        None,
    );
    let job = e.job_of(&b2, "destroy").await;
    call.abort();
    let _ = call.await;
    let done = e.dc.wait_job(&job.uuid).await.unwrap();
    assert_eq!(done.execution, JobExecution::Succeeded, "{done:?}");
    e.eventually("the deleted instance's record is dropped", |dc| {
        dc.instance(&b2).is_none()
    })
    .await;
    assert_eq!(e.dc.vm(&b2).unwrap().state.as_str(), "destroyed");
    e.srv.shutdown().await;
}

/// SAPI polls a job for an hour at most: a job that takes longer gets a
/// 500 without a code ("polling for job timed out") while it carries on;
/// a create then deletes its instance record, as on any failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sapi_stops_waiting_for_a_job_after_an_hour() {
    // An hour is 100 ms; provisions and reprovisions take two hours.
    let two_hours = Duration::from_secs(2 * 3600);
    let e = Env::with_durations(
        1.0 / 36000.0,
        SimDurations {
            provision: two_hours,
            reprovision: two_hours,
            ..SimDurations::default()
        },
    )
    .await;
    let m0 = e.seeded.instance("manatee0").to_string();
    let next = e.seeded.images["manatee-next"].clone();
    let (s, v) = e
        .spawn(
            reqwest::Method::PUT,
            e.sapi(&format!("/instances/{m0}/upgrade")),
            Some(json!({"image_uuid": next})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v, json!({"message": "polling for job timed out"}));
    let job = e.job_of(&m0, "reprovision").await;
    let done = e.dc.wait_job(&job.uuid).await.unwrap();
    assert_eq!(
        done.execution,
        JobExecution::Succeeded,
        "the job carries on"
    );
    assert_eq!(e.dc.vm(&m0).unwrap().image_uuid.as_deref(), Some(&*next));

    let manatee = e.seeded.services["manatee"].clone();
    let cn = e.seeded.computes[0].clone();
    let uuid = "33333333-3333-4333-8333-333333333333";
    let (s, v) = e
        .spawn(
            reqwest::Method::POST,
            e.sapi("/instances"),
            Some(json!({"service_uuid": manatee, "uuid": uuid,
                        "params": {"alias": "manatee9", "server_uuid": cn}})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(e.dc.instance(uuid).is_none(), "the record is deleted");
    e.srv.shutdown().await;
}
