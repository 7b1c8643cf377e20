//! Operability end to end: `/healthz`, `/readyz` (503 while the link is down), `/metrics` (every
//! family present, the counters moving), the web monitor's page and `/api/state` (hot desk, call,
//! filter, paging), and configuration reload over `POST /admin/reload` (a DN added and one removed
//! without a restart; an invalid file rejected; the token checked). Real sockets on 127.0.0.1, a
//! hand-written HTTP/1.1 client.
#![cfg(feature = "demo")] // start_demo: the embedded simulator

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{Event, EventName, Request};
use ctid_server::demo::start_demo;
use ctid_server::StartOptions;
use ctid_sim::{Sim, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    http(addr, "GET", path, &[]).await
}

/// Poll `f` until it holds, or fail after 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn ready(addr: SocketAddr) -> u16 {
    get(addr, "/readyz").await.status
}

/// The value of one sample line of `/metrics` (`name{labels}`), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn client(url: &str) -> Client {
    let mut c = Client::connect(url).await.unwrap();
    let first = c.next_event(T).await.unwrap().expect("link status");
    assert!(matches!(
        first.name,
        EventName::EventLinkConnected | EventName::EventLinkDisconnected
    ));
    c
}

async fn wait_event(c: &mut Client, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).await.unwrap() {
            Some(e) if pred(&e) => return e,
            Some(_) => {}
            None => panic!("no matching event within {T:?}"),
        }
    }
}

#[tokio::test]
async fn health_readiness_and_link_loss() {
    let demo = start_demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = demo.ctid.addr;
    let h = get(addr, "/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    eventually("ready", || async { ready(addr).await == 200 }).await;
    let r = get(addr, "/readyz").await.json();
    assert_eq!(r["ready"], true);
    assert_eq!(r["link"]["name"], "csta-sim");
    assert_eq!(r["link"]["state"], "up");
    assert_eq!(r["monitors"]["monitored"], 22);
    assert_eq!(r["links"][0]["name"], "csta-sim");
    assert_eq!(r["links"][0]["active"], true);
    assert_eq!(r["links"][0]["state"], "up");

    // The Connector reports itself disabled: not ready; back to normal: ready.
    demo.sim.set_system_status("disabled").await;
    eventually("503 while disabled", || async { ready(addr).await == 503 }).await;
    let r = get(addr, "/readyz").await.json();
    assert_eq!(r["ready"], false);
    assert_ne!(r["link"]["state"], "up");
    demo.sim.set_system_status("normal").await;
    eventually("200 when normal", || async { ready(addr).await == 200 }).await;

    // The TCP link dropped: 503 until ctid has reconnected and re-monitored.
    let before = sample(
        &get(addr, "/metrics").await.body,
        "ctid_link_reconnects_total",
    );
    demo.sim.drop_connections().await;
    eventually("503 after the drop", || async { ready(addr).await == 503 }).await;
    eventually("200 after the reconnect", || async {
        ready(addr).await == 200
    })
    .await;
    let m = get(addr, "/metrics").await.body;
    assert!(sample(&m, "ctid_link_reconnects_total") > before, "{m}");
    assert_eq!(sample(&m, "ctid_link_up"), 1.0);
}

#[tokio::test]
async fn metrics_move() {
    let demo = start_demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = demo.ctid.addr;
    eventually("ready", || async { ready(addr).await == 200 }).await;
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.contains("content-type: text/plain"),
        "{}",
        r.headers
    );
    for family in [
        "ctid_link_up",
        "ctid_link_reconnects_total",
        "ctid_csta_requests_total",
        "ctid_csta_responses_total",
        "ctid_csta_errors_total",
        "ctid_csta_events_total",
        "ctid_csta_outstanding",
        "ctid_monitored_dns",
        "ctid_registered_dns",
        "ctid_clients",
        "ctid_events_sent_total",
        "ctid_client_requests_total",
        "ctid_client_request_errors_total",
        "ctid_client_queue_high_water",
        "ctid_clients_dropped_total",
        "ctid_request_duration_seconds",
        "ctid_switch_to_client_seconds",
        "ctid_config_reloads_total",
    ] {
        assert!(
            r.body.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            r.body
        );
    }
    assert_eq!(sample(&r.body, "ctid_monitored_dns"), 22.0);
    assert!(sample(&r.body, "ctid_csta_requests_total{type=\"MonitorStart\"}") >= 22.0);
    assert!(
        sample(
            &r.body,
            "ctid_csta_responses_total{type=\"MonitorStartResponse\"}"
        ) >= 22.0
    );

    // A client: requests, a refused one, a hot desk made at the phone, a call.
    let mut c = client(&demo.ctid.ws_url()).await;
    c.request(Request::register_address("2001"), T)
        .await
        .unwrap();
    c.request(Request::register_address("1001"), T)
        .await
        .unwrap();
    let refused = c
        .request(
            Request::private_service("2002", 1).with_extension("HOST_DN", "1002"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(refused.name, EventName::EventError);
    demo.sim.hotdesk_associate("2001", "1001").await.unwrap();
    wait_event(&mut c, |e| e.name == EventName::EventPrivateInfo).await;
    demo.sim.dial("1001", "1002").await.unwrap();
    wait_event(&mut c, |e| e.name == EventName::EventDialing).await;

    let m = get(addr, "/metrics").await.body;
    assert_eq!(sample(&m, "ctid_clients"), 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            "ctid_client_requests_total{type=\"RequestRegisterAddress\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            "ctid_client_request_errors_total{type=\"RequestPrivateService\",code=\"41\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "ctid_request_duration_seconds_count"), 3.0);
    assert!(sample(&m, "ctid_request_duration_seconds_bucket{le=\"+Inf\"}") == 3.0);
    assert!(
        sample(&m, "ctid_switch_to_client_seconds_count") >= 2.0,
        "{m}"
    );
    assert!(sample(&m, "ctid_events_sent_total{type=\"EventPrivateInfo\"}") >= 1.0);
    assert!(sample(&m, "ctid_events_sent_total{type=\"EventDialing\"}") >= 1.0);
    assert!(sample(&m, "ctid_csta_events_total{type=\"PrivateEvent\"}") >= 1.0);
    assert!(sample(&m, "ctid_csta_events_total{type=\"OriginatedEvent\"}") >= 1.0);
    assert!(sample(&m, "ctid_client_queue_high_water") >= 1.0);
    let q = demo
        .ctid
        .metrics
        .switch_to_client_latency
        .quantile_bound_us(0.99);
    assert!(q.is_some_and(|us| us <= 1_000_000), "{q:?}");
}

#[tokio::test]
async fn web_monitor_page_and_state() {
    let demo = start_demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = demo.ctid.addr;
    eventually("ready", || async { ready(addr).await == 200 }).await;

    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"));
    assert!(page.body.contains("<title>ctid monitor</title>"));
    assert!(page.body.contains("/monitor.js") && page.body.contains("/monitor.css"));
    let js = get(addr, "/monitor.js").await;
    assert!(js.headers.contains("javascript") && js.body.contains("ModeMonitor"));
    assert!(get(addr, "/monitor.css").await.headers.contains("text/css"));
    // The monitor's client: the browser build of clients/typescript (@ctid/client).
    let client = get(addr, "/ctid-client.js").await;
    assert!(client.headers.contains("javascript") && client.body.contains("class CtidClient"));

    let s = get(addr, "/api/state").await.json();
    assert_eq!(s["link"]["state"], "up");
    assert_eq!(s["dns"]["total"], 22);
    assert_eq!(s["dns"]["items"][0]["number"], "1001");
    // The demo's pair made before start-up.
    assert!(s["hotdesk"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["guest"] == "2010" && p["host"] == "1010"));

    demo.sim.hotdesk_associate("2001", "1001").await.unwrap();
    demo.sim.dial("1003", "1004").await.unwrap();
    demo.sim.answer("1004").await.unwrap();
    eventually("hot desk and call in /api/state", || async {
        let s = get(addr, "/api/state?filter=100").await.json();
        let hd = s["hotdesk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["guest"] == "2001" && p["host"] == "1001");
        let call = s["calls"]["items"].as_array().unwrap().iter().any(|c| {
            let parties: Vec<String> = c["parties"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["dn"].as_str().unwrap(),
                        p["state"].as_str().unwrap()
                    )
                })
                .collect();
            parties.contains(&"1003:Connected".to_string())
                && parties.contains(&"1004:Connected".to_string())
        });
        hd && call
    })
    .await;
    let s = get(addr, "/api/state?filter=2001").await.json();
    assert_eq!(s["dns"]["total"], 2, "2001 and its host 1001: {s}");
    let guest = s["dns"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["number"] == "2001")
        .unwrap();
    assert_eq!(guest["host"], "1001");
    assert_eq!(s["calls"]["total"], 0, "no call on a DN matching 2001");

    // Paging.
    let p = get(addr, "/api/state?offset=20&limit=5").await.json();
    assert_eq!(p["dns"]["total"], 22);
    let numbers: Vec<&str> = p["dns"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["3001", "3101"]);
    let p = get(addr, "/api/state?limit=100000").await.json();
    assert_eq!(p["dns"]["limit"], 1000);
}

fn config_text(sim: &Sim, dns: &str) -> String {
    let a = sim.csta_addr();
    format!(
        r#"
listen = "127.0.0.1:0"
[[link]]
name = "csta-sim"
host = "{}"
port = {}
reconnect-min = 0.2
reconnect-max = 1
{dns}
"#,
        a.ip(),
        a.port()
    )
}

fn temp_file(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ctid-operability-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ctid.toml")
}

#[tokio::test]
async fn reload_over_http_adds_and_removes_dns() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Sim::start(SimConfig::demo(), any, None).await.unwrap();
    let path = temp_file("reload");
    std::fs::write(
        &path,
        config_text(
            &sim,
            "[[dn]]\nrange = \"1001-1003\"\nregister = true\n[[dn]]\nnumber = \"2001\"\n",
        ),
    )
    .unwrap();
    let cfg = ctid_server::Config::load(&path).unwrap();
    let ctid = ctid_server::start_with(
        cfg,
        StartOptions {
            config_path: Some(path.clone()),
            admin_token: Some("s3cret".into()),
        },
    )
    .await
    .unwrap();
    let addr = ctid.addr;
    eventually("ready", || async { ready(addr).await == 200 }).await;
    assert_eq!(
        get(addr, "/readyz").await.json()["monitors"]["monitored"],
        3
    );

    let mut c = client(&ctid.ws_url()).await;
    c.request(Request::register_address("1003"), T)
        .await
        .unwrap();

    // Remove 1003, add 1004-1005.
    std::fs::write(
        &path,
        config_text(
            &sim,
            "[[dn]]\nrange = \"1001-1002\"\nregister = true\n[[dn]]\nrange = \"1004-1005\"\nregister = true\n[[dn]]\nnumber = \"2001\"\n",
        ),
    )
    .unwrap();
    let bearer = [("Authorization", "Bearer s3cret")];
    assert_eq!(http(addr, "POST", "/admin/reload", &[]).await.status, 401);
    assert_eq!(
        http(
            addr,
            "POST",
            "/admin/reload",
            &[("Authorization", "Bearer nope")]
        )
        .await
        .status,
        401
    );
    assert_eq!(get(addr, "/admin/reload").await.status, 405);
    let r = http(addr, "POST", "/admin/reload", &bearer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("2 added, 1 removed"), "{}", r.body);

    let ev = wait_event(&mut c, |e| e.name == EventName::EventUnregistered).await;
    assert_eq!(ev.this_dn.as_deref(), Some("1003"));
    assert_eq!(ev.reference_id, None, "unsolicited");
    assert_eq!(ev.error_code.map(|c| c.0), Some(59));
    assert!(ev.error_message.unwrap().contains("removed"));
    eventually("1004 and 1005 monitored", || async {
        let s = get(addr, "/api/state").await.json();
        let monitored: Vec<String> = s["dns"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["monitored"] == true)
            .map(|d| d["number"].as_str().unwrap().to_string())
            .collect();
        monitored == ["1001", "1002", "1004", "1005"]
    })
    .await;
    assert_eq!(get(addr, "/readyz").await.status, 200);

    // An invalid file is rejected with its message; the running configuration stays.
    std::fs::write(&path, config_text(&sim, "[[dn]]\nnumbr = \"1009\"\n")).unwrap();
    let r = http(addr, "POST", "/admin/reload", &bearer).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("numbr"), "{}", r.body);
    let s = get(addr, "/api/state").await.json();
    assert_eq!(s["dns"]["total"], 5, "{s}");
    let m = get(addr, "/metrics").await.body;
    assert_eq!(sample(&m, "ctid_config_reloads_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        sample(&m, "ctid_config_reloads_total{result=\"rejected\"}"),
        1.0
    );

    // A changed link setting is accepted and applies at the link's next reconnect.
    std::fs::write(
        &path,
        config_text(&sim, "[[dn]]\nnumber = \"1001\"\nregister = true\n")
            .replace("reconnect-max = 1", "reconnect-max = 2"),
    )
    .unwrap();
    let r = http(addr, "POST", "/admin/reload", &bearer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("next reconnect"), "{}", r.body);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn reload_is_refused_without_token_or_file() {
    let demo = start_demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = demo.ctid.addr;
    let r = http(
        addr,
        "POST",
        "/admin/reload",
        &[("Authorization", "Bearer x")],
    )
    .await;
    assert_eq!(r.status, 403, "no CTID_ADMIN_TOKEN: {}", r.body);
    // The demo has no configuration file: a reload (as SIGHUP does) is refused.
    assert!(demo.ctid.reloader.reload().await.is_err());
}
