//! The web server over HTTP on loopback: who may look, what each route
//! answers, and the event stream. (The pages in a browser: tests/web.rs.)

use std::sync::Arc;
use std::time::Duration;

use coord::Coordination;
use tokio_util::sync::CancellationToken;

use super::{WebState, serve};
use crate::auth::roles::{Identity, Role, Roles};
use crate::runtime::events::{Event, Events};
use crate::runtime::http::HttpLimits;
use crate::store::Store;

const SECRET: &str = "vera-secret-0123456789";

async fn start(coord: Arc<dyn Coordination>) -> (String, CancellationToken) {
    let store = Store::new(coord);
    store.init().await.unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab/manatee.yaml"),
    )
    .unwrap();
    let (mut docs, _) = crds::parse_documents("manatee.yaml", &text);
    store.apply(&[docs.remove(0).document]).await.unwrap();
    let stop = CancellationToken::new();
    let state = WebState::new(store, "test store".into(), None);
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        state,
        HttpLimits::default(),
        stop.clone(),
    )
    .await
    .unwrap();
    (format!("http://{addr}"), stop)
}

fn client() -> reqwest::Client {
    crate::clients::http_client(Duration::from_secs(20))
}

#[tokio::test]
async fn with_a_role_table_only_its_identities_may_look() {
    let coord: Arc<dyn Coordination> = coord::MemEnsemble::new().connect();
    let mut roles = Roles::default();
    roles.identities.insert(
        "vera".into(),
        Identity {
            digest: coord::acl::digest_id("vera", SECRET),
            roles: [Role::Viewer].into(),
            added: String::new(),
            added_by: String::new(),
        },
    );
    roles.store(&coord, None).await.unwrap();
    let (base, _stop) = start(coord).await;
    let c = client();
    let anon = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert!(
        anon.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    for path in ["/events", "/api/overview", "/static/live.js", "/doc/mv/sdc"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without credentials");
    }
    let wrong = c
        .get(format!("{base}/"))
        .basic_auth("vera", Some("not-the-secret-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = c
        .get(format!("{base}/"))
        .basic_auth("vera", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(body.contains("ManateeVersion/sdc"), "{body}");
    // Read-only: nothing but GET is routed.
    let post = c
        .post(format!("{base}/"))
        .basic_auth("vera", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn pages_answer_and_the_event_stream_sends_a_change_per_event() {
    let coord: Arc<dyn Coordination> = coord::MemEnsemble::new().connect();
    let (base, _stop) = start(coord.clone()).await;
    let c = client();
    for (path, needle) in [
        ("/", "ManateeVersion/sdc"),
        (
            "/doc/ManateeVersion/sdc",
            "None: the controller has not reconciled",
        ),
        ("/doc/mv/sdc", "Spec"),
        ("/live/overview", "<table>"),
        ("/live/doc/ManateeVersion/sdc", "Conditions"),
        ("/topology", "No manatee shard observed"),
        ("/headnodes", "Not observed"),
        ("/plan", "not observed"),
        ("/static/style.css", "--fg"),
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}:\n{body}");
    }
    let missing = c.get(format!("{base}/doc/mv/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let json: serde_json::Value = c
        .get(format!("{base}/api/overview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["documents"][0]["name"], "sdc");

    // An event recorded after the stream opened arrives as a `change`.
    let events = Events::new(coord.clone());
    events
        .record(&Event::normal("ManateeVersion/old", "Before", "x"), None)
        .await
        .unwrap();
    let mut sse = c
        .get(format!("{base}/events?object=ManateeVersion/sdc"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    events
        .record(
            &Event::normal("ManateeVersion/other", "Elsewhere", "x"),
            None,
        )
        .await
        .unwrap();
    events
        .record(
            &Event::normal("ManateeVersion/sdc", "StepStarted", "sdc: go").with_step("preflight"),
            None,
        )
        .await
        .unwrap();
    let mut got = String::new();
    while !got.contains("StepStarted") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), sse.chunk())
            .await
            .expect("the stream sends the event")
            .unwrap()
            .expect("the stream stays open");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(got.contains("event: change"), "{got}");
    assert!(
        !got.contains("Before"),
        "stored events are not replayed: {got}"
    );
    assert!(
        !got.contains("Elsewhere"),
        "other objects' events are left out: {got}"
    );
}
