//! Contract tests: the simulated SAPI, VMAPI, CNAPI and IMGAPI answer over
//! real HTTP with the status codes, fields and error bodies of the real
//! services (research/triton-apis.md sections 0-4 and 7).

use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sim::dc::{
    Api, Datacenter, DcConfig, DcEvent, FaultRule, SdcScenario, SeededSdc, SvcAction, VmEventKind,
    seed_sdc,
};
use sim::http::SimServers;
use tokio::sync::broadcast;

struct Env {
    dc: Datacenter,
    seeded: SeededSdc,
    srv: SimServers,
    http: Client,
}

impl Env {
    async fn new() -> Env {
        Self::with_scale(1.0 / 6000.0, SdcScenario::default()).await
    }

    async fn with_scale(scale: f64, sc: SdcScenario) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dc = Datacenter::new(DcConfig {
            time_scale: scale,
            ..Default::default()
        });
        let seeded = seed_sdc(&dc, &sc);
        let srv = SimServers::start(dc.clone()).await.expect("bind loopback");
        Env {
            dc,
            seeded,
            srv,
            http: Client::new(),
        }
    }

    fn sapi(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().sapi)
    }
    fn vmapi(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().vmapi)
    }
    fn cnapi(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().cnapi)
    }
    fn imgapi(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().imgapi)
    }
    fn control(&self, path: &str) -> String {
        format!("{}{path}", self.srv.urls().control)
    }

    async fn get(&self, url: String) -> (StatusCode, Value) {
        body(
            self.http
                .get(url)
                .header("accept-version", "~2")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        b: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rq = self
            .http
            .request(method, url)
            .header("accept-version", "~2");
        if let Some(b) = b {
            rq = rq.json(&b);
        }
        body(rq.send().await.unwrap()).await
    }

    async fn post(&self, url: String, b: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, url, Some(b)).await
    }

    async fn put(&self, url: String, b: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, url, Some(b)).await
    }

    async fn delete(&self, url: String) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, url, None).await
    }

    async fn wait_job(&self, job: &str) -> Value {
        let (s, j) = self.get(self.vmapi(&format!("/jobs/{job}/wait"))).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        j
    }

    async fn vm(&self, uuid: &str) -> Value {
        let (s, v) = self.get(self.vmapi(&format!("/vms/{uuid}"))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

/// Status and JSON body (`Null` when empty).
async fn body(r: Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (s, v)
}

const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

async fn expect_event(
    rx: &mut broadcast::Receiver<DcEvent>,
    what: &str,
    mut pred: impl FnMut(&DcEvent) -> bool,
) -> DcEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream broke waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn vm_event(kind: VmEventKind, vm: &str) -> impl FnMut(&DcEvent) -> bool + '_ {
    move |e| matches!(e, DcEvent::Vm(v) if v.kind == kind && v.zone.vm.uuid == vm)
}

// ---------------------------------------------------------------------------
// SAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sapi_ping_mode_headers_and_versions() {
    let e = Env::new().await;
    let r = e.http.get(e.sapi("/ping")).send().await.unwrap();
    assert_eq!(r.headers()["server"], "sapi/2.1.3");
    assert!(r.headers().contains_key("x-request-id"));
    assert!(r.headers().contains_key("x-server-name"));
    let (s, v) = body(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"mode": "full", "storType": "MorayLocalStorage", "storAvailable": true})
    );

    assert_eq!(
        e.get(e.sapi("/mode")).await,
        (StatusCode::OK, json!("full"))
    );
    let (s, v) = e.post(e.sapi("/mode?mode=proto"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "InvalidArgument", "message": "invalid mode: proto"})
    );
    let (s, v) = e.post(e.sapi("/mode"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["code"], "MissingParameter");
    let (s, _) = e.post(e.sapi("/mode"), json!({"mode": "full"})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let r = e
        .http
        .get(e.sapi("/ping"))
        .header("accept-version", "~3")
        .send()
        .await
        .unwrap();
    let (s, v) = body(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "InvalidVersion");

    // Unknown route and method: restify's bodies.
    let (s, v) = e.get(e.sapi("/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": "/nope does not exist"})
    );
    let (s, v) = e
        .send(reqwest::Method::PATCH, e.sapi("/applications"), None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["code"], "MethodNotAllowedError");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_application_crud_update_semantics_and_errors() {
    let e = Env::new().await;
    let (s, v) = e
        .get(e.sapi("/applications?name=sdc&include_master=true"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["uuid"], json!(e.seeded.app_uuid));
    assert_eq!(v[0]["owner_uuid"], json!(e.seeded.owner_uuid));
    assert!(v[0]["metadata"]["ZK_SERVERS"].as_array().unwrap().len() == 3);
    assert_eq!(
        e.get(e.sapi("/applications?name=nope")).await,
        (StatusCode::OK, json!([]))
    );

    let (s, v) = e.get(e.sapi(&format!("/applications/{NOBODY}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": format!("no such application: {NOBODY}")})
    );

    let (s, v) = e.post(e.sapi("/applications"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "MissingParameter", "message": "missing required keys: name, owner_uuid"})
    );

    let (s, app) = e
        .post(
            e.sapi("/applications"),
            json!({"name": "manta", "owner_uuid": e.seeded.owner_uuid, "master": true,
                   "metadata": {"A": 1, "B": 2}, "params": {"delegate_dataset": true}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{app}");
    assert_eq!(app["master"], true);
    let uuid = app["uuid"].as_str().unwrap().to_string();
    let url = e.sapi(&format!("/applications/{uuid}"));

    let (_, v) = e.put(url.clone(), json!({"metadata": {"C": 3}})).await;
    assert_eq!(v["metadata"], json!({"A": 1, "B": 2, "C": 3}));
    let (_, v) = e
        .put(
            url.clone(),
            json!({"action": "DELETE", "metadata": {"A": null}}),
        )
        .await;
    assert_eq!(v["metadata"], json!({"B": 2, "C": 3}));
    let (_, v) = e
        .put(
            url.clone(),
            json!({"action": "replace", "metadata": {"Z": true}}),
        )
        .await;
    assert_eq!(v["metadata"], json!({"Z": true}));
    assert_eq!(v["params"], json!({"delegate_dataset": true}));

    let (s, v) = e.put(url.clone(), json!({"action": "merge"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v, json!({"code": "InvalidArgument", "message": ""}));

    // PUT on a missing object: a 500 with no code, as SAPI's model throws.
    let (s, v) = e
        .put(e.sapi(&format!("/applications/{NOBODY}")), json!({}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"message": format!("updateObject failed: no record for bucket sapi_applications object {NOBODY}")})
    );

    assert_eq!(
        e.delete(url.clone()).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    // Deleting a missing application: 404 with an empty body.
    assert_eq!(e.delete(url).await, (StatusCode::NOT_FOUND, Value::Null));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_service_type_follows_accept_version() {
    let e = Env::new().await;
    let list = format!("/services?application_uuid={}", e.seeded.app_uuid);
    let r = e.http.get(e.sapi(&list)).send().await.unwrap();
    let (_, v1) = body(r).await;
    assert_eq!(v1.as_array().unwrap().len(), 3);
    assert!(
        v1[0].get("type").is_none(),
        "no type below 2.0.0: {}",
        v1[0]
    );
    let (_, v2) = e.get(e.sapi(&list)).await;
    assert_eq!(v2[0]["type"], "vm");

    let (s, agent) = e
        .post(
            e.sapi("/services"),
            json!({"name": "vm-agent", "application_uuid": e.seeded.app_uuid, "type": "agent"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(agent["type"], "agent");
    // Version ~1 forces type=vm on lists; ~2 honours the filter.
    let r = e.http.get(e.sapi(&list)).send().await.unwrap();
    assert_eq!(body(r).await.1.as_array().unwrap().len(), 3);
    let (_, v) = e.get(e.sapi(&format!("{list}&type=agent"))).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(e.get(e.sapi(&list)).await.1.as_array().unwrap().len(), 4);

    let (s, v) = e
        .post(
            e.sapi("/services"),
            json!({"name": "x", "application_uuid": e.seeded.app_uuid, "type": "foo"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v, json!({"message": "service type is invalid: foo"}));
    let (s, v) = e
        .post(
            e.sapi("/services"),
            json!({"name": "x", "application_uuid": NOBODY}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], format!("no such application: {NOBODY}"));
    let (s, v) = e.get(e.sapi(&format!("/services/{NOBODY}"))).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::NOT_FOUND, json!("ResourceNotFound"))
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_create_instance_provisions_a_zone_synchronously() {
    let e = Env::new().await;
    let manatee = &e.seeded.services["manatee"];
    let cn = &e.seeded.computes[0];
    let mut rx = e.dc.subscribe();

    let (s, v) = e.post(e.sapi("/instances"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "MissingParameter", "message": "missing required keys: service_uuid"})
    );
    let (s, v) = e
        .post(e.sapi("/instances"), json!({"service_uuid": NOBODY}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], format!("no such service: {NOBODY}"));

    let (s, inst) = e
        .post(
            e.sapi("/instances"),
            json!({"service_uuid": manatee, "master": true,
                   "params": {"alias": "manatee9", "server_uuid": cn},
                   "metadata": {"SHARD": "sdc", "EXTRA": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inst}");
    assert_eq!(inst["type"], "vm");
    assert!(inst.get("job_uuid").is_none());
    let uuid = inst["uuid"].as_str().unwrap();

    // The zone exists and runs by the time SAPI answered.
    let vm = e.vm(uuid).await;
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["alias"], "manatee9");
    assert_eq!(vm["server_uuid"], json!(cn));
    assert_eq!(vm["image_uuid"], json!(e.seeded.images["manatee"]));
    assert_eq!(vm["owner_uuid"], json!(e.seeded.owner_uuid));
    assert_eq!(vm["brand"], "joyent-minimal");
    assert_eq!(vm["tags"]["smartdc_role"], "manatee");
    assert_eq!(vm["datasets"], json!([format!("zones/{uuid}/data")]));
    assert_eq!(vm["nics"][0]["nic_tag"], "admin");
    assert_eq!(vm["nics"][0]["primary"], true);
    // Only pass-through keys reach customer_metadata.
    assert!(vm["customer_metadata"].get("SAPI_URL").is_some());
    assert!(vm["customer_metadata"].get("SHARD").is_none());

    let ev = expect_event(
        &mut rx,
        "provisioned",
        vm_event(VmEventKind::Provisioned, uuid),
    )
    .await;
    let DcEvent::Vm(ev) = ev else { unreachable!() };
    let info = ev.zone.instance.expect("instance info");
    assert_eq!(info.service_name, "manatee");
    assert_eq!(info.metadata["MANATEE_SHARD_PATH"], "/manatee/sdc");
    assert_eq!(info.metadata["EXTRA"], "x");

    let (s, got) = e.get(e.sapi(&format!("/instances/{uuid}"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["params"]["alias"], "manatee9");
    let (_, list) = e
        .get(e.sapi(&format!("/instances?service_uuid={manatee}")))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    let (s, payload) = e.get(e.sapi(&format!("/instances/{uuid}/payload"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(payload["brand"], "joyent-minimal");
    assert_eq!(payload["networks"], json!([{"name": "admin"}]));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_async_create_returns_a_job_that_succeeds() {
    let e = Env::new().await;
    let (s, inst) = e
        .post(
            e.sapi("/instances?async=true"),
            json!({"service_uuid": e.seeded.services["moray"], "params": {"alias": "moray7"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let job = inst["job_uuid"].as_str().expect("job_uuid with async=true");
    let j = e.wait_job(job).await;
    assert_eq!(j["execution"], "succeeded");
    assert_eq!(j["params"]["task"], "provision");
    assert_eq!(j["params"]["vm_uuid"], inst["uuid"]);
    // No server_uuid given: placed by the allocator on a CN, not the headnode.
    let vm = e.vm(inst["uuid"].as_str().unwrap()).await;
    assert_eq!(vm["state"], "running");
    assert!(
        e.seeded
            .computes
            .contains(&vm["server_uuid"].as_str().unwrap().to_string())
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_upgrade_reprovisions_and_keeps_delegated_data() {
    let e = Env::new().await;
    let m0 = e.seeded.instance("manatee0").to_string();
    let before_vm = e.vm(&m0).await;
    let (_, before_inst) = e.get(e.sapi(&format!("/instances/{m0}"))).await;
    let next = e.seeded.images["manatee-next"].clone();
    let mut rx = e.dc.subscribe();

    let (s, v) = e
        .put(e.sapi(&format!("/instances/{m0}/upgrade")), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "MissingParameter", "message": "missing image_uuid"})
    );

    let (s, v) = e
        .put(
            e.sapi(&format!("/instances/{m0}/upgrade")),
            json!({"image_uuid": next}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // SAPI returns the instance as it was; it does not record the image.
    assert_eq!(v, before_inst);

    let after = e.vm(&m0).await;
    assert_eq!(after["image_uuid"], json!(next));
    assert_eq!(after["state"], "running");
    assert_eq!(after["sim_data"]["id"], before_vm["sim_data"]["id"]);
    assert_eq!(
        after["sim_data"]["images"],
        json!([e.seeded.images["manatee"], next])
    );
    let ev = expect_event(
        &mut rx,
        "reprovisioning",
        vm_event(VmEventKind::Reprovisioning, &m0),
    )
    .await;
    let DcEvent::Vm(ev) = ev else { unreachable!() };
    assert_eq!(
        ev.zone.vm.image_uuid.as_deref(),
        Some(e.seeded.images["manatee"].as_str())
    );
    let ev = expect_event(
        &mut rx,
        "reprovisioned",
        vm_event(VmEventKind::Reprovisioned, &m0),
    )
    .await;
    let DcEvent::Vm(ev) = ev else { unreachable!() };
    assert_eq!(ev.zone.vm.image_uuid.as_deref(), Some(next.as_str()));
    assert_eq!(
        ev.zone.data.id,
        before_vm["sim_data"]["id"].as_str().unwrap()
    );

    // A zone without a delegated dataset loses its data on reprovision.
    let moray0 = e.seeded.instance("moray0").to_string();
    let before = e.vm(&moray0).await;
    let (s, _) = e
        .put(
            e.sapi(&format!("/instances/{moray0}/upgrade")),
            json!({"image_uuid": e.seeded.images["moray"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(
        e.vm(&moray0).await["sim_data"]["id"],
        before["sim_data"]["id"]
    );

    let (s, v) = e
        .put(
            e.sapi(&format!("/instances/{NOBODY}/upgrade")),
            json!({"image_uuid": next}),
        )
        .await;
    assert_eq!(
        (s, v["message"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!(format!("no such instance: {NOBODY}"))
        )
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_failed_provision_is_500_and_removes_the_instance() {
    let e = Env::new().await;
    e.dc.fail_next_jobs(1, Some("provision"), "cn-agent timed out");
    let uuid = "11111111-2222-4333-8444-555555555555";
    let (s, v) = e
        .post(
            e.sapi("/instances"),
            json!({"service_uuid": e.seeded.services["binder"], "uuid": uuid,
                   "params": {"alias": "binder9"}}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"code": "ProvisionFailedError", "message": "cn-agent timed out"})
    );
    assert_eq!(
        e.get(e.sapi(&format!("/instances/{uuid}"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(e.vm(uuid).await["state"], "failed");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_delete_instance_destroys_the_zone() {
    let e = Env::new().await;
    let b2 = e.seeded.instance("binder2").to_string();
    let mut rx = e.dc.subscribe();
    assert_eq!(
        e.delete(e.sapi(&format!("/instances/{b2}"))).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    let vm = e.vm(&b2).await;
    assert_eq!(vm["state"], "destroyed");
    assert!(vm["destroyed"].is_string());
    expect_event(&mut rx, "stopping", vm_event(VmEventKind::Stopping, &b2)).await;
    expect_event(&mut rx, "destroyed", vm_event(VmEventKind::Destroyed, &b2)).await;
    let (s, v) = e.delete(e.sapi(&format!("/instances/{b2}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": format!("no such instance: {b2}")})
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_update_instance_and_configs_etag() {
    let e = Env::new().await;
    let m1 = e.seeded.instance("manatee1").to_string();
    let (s, v) = e
        .put(
            e.sapi(&format!("/instances/{m1}")),
            json!({"metadata": {"ONE_NODE_WRITE_MODE": true}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["metadata"]["ONE_NODE_WRITE_MODE"], true);
    let r = e
        .http
        .get(e.sapi(&format!("/configs/{m1}")))
        .send()
        .await
        .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let (s, cfg) = body(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cfg["metadata"]["ONE_NODE_WRITE_MODE"], true);
    assert_eq!(cfg["metadata"]["ZONE_UUID"], json!(m1));
    assert_eq!(cfg["metadata"]["SHARD"], "sdc");
    let r = e
        .http
        .get(e.sapi(&format!("/configs/{m1}")))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    e.srv.shutdown().await;
}

// ---------------------------------------------------------------------------
// VMAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn vmapi_list_filters_paging_and_count() {
    let e = Env::new().await;
    let owner = &e.seeded.owner_uuid;
    let r = e
        .http
        .get(e.vmapi(&format!("/vms?state=active&owner_uuid={owner}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-joyent-resource-count"], "8");
    assert_eq!(r.headers()["server"], "vmapi/9.16.0");
    let (_, all) = body(r).await;
    let uuids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["uuid"].as_str().unwrap())
        .collect();
    let mut sorted = uuids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(uuids, sorted, "default sort is uuid DESC");

    let (_, v) = e.get(e.vmapi("/vms?tag.smartdc_role=manatee")).await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (_, v) = e
        .get(e.vmapi("/vms?tag.smartdc_role=*&alias=binder1"))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["alias"], "binder1");
    let cn0 = &e.seeded.computes[0];
    let (_, v) = e.get(e.vmapi(&format!("/vms?server_uuid={cn0}"))).await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|vm| vm["server_uuid"] == json!(cn0))
    );

    // sdc-clients paging: limit/offset until a short page; [] past the end.
    let r = e
        .http
        .get(e.vmapi("/vms?limit=3&offset=6"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-joyent-resource-count"], "8");
    assert_eq!(body(r).await.1.as_array().unwrap().len(), 2);
    assert_eq!(e.get(e.vmapi("/vms?limit=3&offset=9")).await.1, json!([]));

    let two = format!("{},{}", uuids[0], uuids[1]);
    let (_, v) = e
        .get(e.vmapi(&format!("/vms?uuids={two}&fields=uuid,state")))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0].as_object().unwrap().len(), 2);

    // HEAD answers the count without a body.
    let r = e
        .http
        .head(e.vmapi("/vms?state=running"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-joyent-resource-count"], "8");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn vmapi_strict_filters_reject_unknown_and_bad_params() {
    let e = Env::new().await;
    let (s, v) = e.get(e.vmapi("/vms?foo=bar")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "ValidationFailed", "message": "Invalid Parameters",
               "errors": [{"field": "foo", "code": "Invalid", "message": "Invalid parameter"}]})
    );
    let (s, v) = e.get(e.vmapi("/vms?state=foobar")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["errors"][0]["message"],
        "Must be one of: running, stopped, active, destroyed"
    );
    let (_, v) = e.get(e.vmapi("/vms?limit=0")).await;
    assert_eq!(
        v["errors"][0]["message"],
        "Not a valid number: number must be >= 1 and <= 1000"
    );
    let (_, v) = e.get(e.vmapi("/vms?owner_uuid=invalid_uuid")).await;
    assert_eq!(
        v["errors"][0],
        json!({"field": "owner_uuid", "code": "Invalid", "message": "Invalid UUID"})
    );
    let (_, v) = e.get(e.vmapi("/vms?alias=,")).await;
    assert_eq!(v["errors"][0]["field"], "alias");
    let (_, v) = e.get(e.vmapi("/vms?fields=foo")).await;
    assert_eq!(v["errors"][0]["message"], "Invalid values: foo");

    let (s, v) = e.get(e.vmapi(&format!("/vms/{NOBODY}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": "VM not found"})
    );
    let m0 = e.seeded.instance("manatee0");
    let (s, _) = e
        .get(e.vmapi(&format!("/vms/{m0}?owner_uuid={NOBODY}")))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = e.get(e.vmapi(&format!("/jobs/{NOBODY}"))).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::NOT_FOUND, json!("ResourceNotFound"))
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn vmapi_stop_start_jobs_progress_and_emit_events() {
    // Slower clock so the queued/running phases are observable.
    let e = Env::with_scale(1.0 / 100.0, SdcScenario::default()).await;
    let moray0 = e.seeded.instance("moray0").to_string();
    let mut rx = e.dc.subscribe();

    let (s, v) = e.post(e.vmapi(&format!("/vms/{moray0}")), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["errors"][0],
        json!({"field": "action", "code": "MissingParameter"})
    );
    let (s, v) = e
        .post(e.vmapi(&format!("/vms/{moray0}?action=bogus")), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["errors"][0]["code"], "Invalid");

    let r = e
        .http
        .post(e.vmapi(&format!("/vms/{moray0}?action=stop")))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("workflow-api"));
    let (s, v) = body(r).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v["vm_uuid"], json!(moray0));
    let job = v["job_uuid"].as_str().unwrap().to_string();
    let (_, j) = e.get(e.vmapi(&format!("/jobs/{job}"))).await;
    assert!(
        ["queued", "running"].contains(&j["execution"].as_str().unwrap()),
        "{j}"
    );
    assert_eq!(j["name"], "stop-7.0.9");

    let j = e.wait_job(&job).await;
    assert_eq!(j["execution"], "succeeded");
    assert_eq!(j["params"]["task"], "stop");
    assert!(j["chain_results"].as_array().unwrap().len() >= 2);
    assert_eq!(e.vm(&moray0).await["state"], "stopped");
    expect_event(
        &mut rx,
        "stopping",
        vm_event(VmEventKind::Stopping, &moray0),
    )
    .await;
    expect_event(&mut rx, "stopped", vm_event(VmEventKind::Stopped, &moray0)).await;

    // Stopping a stopped VM fails in the job unless idempotent.
    let (_, v) = e
        .post(e.vmapi(&format!("/vms/{moray0}?action=stop")), json!({}))
        .await;
    let j = e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    assert_eq!(j["execution"], "failed");
    let (_, v) = e
        .post(
            e.vmapi(&format!("/vms/{moray0}?action=stop&idempotent=true")),
            json!({}),
        )
        .await;
    assert_eq!(
        e.wait_job(v["job_uuid"].as_str().unwrap()).await["execution"],
        "succeeded"
    );

    // sync=true answers once the job is done.
    let (s, _) = e
        .post(
            e.vmapi(&format!("/vms/{moray0}?action=start&sync=true")),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(e.vm(&moray0).await["state"], "running");
    expect_event(&mut rx, "started", vm_event(VmEventKind::Started, &moray0)).await;

    let (_, jobs) = e
        .get(e.vmapi(&format!("/vms/{moray0}/jobs?task=stop")))
        .await;
    assert_eq!(jobs.as_array().unwrap().len(), 3);
    e.srv.shutdown().await;
}

#[tokio::test]
async fn vmapi_reprovision_update_delete_and_failed_jobs() {
    let e = Env::new().await;
    let m2 = e.seeded.instance("manatee2").to_string();
    let before = e.vm(&m2).await;
    let next = e.seeded.images["manatee-next"].clone();

    let (s, v) = e
        .post(e.vmapi(&format!("/vms/{m2}?action=reprovision")), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["errors"][0],
        json!({"field": "image_uuid", "code": "MissingParameter"})
    );
    let (s, v) = e
        .post(
            e.vmapi(&format!("/vms/{m2}?action=reprovision")),
            json!({"image_uuid": next}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let j = e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    assert_eq!(j["name"], "reprovision-7.0.4");
    assert_eq!(j["params"]["image_uuid"], json!(next));
    let after = e.vm(&m2).await;
    assert_eq!(after["image_uuid"], json!(next));
    assert_eq!(after["sim_data"]["id"], before["sim_data"]["id"]);
    assert_eq!(after["datasets"], before["datasets"]);

    // update replaces tags wholesale.
    let (_, v) = e
        .post(
            e.vmapi(&format!("/vms/{m2}?action=update")),
            json!({"alias": "manatee2b", "tags": {"smartdc_role": "manatee"}}),
        )
        .await;
    e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    let vm = e.vm(&m2).await;
    assert_eq!(vm["alias"], "manatee2b");
    assert_eq!(vm["tags"], json!({"smartdc_role": "manatee"}));

    // An injected failure: the job fails, the error is in chain_results.
    e.dc.fail_next_jobs(1, None, "vmadm reboot: timed out");
    let (_, v) = e
        .post(e.vmapi(&format!("/vms/{m2}?action=reboot")), json!({}))
        .await;
    let j = e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    assert_eq!(j["execution"], "failed");
    let last = j["chain_results"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["error"]["message"], "vmadm reboot: timed out");
    assert_eq!(e.vm(&m2).await["state"], "running");

    // Reprovision to an unknown image fails in the job, VM untouched.
    let (_, v) = e
        .post(
            e.vmapi(&format!("/vms/{m2}?action=reprovision")),
            json!({"image_uuid": NOBODY}),
        )
        .await;
    assert_eq!(
        e.wait_job(v["job_uuid"].as_str().unwrap()).await["execution"],
        "failed"
    );
    assert_eq!(e.vm(&m2).await["image_uuid"], json!(next));

    let (s, v) = e.delete(e.vmapi(&format!("/vms/{m2}"))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    let vm = e.vm(&m2).await;
    assert_eq!(vm["state"], "destroyed");
    let (_, v) = e.get(e.vmapi("/vms?state=destroyed")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, st) = e
        .get(e.vmapi(&format!("/statuses?uuids={m2},{NOBODY}")))
        .await;
    let mut want = serde_json::Map::new();
    want.insert(m2.clone(), json!("destroyed"));
    assert_eq!(st, Value::Object(want));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn vmapi_create_vm_directly() {
    // Slow enough that the VM is still provisioning when we poke it.
    let e = Env::with_scale(1.0 / 100.0, SdcScenario::default()).await;
    let (s, v) = e
        .post(e.vmapi("/vms"), json!({"brand": "joyent-minimal"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["owner_uuid", "image_uuid", "networks"]);
    let (s, v) = e
        .post(
            e.vmapi("/vms"),
            json!({"owner_uuid": e.seeded.owner_uuid, "brand": "joyent-minimal",
                   "image_uuid": e.seeded.images["moray"], "alias": "scratch0",
                   "networks": [{"name": "admin"}, {"name": "external", "primary": true}]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let uuid = v["vm_uuid"].as_str().unwrap().to_string();
    assert_eq!(e.vm(&uuid).await["state"], "provisioning");
    let (s, v2) = e
        .post(e.vmapi(&format!("/vms/{uuid}?action=stop")), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v2["code"], "UnallocatedVMError");
    e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    let vm = e.vm(&uuid).await;
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["nics"][1]["primary"], true);
    assert!(vm["nics"][0].get("primary").is_none());
    e.srv.shutdown().await;
}

// ---------------------------------------------------------------------------
// CNAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cnapi_servers_extras_filters_and_strictness() {
    let e = Env::new().await;
    let (s, v) = e.get(e.cnapi("/servers")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 3);
    let first = &v[0];
    assert_eq!(first["status"], "running");
    assert!(first.get("sysinfo").is_none() && first.get("vms").is_none());

    let (_, v) = e
        .get(e.cnapi("/servers?extras=sysinfo,agents&headnode=true"))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let hn = &v[0];
    assert_eq!(hn["hostname"], "headnode");
    assert_eq!(hn["datacenter"], "dc0");
    let nics = &hn["sysinfo"]["Network Interfaces"];
    let nic = nics.as_object().unwrap().values().next().unwrap();
    assert_eq!(nic["NIC Names"], json!(["admin"]));
    assert!(nic["ip4addr"].as_str().unwrap().starts_with("10.99.99."));
    assert!(hn["agents"].as_array().unwrap().len() >= 2);

    let (s, v) = e.get(e.cnapi("/servers?foo=1")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "InvalidArgument", "message": "foo is not an explicitly defined parameter"})
    );
    let (s, v) = e.get(e.cnapi("/servers?setup=maybe")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["code"], "InvalidParameters");
    assert_eq!(v["errors"][0]["field"], "setup");
    let (_, v) = e.get(e.cnapi("/servers?limit=1&offset=1")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);

    let hn_uuid = &e.seeded.headnodes[0];
    let (s, v) = e.get(e.cnapi(&format!("/servers/{hn_uuid}"))).await;
    assert_eq!(s, StatusCode::OK);
    let m0 = e.seeded.instance("manatee0");
    assert!(v["vms"].get(m0).is_some(), "manatee0 runs on the headnode");
    assert!(v["sysinfo"].is_object() && v["memory_total_bytes"].is_u64());
    let server: wire::apis::Server = serde_json::from_value(v).unwrap();
    assert!(server.admin_ip().unwrap().starts_with("10.99.99."));

    let (s, v) = e.get(e.cnapi(&format!("/servers/{NOBODY}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": format!("Server {NOBODY} not found")})
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn cnapi_setup_runs_a_job_then_is_a_no_op() {
    let sc = SdcScenario {
        unsetup_computes: 1,
        ..Default::default()
    };
    let e = Env::with_scale(1.0 / 6000.0, sc).await;
    let u = e.seeded.unsetup[0].clone();
    let (_, v) = e.get(e.cnapi("/servers?setup=false")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, v) = e
        .put(
            e.cnapi(&format!("/servers/{u}/setup")),
            json!({"hostname": "cn9"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let j = e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    assert_eq!(j["execution"], "succeeded");
    let (_, srv) = e.get(e.cnapi(&format!("/servers/{u}"))).await;
    assert_eq!(srv["setup"], true);
    assert_eq!(srv["hostname"], "cn9");
    assert_eq!(srv["sysinfo"]["Setup"], "true");
    assert_eq!(
        e.put(e.cnapi(&format!("/servers/{u}/setup")), json!({}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn cnapi_execute_svcadm_in_a_zone_is_recorded_and_published() {
    let e = Env::new().await;
    let hn = e.seeded.headnodes[0].clone();
    let m0 = e.seeded.instance("manatee0").to_string();
    let mut rx = e.dc.subscribe();
    let script = format!(
        "#!/bin/bash\nset -o errexit\n/usr/sbin/zlogin {m0} \"svcadm disable -s manatee-sitter\"\n"
    );
    let (s, v) = e
        .post(
            e.cnapi(&format!("/servers/{hn}/execute")),
            json!({"script": script, "json": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"stdout": "", "stderr": "", "exitCode": 0}));
    let ev = expect_event(&mut rx, "exec", |e| matches!(e, DcEvent::Exec(_))).await;
    let DcEvent::Exec(ev) = ev else {
        unreachable!()
    };
    assert_eq!(ev.zone.as_deref(), Some(m0.as_str()));
    let sv = ev.svcadm.expect("svcadm parsed");
    assert_eq!(
        (sv.action, sv.fmri.as_str()),
        (SvcAction::Disable, "manatee-sitter")
    );
    assert_eq!(
        e.dc.smf_state(&m0, "manatee-sitter").as_deref(),
        Some("disabled")
    );

    // Without json: trimmed stdout as the body.
    let script = format!("#!/bin/bash\nsvcs -z {m0} -H -o state manatee-sitter\n");
    let (s, v) = e
        .post(
            e.cnapi(&format!("/servers/{hn}/execute")),
            json!({"script": script}),
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!("disabled")));
    assert_eq!(e.dc.executions().len(), 2);

    // A zone that is not on this server: non-zero exit -> 500 without json.
    let cn_zone = e.seeded.instance("manatee1");
    let script = format!("#!/bin/bash\nzlogin {cn_zone} svcadm enable manatee-sitter\n");
    let (s, v) = e
        .post(
            e.cnapi(&format!("/servers/{hn}/execute")),
            json!({"script": script}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"code": "InternalError", "message": "Error executing on remote system"})
    );
    let (s, v) = e
        .post(
            e.cnapi(&format!("/servers/{hn}/execute")),
            json!({"script": "svcs"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::CONFLICT, json!("InvalidParameters"))
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn temporary_svcadm_disable_is_forgotten_when_the_zone_reboots() {
    let e = Env::new().await;
    let hn = e.seeded.headnodes[0].clone();
    let m0 = e.seeded.instance("manatee0").to_string();
    let script = format!(
        "#!/bin/bash\nsvcadm -z {m0} disable -t manatee-sitter\nsvcadm -z {m0} disable registrar\n"
    );
    let (s, _) = e
        .post(
            e.cnapi(&format!("/servers/{hn}/execute")),
            json!({"script": script}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        e.dc.smf_state(&m0, "svc:/manatee-sitter:default")
            .as_deref(),
        Some("disabled")
    );
    let (_, v) = e
        .post(
            e.vmapi(&format!("/vms/{m0}?action=reboot&sync=true")),
            json!({}),
        )
        .await;
    assert_eq!(
        e.dc.job(v["job_uuid"].as_str().unwrap()).unwrap().execution,
        wire::apis::JobExecution::Succeeded
    );
    assert_eq!(
        e.dc.smf_state(&m0, "manatee-sitter").as_deref(),
        Some("online")
    );
    assert_eq!(
        e.dc.smf_state(&m0, "registrar").as_deref(),
        Some("disabled")
    );
    e.srv.shutdown().await;
}

// ---------------------------------------------------------------------------
// IMGAPI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn imgapi_list_filters_marker_and_get() {
    let e = Env::new().await;
    let (s, v) = e.get(e.imgapi("/images")).await;
    assert_eq!(s, StatusCode::OK);
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 4);
    let published: Vec<&str> = all
        .iter()
        .map(|i| i["published_at"].as_str().unwrap())
        .collect();
    let mut sorted = published.clone();
    sorted.sort();
    assert_eq!(published, sorted);

    // manta-adm style: owner_uuid and tags.* are ignored, name=~ substring.
    let (_, v) = e
        .get(e.imgapi(&format!(
            "/images?name=~manatee&state=active&owner_uuid={NOBODY}&tags.smartdc_service=true"
        )))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = e.get(e.imgapi("/images?name=sdc-moray")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = e
        .get(e.imgapi("/images?tag.smartdc_service=true&type=zone-dataset"))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 4);
    let (_, v) = e.get(e.imgapi("/images?type=!zone-dataset")).await;
    assert_eq!(v, json!([]));

    // sdc-clients paging: limit + inclusive marker.
    let (_, p1) = e.get(e.imgapi("/images?limit=2")).await;
    let marker = p1[1]["uuid"].as_str().unwrap();
    let (_, p2) = e
        .get(e.imgapi(&format!("/images?limit=2&marker={marker}")))
        .await;
    assert_eq!(p2[0]["uuid"], json!(marker));
    let (s, v) = e.get(e.imgapi("/images?limit=5000")).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("InvalidParameter"))
    );

    let id = &e.seeded.images["manatee"];
    let (_, img) = e.get(e.imgapi(&format!("/images/{id}"))).await;
    let m: wire::apis::ImageManifest = serde_json::from_value(img).unwrap();
    assert_eq!(m.name, "sdc-manatee");
    assert_eq!(m.build_stamp(), Some("20230601T000000Z"));
    let (s, v) = e.get(e.imgapi(&format!("/images/{NOBODY}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "ResourceNotFound");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn imgapi_import_add_file_activate_like_create_topology() {
    let e = Env::new().await;
    let uuid = "8b2c5f3a-0000-4000-8000-000000000001";
    let data = b"a tarball of a leveldb hash ring".to_vec();
    let sha1 = {
        // sha1 of `data`, computed by the service on upload.
        let (s, v) = e.post(
            e.imgapi(&format!("/images/{uuid}?action=import")),
            json!({"v": 2, "uuid": uuid, "owner": e.seeded.owner_uuid, "name": "manta-hash-ring",
                   "version": "20240101T000000Z", "state": "active", "public": false,
                   "published_at": "2024-01-01T00:00:00.000Z", "type": "other", "os": "other",
                   "files": [{"sha1": "x", "size": 1, "compression": "gzip"}],
                   "description": "Manta Hash Ring"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "unactivated");
        assert_eq!(v["files"], json!([]));
        let (s, v) = e
            .post(
                e.imgapi(&format!("/images/{uuid}?action=import")),
                json!({"uuid": uuid, "name": "x", "version": "1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(v["code"], "ImageUuidAlreadyExists");
        let (s, v) = e
            .post(
                e.imgapi(&format!("/images/{uuid}?action=activate")),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["code"], "NoActivationNoFile");

        let r = e
            .http
            .put(e.imgapi(&format!(
                "/images/{uuid}/file?compression=gzip&sha1=deadbeef"
            )))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        let (s, v) = body(r).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["code"], "Upload");
        let r = e
            .http
            .put(e.imgapi(&format!("/images/{uuid}/file?compression=gzip")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        let (s, v) = body(r).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["files"][0]["size"], data.len());
        v["files"][0]["sha1"].as_str().unwrap().to_string()
    };
    assert_eq!(sha1.len(), 40);

    let (s, v) = e
        .post(
            e.imgapi(&format!("/images/{uuid}?action=activate")),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "active");
    assert_eq!(v["published_at"], "2024-01-01T00:00:00.000Z");
    let (s, v) = e
        .post(
            e.imgapi(&format!("/images/{uuid}?action=activate")),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("ImageAlreadyActivated")
        )
    );
    let r = e
        .http
        .put(e.imgapi(&format!("/images/{uuid}/file?compression=gzip&sha1={sha1}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await.1["code"], "ImageFilesImmutable");

    let got = e
        .http
        .get(e.imgapi(&format!("/images/{uuid}/file")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);

    let (_, v) = e
        .post(
            e.imgapi(&format!("/images/{uuid}?action=disable")),
            json!({}),
        )
        .await;
    assert_eq!(
        (v["state"].clone(), v["disabled"].clone()),
        (json!("disabled"), json!(true))
    );
    let (s, v) = e
        .post(
            e.imgapi(&format!("/images/{uuid}?action=frobnicate")),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("InvalidParameter"))
    );
    assert_eq!(
        e.delete(e.imgapi(&format!("/images/{uuid}"))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        e.get(e.imgapi(&format!("/images/{uuid}"))).await.0,
        StatusCode::NOT_FOUND
    );
    e.srv.shutdown().await;
}

// ---------------------------------------------------------------------------
// Faults and control
// ---------------------------------------------------------------------------

#[tokio::test]
async fn injected_http_errors_fire_then_recover() {
    let e = Env::new().await;
    let (s, v) = e
        .post(
            e.control("/faults"),
            json!({"api": "vmapi", "method": "GET", "path": "/vms", "status": 503, "count": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["id"].is_u64());
    for _ in 0..2 {
        let (s, v) = e.get(e.vmapi("/vms")).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            v,
            json!({"code": "ServiceUnavailableError", "message": "injected fault"})
        );
    }
    assert_eq!(e.get(e.vmapi("/vms")).await.0, StatusCode::OK);
    // Other endpoints were never affected.
    assert_eq!(e.get(e.vmapi("/ping")).await.0, StatusCode::OK);
    assert_eq!(e.get(e.control("/faults")).await.1, json!([]));

    // Library handle: an error with a custom code on one SAPI path.
    let id = e.dc.add_fault(
        FaultRule::error(Api::Sapi, "PUT", "/instances/*/upgrade", 500, 1)
            .with_message("ReprovisionFailedError", "boom"),
    );
    let m0 = e.seeded.instance("manatee0");
    let (s, v) = e
        .put(
            e.sapi(&format!("/instances/{m0}/upgrade")),
            json!({"image_uuid": e.seeded.images["manatee"]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "ReprovisionFailedError", "message": "boom"})
        )
    );
    assert!(!e.dc.remove_fault(id), "spent rules are gone");

    // Latency is added before the (otherwise normal) answer.
    e.dc.add_fault(FaultRule::latency(
        Api::Cnapi,
        "/servers",
        Duration::from_millis(400),
    ));
    let t = Instant::now();
    assert_eq!(e.get(e.cnapi("/servers")).await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(400));
    let (s, _) = e.delete(e.control("/faults")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let t = Instant::now();
    e.get(e.cnapi("/servers")).await;
    assert!(t.elapsed() < Duration::from_millis(400));

    // Probability with the seeded dice: some fail, some pass.
    e.dc.add_fault(
        FaultRule::error(Api::Imgapi, "GET", "/images", 500, 1000).with_probability(0.5),
    );
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(e.get(e.imgapi("/images")).await.0.as_u16());
    }
    assert!(codes.contains(&500) && codes.contains(&200), "{codes:?}");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn failing_the_next_jobs_through_the_control_api() {
    let e = Env::new().await;
    let (s, _) = e
        .post(
            e.control("/jobs/fail-next"),
            json!({"count": 1, "task": "reprovision", "message": "zfs: out of space"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        e.get(e.control("/jobs/fail-next")).await.1[0]["remaining"],
        1
    );
    let m0 = e.seeded.instance("manatee0");
    let next = &e.seeded.images["manatee-next"];
    let (s, v) = e
        .put(
            e.sapi(&format!("/instances/{m0}/upgrade")),
            json!({"image_uuid": next}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"code": "ReprovisionFailedError", "message": "zfs: out of space"})
    );
    assert_eq!(
        e.vm(m0).await["image_uuid"],
        json!(e.seeded.images["manatee"])
    );
    // The next attempt goes through.
    let (s, _) = e
        .put(
            e.sapi(&format!("/instances/{m0}/upgrade")),
            json!({"image_uuid": next}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e.vm(m0).await["image_uuid"], json!(next));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn dead_server_takes_its_zones_down_and_back() {
    let e = Env::new().await;
    let cn0 = e.seeded.computes[0].clone();
    let m1 = e.seeded.instance("manatee1").to_string();
    assert_eq!(e.vm(&m1).await["server_uuid"], json!(cn0));
    let mut rx = e.dc.subscribe();

    let (s, _) = e
        .post(e.control(&format!("/servers/{cn0}/dead")), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, srv) = e.get(e.cnapi(&format!("/servers/{cn0}"))).await;
    assert_eq!(srv["status"], "unknown");
    assert_eq!(e.vm(&m1).await["state"], "unknown");
    let ev = expect_event(
        &mut rx,
        "stopped by outage",
        vm_event(VmEventKind::Stopped, &m1),
    )
    .await;
    let DcEvent::Vm(ev) = ev else { unreachable!() };
    assert_eq!(ev.cause, sim::dc::EventCause::ServerDown);
    // `unknown` still counts as active (VMAPI: only destroyed/failed are not).
    let (_, v) = e
        .get(e.vmapi(&format!("/vms?state=active&server_uuid={cn0}")))
        .await;
    assert!(!v.as_array().unwrap().is_empty());

    let (_, v) = e
        .post(e.vmapi(&format!("/vms/{m1}?action=start")), json!({}))
        .await;
    let j = e.wait_job(v["job_uuid"].as_str().unwrap()).await;
    assert_eq!(j["execution"], "failed");
    let (s, v) = e
        .post(
            e.cnapi(&format!("/servers/{cn0}/execute")),
            json!({"script": "#!/bin/sh\ntrue"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::INTERNAL_SERVER_ERROR, json!("InternalError"))
    );

    let (s, _) = e
        .post(e.control(&format!("/servers/{cn0}/alive")), json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    expect_event(&mut rx, "restarted", vm_event(VmEventKind::Started, &m1)).await;
    assert_eq!(e.vm(&m1).await["state"], "running");
    assert_eq!(
        e.get(e.cnapi(&format!("/servers/{cn0}"))).await.1["status"],
        "running"
    );
    assert_eq!(
        e.post(e.control(&format!("/servers/{NOBODY}/dead")), json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn time_scale_knob_and_event_log_over_control_api() {
    let e = Env::new().await;
    let (_, v) = e.get(e.control("/time-scale")).await;
    assert!((v["scale"].as_f64().unwrap() - 1.0 / 6000.0).abs() < 1e-12);
    let (s, v) = e.put(e.control("/time-scale"), json!({"scale": 0.0})).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"scale": 0.0})));
    assert_eq!(e.dc.scaled(Duration::from_secs(900)), Duration::ZERO);
    let (_, v) = e.get(e.control("/events")).await;
    // Seeding announced every zone.
    assert_eq!(v.as_array().unwrap().len(), 8);
    assert_eq!(v[0]["type"], "vm");
    assert_eq!(v[0]["kind"], "provisioned");
    assert_eq!(e.get(e.control("/ping")).await.1, json!({"ok": true}));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_listener() {
    let e = Env::new().await;
    let urls = e.srv.urls().clone();
    let ports: Vec<&str> = [
        &urls.sapi,
        &urls.vmapi,
        &urls.cnapi,
        &urls.imgapi,
        &urls.control,
    ]
    .iter()
    .map(|u| u.rsplit(':').next().unwrap())
    .collect();
    let mut uniq = ports.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 5, "each API on its own port");
    assert!(urls.sapi.starts_with("http://127.0.0.1:"));
    e.srv.shutdown().await;
    let err = e.http.get(format!("{}/ping", urls.vmapi)).send().await;
    assert!(err.is_err(), "listener closed after shutdown");
}
