//! What real SAPI (2.1.3, run in proto mode as an oracle, and its source)
//! stores, refuses and crashes on, and the VMAPI and CNAPI rules behind its
//! instance calls: the simulator does the same (issue #14).

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use sim::dc::sapi_rules::{CrashKind, SapiCall};
use sim::dc::{Api, Datacenter, DcConfig, FaultRule, SapiMode, SdcScenario, SeededSdc, seed_sdc};
use sim::http::SimServers;

const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

struct Env {
    dc: Datacenter,
    seeded: SeededSdc,
    srv: SimServers,
    http: Client,
}

impl Env {
    async fn new() -> Env {
        Self::with_mode(SapiMode::Full).await
    }

    async fn with_mode(mode: SapiMode) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dc = Datacenter::new(DcConfig {
            sapi_mode: mode,
            ..Default::default()
        });
        let seeded = seed_sdc(&dc, &SdcScenario::default());
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

    async fn send(&self, method: Method, url: String, b: Option<Value>) -> (StatusCode, Value) {
        let mut rq = self
            .http
            .request(method, url)
            .header("accept-version", "~2");
        if let Some(b) = b {
            rq = rq.json(&b);
        }
        body(rq.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, self.sapi(path), None).await
    }

    async fn post(&self, path: &str, b: Value) -> (StatusCode, Value) {
        self.send(Method::POST, self.sapi(path), Some(b)).await
    }

    async fn put(&self, path: &str, b: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, self.sapi(path), Some(b)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, self.sapi(path), None).await
    }

    async fn vm_state(&self, uuid: &str) -> Option<String> {
        let url = format!("{}/vms/{uuid}", self.srv.urls().vmapi);
        let (s, v) = body(self.http.get(url).send().await.unwrap()).await;
        (s == StatusCode::OK).then(|| v["state"].as_str().unwrap_or_default().to_string())
    }
}

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

#[tokio::test]
async fn sapi_stores_the_json_types_a_client_sent_and_leaves_unset_fields_out() {
    let e = Env::new().await;
    let binder = e.seeded.services["binder"].clone();
    // master as a string and metadata as an array are stored as sent.
    let (s, inst) = e
        .post(
            "/instances",
            json!({"service_uuid": binder, "master": "true", "metadata": [],
                   "params": {"alias": "binder7"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inst}");
    let uuid = inst["uuid"].as_str().unwrap().to_string();
    let (_, got) = e.get(&format!("/instances/{uuid}")).await;
    assert_eq!(got["master"], json!("true"));
    assert_eq!(got["metadata"], json!([]));
    assert!(got.get("manifests").is_none(), "never set: {got}");
    let (_, list) = e.get(&format!("/instances?service_uuid={binder}")).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uuid"] == json!(uuid))
        .unwrap();
    assert_eq!(listed["master"], json!("true"));

    // A service created with only its required keys has no params,
    // metadata or manifests at all.
    let (s, svc) = e
        .post(
            "/services",
            json!({"name": "bare", "application_uuid": e.seeded.app_uuid}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        svc.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["uuid", "name", "application_uuid", "type"]
    );

    // name "" is stored; PUT owner_uuid "" is ignored.
    let (s, app) = e
        .post(
            "/applications",
            json!({"name": "", "owner_uuid": e.seeded.owner_uuid}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{app}");
    assert_eq!(app["name"], "");
    assert!(app.get("params").is_none(), "{app}");
    let au = app["uuid"].as_str().unwrap().to_string();
    let (s, app) = e
        .put(&format!("/applications/{au}"), json!({"owner_uuid": ""}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app["owner_uuid"], json!(e.seeded.owner_uuid));
    let (_, app) = e
        .put(
            &format!("/applications/{au}"),
            json!({"owner_uuid": NOBODY}),
        )
        .await;
    assert_eq!(app["owner_uuid"], NOBODY);

    // PUT replace stores a field as sent too.
    let (_, v) = e
        .put(
            &format!("/instances/{uuid}"),
            json!({"action": "replace", "params": ["odd"]}),
        )
        .await;
    assert_eq!(v["params"], json!(["odd"]));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_lists_agents_405_and_include_master() {
    let e = Env::new().await;
    // A repeated filter is an array, which matches no stored string.
    let app = &e.seeded.app_uuid;
    let (s, v) = e
        .get(&format!(
            "/services?application_uuid={app}&application_uuid={app}"
        ))
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    let (_, v) = e.get("/applications?name=sdc&name=sdc").await;
    assert_eq!(v, json!([]));
    let (_, v) = e.get(&format!("/services?application_uuid={app}")).await;
    assert_eq!(v.as_array().unwrap().len(), 3);

    // An agent instance: no zone, an empty payload.
    let (_, svc) = e
        .post(
            "/services",
            json!({"name": "cn-agent", "application_uuid": app, "type": "agent"}),
        )
        .await;
    let (s, inst) = e
        .post("/instances", json!({"service_uuid": svc["uuid"]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{inst}");
    assert_eq!(inst["type"], "agent");
    let uuid = inst["uuid"].as_str().unwrap();
    assert_eq!(
        e.get(&format!("/instances/{uuid}/payload")).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(e.vm_state(uuid).await, None);

    // 405 carries restify 4's code.
    let (s, v) = e.send(Method::PATCH, e.sapi("/applications"), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["code"], "MethodNotAllowedError");

    // A full-mode SAPI with no master configured ignores include_master.
    let (s, _) = e.get("/instances?include_master=true").await;
    assert_eq!(s, StatusCode::OK);
    e.srv.shutdown().await;

    // One that has not loaded its master details (the proto-mode oracle).
    let e = Env::with_mode(SapiMode::Proto).await;
    for path in [
        "/applications?include_master=true",
        "/services?include_master=true",
        "/instances?include_master=true",
    ] {
        let (s, v) = e.get(path).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            v,
            json!({"code": "ServiceUnavailableError", "message":
                "Parameter 'include_master' has been specified but this SAPI instance has not yet loaded master details"})
        );
    }
    assert_eq!(e.get("/instances").await.0, StatusCode::OK);
    e.dc.set_sapi_master_loaded(Some(true));
    assert_eq!(
        e.get("/instances?include_master=true").await.0,
        StatusCode::OK
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_enforces_an_application_metadata_schema() {
    let e = Env::new().await;
    let schema = json!({"type": "object", "properties": {
        "REGION": {"type": "string", "required": true},
        "SIZE": {"type": "integer", "minimum": 1}
    }});
    let (s, v) = e
        .post(
            "/applications",
            json!({"name": "s", "owner_uuid": e.seeded.owner_uuid,
                   "metadata_schema": schema, "metadata": {"SIZE": 2}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"code": "SchemaValidationError",
               "message": "property \"REGION\": is missing and it is required"})
    );
    assert_eq!(e.get("/applications?name=s").await.1, json!([]));

    let (s, app) = e
        .post(
            "/applications",
            json!({"name": "s", "owner_uuid": e.seeded.owner_uuid,
                   "metadata_schema": schema, "metadata": {"REGION": "r"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{app}");
    let url = format!("/applications/{}", app["uuid"].as_str().unwrap());
    let (s, v) = e.put(&url, json!({"metadata": {"SIZE": 0}})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["message"],
        "property \"SIZE\": must have a minimum value of 1"
    );
    let (_, v) = e.get(&url).await;
    assert_eq!(v["metadata"], json!({"REGION": "r"}), "unchanged");
    let (s, v) = e.put(&url, json!({"metadata": {"SIZE": 3}})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["metadata"], json!({"REGION": "r", "SIZE": 3}));
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_unknown_manifests_are_an_uncoded_500_for_services_and_instances() {
    let e = Env::new().await;
    let missing = json!({"message": format!("first of 1 error: no such manifest: {NOBODY}")});
    let (s, v) = e
        .post(
            "/services",
            json!({"name": "m", "application_uuid": e.seeded.app_uuid,
                   "manifests": {"registrar": NOBODY}}),
        )
        .await;
    assert_eq!((s, v), (StatusCode::INTERNAL_SERVER_ERROR, missing.clone()));
    let uuid = "11111111-2222-4333-8444-666666666666";
    let (s, v) = e
        .post(
            "/instances",
            json!({"service_uuid": e.seeded.services["binder"], "uuid": uuid,
                   "manifests": {"registrar": NOBODY}}),
        )
        .await;
    assert_eq!((s, v), (StatusCode::INTERNAL_SERVER_ERROR, missing));
    assert_eq!(
        e.get(&format!("/instances/{uuid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(e.vm_state(uuid).await, None, "nothing provisioned");

    let (_, m) = e
        .post(
            "/manifests",
            json!({"name": "registrar", "path": "/x", "template": "{}"}),
        )
        .await;
    let (s, v) = e
        .post(
            "/services",
            json!({"name": "m", "application_uuid": e.seeded.app_uuid,
                   "manifests": {"registrar": m["uuid"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_inputs_that_crash_the_real_sapi_answer_599_and_are_recorded() {
    let e = Env::new().await;
    let owner = e.seeded.owner_uuid.clone();
    let app = e.seeded.app_uuid.clone();
    let binder = e.seeded.services["binder"].clone();
    let b0 = e.seeded.instance("binder0").to_string();
    let cases: Vec<(Method, String, Value, SapiCall, &str, CrashKind)> = vec![
        (
            Method::POST,
            "/applications".into(),
            json!({"name": null, "owner_uuid": owner}),
            SapiCall::CreateApplication,
            "name",
            CrashKind::NotAString,
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({"name": 7, "owner_uuid": owner}),
            SapiCall::CreateApplication,
            "name",
            CrashKind::NotAString,
        ),
        (
            Method::POST,
            "/services".into(),
            json!({"name": 7, "application_uuid": app}),
            SapiCall::CreateService,
            "name",
            CrashKind::NotAString,
        ),
        (
            Method::POST,
            "/services".into(),
            json!({"name": "x", "application_uuid": null}),
            SapiCall::CreateService,
            "application_uuid",
            CrashKind::NotAString,
        ),
        (
            Method::POST,
            "/services".into(),
            json!({"name": "x", "application_uuid": app, "params": "ram=1"}),
            SapiCall::CreateService,
            "params",
            CrashKind::NotAnObject,
        ),
        (
            Method::POST,
            "/instances".into(),
            json!({"service_uuid": null}),
            SapiCall::CreateInstance,
            "service_uuid",
            CrashKind::NotAString,
        ),
        (
            Method::POST,
            "/instances".into(),
            json!({"service_uuid": binder, "manifests": {"registrar": 5}}),
            SapiCall::CreateInstance,
            "manifests",
            CrashKind::NotAString,
        ),
        (
            Method::PUT,
            format!("/instances/{b0}"),
            json!({"action": 7, "metadata": {"A": 1}}),
            SapiCall::UpdateInstance,
            "action",
            CrashKind::ActionNotAString,
        ),
        (
            Method::PUT,
            format!("/instances/{b0}/upgrade"),
            json!({"image_uuid": 7}),
            SapiCall::UpgradeInstance,
            "image_uuid",
            CrashKind::NotAString,
        ),
    ];
    let services_before = e.get("/services").await.1.as_array().unwrap().len();
    for (method, path, b, call, field, kind) in &cases {
        let (s, v) = e.send(method.clone(), e.sapi(path), Some(b.clone())).await;
        assert_eq!(s.as_u16(), 599, "{path} {b}: {v}");
        assert_eq!(v["code"], "SimulatorWouldCrash", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("would have dropped the connection"), "{msg}");
        assert!(msg.contains(field), "{msg}");
        let last = e.dc.sapi_would_crash().pop().unwrap();
        assert_eq!(
            (last.call, last.field.as_str(), last.kind),
            (*call, *field, *kind)
        );
    }
    assert_eq!(e.dc.sapi_would_crash().len(), cases.len());
    // Nothing was stored or changed.
    assert_eq!(
        e.get("/services").await.1.as_array().unwrap().len(),
        services_before
    );
    assert!(
        e.get("/applications?name=7")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (_, b) = e.get(&format!("/instances/{b0}")).await;
    assert!(b["metadata"].get("A").is_none());
    // The control API shows the record too.
    let url = format!("{}/sapi/would-crash", e.srv.urls().control);
    let (_, rec) = body(e.http.get(url).send().await.unwrap()).await;
    assert_eq!(rec.as_array().unwrap().len(), cases.len());
    assert_eq!(rec[0]["call"], "CreateApplication");
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_delete_of_an_instance_whose_vm_is_gone_passes_vmapis_error_and_keeps_it() {
    // Created while SAPI was in proto mode: no zone behind it.
    let e = Env::with_mode(SapiMode::Proto).await;
    let (s, inst) = e
        .post(
            "/instances",
            json!({"service_uuid": e.seeded.services["binder"], "params": {"alias": "b9"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inst}");
    let uuid = inst["uuid"].as_str().unwrap().to_string();
    assert_eq!(e.vm_state(&uuid).await, None);
    let (s, _) = e.post("/mode?mode=full", json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (s, v) = e.delete(&format!("/instances/{uuid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"code": "ResourceNotFound", "message": "VM not found"})
    );
    assert_eq!(
        e.get(&format!("/instances/{uuid}")).await.0,
        StatusCode::OK,
        "the SAPI record is kept"
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_create_instance_whose_vm_exists_even_destroyed_provisions_nothing() {
    let e = Env::new().await;
    let b2 = e.seeded.instance("binder2").to_string();
    assert_eq!(
        e.delete(&format!("/instances/{b2}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(e.vm_state(&b2).await.as_deref(), Some("destroyed"));
    let jobs = e.dc.jobs().len();
    let (s, v) = e
        .post(
            "/instances",
            json!({"service_uuid": e.seeded.services["binder"], "uuid": b2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(e.dc.jobs().len(), jobs, "no provision job");
    assert_eq!(e.vm_state(&b2).await.as_deref(), Some("destroyed"));
    assert_eq!(e.get(&format!("/instances/{b2}")).await.0, StatusCode::OK);

    // A running zone is left alone too.
    let b1 = e.seeded.instance("binder1").to_string();
    assert_eq!(
        e.delete(&format!("/instances/{b1}")).await.0,
        StatusCode::NO_CONTENT
    );
    e.srv.shutdown().await;
}

#[tokio::test]
async fn sapi_teardown_hook_runs_through_cnapi_before_upgrade_and_delete() {
    let e = Env::new().await;
    let binder = e.seeded.services["binder"].clone();
    let (s, _) = e
        .put(
            &format!("/services/{binder}"),
            json!({"params": {"teardown-hook": "svcadm disable -s registrar"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let b0 = e.seeded.instance("binder0").to_string();
    let image = e.seeded.images["binder"].clone();
    let (s, v) = e
        .put(
            &format!("/instances/{b0}/upgrade"),
            json!({"image_uuid": image}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hook =
        e.dc.executions()
            .into_iter()
            .find(|x| x.zone.as_deref() == Some(b0.as_str()))
            .expect("the hook ran in the zone");
    assert_eq!(hook.argv, ["svcadm", "disable", "-s", "registrar"]);
    assert_eq!(hook.exit_code, 0);

    // A failing CNAPI execute: 500 TeardownHookError, the zone and the
    // SAPI record stay.
    e.dc.add_fault(
        FaultRule::error(Api::Cnapi, "POST", "/servers/*/execute", 500, 1)
            .with_message("InternalError", "cn-agent is down"),
    );
    let b1 = e.seeded.instance("binder1").to_string();
    let (s, v) = e.delete(&format!("/instances/{b1}")).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"code": "TeardownHookError", "message": "cn-agent is down"})
    );
    assert_eq!(e.get(&format!("/instances/{b1}")).await.0, StatusCode::OK);
    assert_eq!(e.vm_state(&b1).await.as_deref(), Some("running"));
    // The fault is spent: the delete goes through now.
    assert_eq!(
        e.delete(&format!("/instances/{b1}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(e.vm_state(&b1).await.as_deref(), Some("destroyed"));

    // A hook whose command fails in the zone fails the upgrade too.
    e.put(
        &format!("/services/{binder}"),
        json!({"params": {"teardown-hook": "svcadm"}}),
    )
    .await;
    let (s, v) = e
        .put(
            &format!("/instances/{b0}/upgrade"),
            json!({"image_uuid": image}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v,
        json!({"code": "TeardownHookError", "message": "Error executing on remote system"})
    );
    e.srv.shutdown().await;
}
