//! Every curl example of docs/csta-sim.md's "Control API" section, run top to bottom against a
//! fresh demo switch, exactly as written (with `curl` when it is installed, else with a small
//! built-in HTTP client that understands the same command lines); each answer must be the one
//! the document shows after `# →`.

mod common;
use common::*;
use serde_json::Value;

struct Example {
    line: String,
    method: String,
    path: String,
    body: Option<String>,
    expect: Option<Value>,
}

fn examples() -> Vec<Example> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/csta-sim.md"
    ))
    .expect("docs/csta-sim.md");
    let section = doc
        .split("## Control API")
        .nth(1)
        .expect("a Control API section");
    let section = section.split("\n## ").next().unwrap();
    let mut out: Vec<Example> = Vec::new();
    for l in section.lines() {
        let l = l.trim();
        if let Some(json) = l.strip_prefix("# →") {
            let last = out.last_mut().expect("an answer follows a command");
            last.expect =
                Some(serde_json::from_str(json.trim()).expect("the answer shown is JSON"));
            continue;
        }
        let Some(rest) = l.strip_prefix("curl -s ") else {
            continue;
        };
        let (mut method, mut url, mut body) = ("GET".to_string(), String::new(), None);
        let mut toks = rest;
        while !toks.is_empty() {
            toks = toks.trim_start();
            if let Some(r) = toks.strip_prefix("-X ") {
                let (m, r) = r.split_once(' ').unwrap();
                method = m.to_string();
                toks = r;
            } else if let Some(r) = toks.strip_prefix("-d '") {
                let (b, r) = r.split_once('\'').unwrap();
                body = Some(b.to_string());
                if method == "GET" {
                    method = "POST".into();
                }
                toks = r;
            } else {
                let (u, r) = toks.split_once(' ').unwrap_or((toks, ""));
                url = u.to_string();
                toks = r;
            }
        }
        let path = url
            .strip_prefix("http://127.0.0.1:8089")
            .expect("examples use 127.0.0.1:8089")
            .to_string();
        out.push(Example {
            line: l.to_string(),
            method,
            path,
            body,
            expect: None,
        });
    }
    out
}

fn have_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn control_api_examples_work_as_shown() {
    let ex = examples();
    assert!(ex.len() >= 40, "found {} examples", ex.len());
    // every endpoint of the router is shown at least once
    for ep in [
        "/healthz",
        "/state",
        "/devices",
        "/calls",
        "/answer",
        "/hangup",
        "/hold",
        "/retrieve",
        "/dial",
        "/consult",
        "/transfer",
        "/conference",
        "/agent",
        "/forward",
        "/dnd",
        "/hotdesk/associate",
        "/hotdesk/cancel",
        "/hotdesk",
        "/faults/drop",
        "/faults/stall",
        "/faults/delay",
        "/faults/malformed",
        "/faults/fail-next",
        "/faults/monitor-stop",
        "/system-status",
        "/dual-primary",
        "/dual-primary/reset",
    ] {
        assert!(
            ex.iter().any(|e| e.path.contains(ep)),
            "no example for {ep}"
        );
    }
    assert!(ex.iter().any(|e| e.method == "DELETE"));
    let sim = start(ctid_sim::SimConfig::demo()).await;
    let ctl = sim.control_addr().unwrap();
    let curl = have_curl();
    for e in &ex {
        let (status, body) = if curl {
            let cmd = e.line.replace("127.0.0.1:8089", &ctl.to_string());
            let cmd = format!("{} -w '\\n%{{http_code}}'", cmd);
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (body, code) = text.rsplit_once('\n').unwrap();
            let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
            (code.parse::<u16>().unwrap(), v)
        } else {
            http(ctl, &e.method, &e.path, e.body.as_deref()).await
        };
        assert_eq!(status, 200, "{}: {body}", e.line);
        if let Some(want) = &e.expect {
            assert_eq!(&body, want, "{}", e.line);
        }
    }
    // and the refusal shown in the text is what the API answers
    let (st, body) = http(
        ctl,
        "POST",
        "/hotdesk/associate",
        Some(r#"{"guest":"2003","host":"1010"}"#),
    )
    .await;
    assert_eq!(st, 409);
    assert_eq!(
        body,
        serde_json::json!({"cstaError":"systemResourceAvailibility/resourceBusy","error":"host 1010 is in use by guest 2010 (systemResourceAvailibility/resourceBusy)"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_refusals() {
    let sim = start(ctid_sim::SimConfig::demo()).await;
    let ctl = sim.control_addr().unwrap();
    let (st, b) = http(
        ctl,
        "POST",
        "/calls",
        Some(r#"{"from":"1001","to":"4711"}"#),
    )
    .await;
    assert_eq!(
        (st, b["cstaError"].as_str()),
        (409, Some("operation/invalidCalledDeviceID"))
    );
    let (st, b) = http(ctl, "POST", "/phones/4711/answer", None).await;
    assert_eq!(
        (st, b["cstaError"].as_str()),
        (404, Some("operation/invalidDeviceID"))
    );
    let (st, b) = http(ctl, "POST", "/phones/1001/answer", None).await;
    assert_eq!(
        (st, b["cstaError"].as_str()),
        (409, Some("stateIncompatibility/noCallToAnswer"))
    );
    let (st, b) = http(
        ctl,
        "POST",
        "/phones/1001/answer",
        Some(r#"{"callID":"C42"}"#),
    )
    .await;
    assert_eq!(
        (st, b["cstaError"].as_str()),
        (404, Some("operation/invalidCallID"))
    );
    let (st, _) = http(ctl, "POST", "/calls", Some("not json")).await;
    assert_eq!(st, 400);
    let (st, _) = http(ctl, "POST", "/phones/1001/frobnicate", None).await;
    assert_eq!(st, 400);
    let (st, _) = http(
        ctl,
        "POST",
        "/system-status",
        Some(r#"{"status":"sleepy"}"#),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = http(
        ctl,
        "POST",
        "/faults/fail-next",
        Some(r#"{"family":"nope","value":"x"}"#),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = http(ctl, "POST", "/devices", Some(r#"{"device":"1001"}"#)).await;
    assert_eq!(st, 409);
    let (st, _) = http(
        ctl,
        "POST",
        "/devices",
        Some(r#"{"device":"5000","type":"pbx"}"#),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = http(ctl, "DELETE", "/devices/5000", None).await;
    assert_eq!(st, 404);
    let (st, state) = http(ctl, "GET", "/state", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        state["associations"],
        serde_json::json!([{"guest":"2010","host":"1010"}])
    );
    assert_eq!(state["devices"].as_array().unwrap().len(), 22);
    sim.shutdown().await;
}
