//! Record and replay end to end: the real `ctid --demo --record-inputs FILE` on free ports, driven
//! by `ctictl` commands and the simulator's phone control API (hot desking, calls, hold/retrieve,
//! user data, a transfer and a conference answered at the phones, agents, refused requests, a
//! request that times out, a link drop), stopped with SIGTERM; then `ctid-replay FILE`, a separate
//! process, must find 0 differences, and the recording must hold the inputs of all that.
//!
//! `ctictl` and `ctid-replay` are other packages' binaries: they are taken from this test's
//! target directory, built there with `cargo build` first when missing or out of date.
//! `CTID_KEEP_RECORDING=PATH` keeps a copy of the recording (how a regression recording is made:
//! crates/replay/tests/recordings/README.md).
#![cfg(feature = "demo")] // ctid --demo: the embedded simulator

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long any one step may take.
const T: Duration = Duration::from_secs(10);

/// The target directory's profile folder this test runs from (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/record_replay-HASH
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Is this binary newer than every source file it was built from (its `.d` file beside it)?
fn up_to_date(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(dep) = std::fs::read_to_string(bin.with_extension("d")) else {
        return false;
    };
    let Some((_, sources)) = dep.lines().next().and_then(|l| l.split_once(": ")) else {
        return false;
    };
    sources
        .replace("\\ ", "\u{0}")
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| {
            Path::new(&s.replace('\u{0}', " "))
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= built)
        })
}

/// `ctictl` and `ctid-replay` from this test's target directory. `cargo test --workspace` has
/// built them; otherwise (`cargo test -p ctid-server`), when one is missing or older than its
/// sources, they are built there first.
fn other_bins() -> (PathBuf, PathBuf) {
    let dir = profile_dir();
    let exe = |n: &str| dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX));
    let (ctictl, replay) = (exe("ctictl"), exe("ctid-replay"));
    if up_to_date(&ctictl) && up_to_date(&replay) {
        return (ctictl, replay);
    }
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-p",
        "ctid-client",
        "-p",
        "ctid-replay",
        "--bin",
        "ctictl",
        "--bin",
        "ctid-replay",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(p) => {
            cmd.args(["--profile", p]);
        }
        None => {}
    }
    if let Some(target) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build of ctictl and ctid-replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ctictl.exists(), "{}", ctictl.display());
    assert!(replay.exists(), "{}", replay.display());
    (ctictl, replay)
}

/// A minimal HTTP/1.1 exchange: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Everything one running demo needs.
struct Demo {
    ctid: Child,
    url: String,
    addr: SocketAddr,
    control: SocketAddr,
    ctictl: PathBuf,
}

impl Demo {
    async fn ctictl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.ctictl)
            .arg("--server")
            .arg(&self.url)
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// ctictl exits 0 and its last line starts with `prefix`.
    async fn ok(&self, args: &[&str], prefix: &str) -> String {
        let (rc, out, err) = self.ctictl(args).await;
        assert_eq!(rc, 0, "ctictl {args:?}: {out}{err}");
        let last = out.lines().last().unwrap_or("").to_string();
        assert!(last.starts_with(prefix), "ctictl {args:?}: {out}{err}");
        last
    }

    /// ctictl exits 1 with EventError `code`.
    async fn refused(&self, args: &[&str], code: &str) {
        let (rc, out, err) = self.ctictl(args).await;
        assert_eq!(rc, 1, "ctictl {args:?}: {out}{err}");
        assert!(
            out.starts_with("EventError "),
            "ctictl {args:?}: {out}{err}"
        );
        assert!(
            out.contains(&format!("ErrorCode={code} ")),
            "ctictl {args:?}: {out}"
        );
    }

    /// POST to the simulator's control API; the JSON answer.
    async fn sim(&self, path: &str, body: &str) -> Value {
        let (status, text) = http(self.control, "POST", path, body).await;
        assert_eq!(status, 200, "POST {path} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Answer at the phone `dn` as soon as a call rings there (in the background).
    fn answer_at(&self, dn: &str) -> tokio::task::JoinHandle<()> {
        let (control, path) = (self.control, format!("/phones/{dn}/answer"));
        tokio::spawn(async move {
            let deadline = Instant::now() + T;
            while http(control, "POST", &path, "").await.0 != 200 {
                assert!(Instant::now() < deadline, "nothing rang for {path}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + T;
        while http(self.addr, "GET", "/readyz", "").await.0 != 200 {
            assert!(Instant::now() < deadline, "ctid never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `ctid --demo` with a recording; returns once its addresses are printed.
/// Its log goes to `log`.
async fn start(record: &Path, log: &Path, ctictl: PathBuf) -> Demo {
    let mut ctid = Command::new(env!("CARGO_BIN_EXE_ctid"))
        .args(["--demo", "--listen", "127.0.0.1:0", "--record-inputs"])
        .arg(record)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("ctid starts");
    let mut lines = BufReader::new(ctid.stdout.take().unwrap()).lines();
    let (mut url, mut control) = (None, None);
    let deadline = Instant::now() + T;
    while url.is_none() || control.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .expect("ctid prints its addresses in time")
            .unwrap()
            .expect("ctid exited early");
        if let Some(u) = line.strip_prefix("ctid demo: clients connect to ") {
            url = Some(u.trim().to_string());
        }
        if let Some(c) = line.trim().strip_prefix("csta-sim control API: http://") {
            control = Some(c.split('/').next().unwrap().parse().unwrap());
        }
    }
    // Keep reading what it prints (a full pipe would block it).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = url.unwrap();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    Demo {
        ctid,
        url,
        addr,
        control: control.unwrap(),
        ctictl,
    }
}

/// A `ctictl watch` in the background; its lines as they come.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    async fn start(d: &Demo, dns: &[&str]) -> Watch {
        let mut child = Command::new(&d.ctictl)
            .args(["--server", &d.url, "--timeout", "600", "watch"])
            .args(dns)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let l = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        let w = Watch { child, lines };
        w.wait("registered on every DN", |ls| {
            ls.iter()
                .filter(|l| l.starts_with("EventRegistered "))
                .count()
                == dns.len()
        })
        .await;
        w
    }

    async fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            if pred(&self.lines.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "watch: {what}: {:#?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `Key=value` of a ctictl event line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The demo session of crates/replay/tests/recordings/README.md.
async fn session(d: &Demo, w: &Watch) {
    // Hot desking: a guest associated before start-up, initiate and cancel, and at the desk.
    let reg = d
        .ok(&["register", "2010"], "EventRegistered ThisDN=2010")
        .await;
    assert_eq!(field(&reg, "HOST_DN"), Some("1010"), "{reg}");
    d.ok(
        &["hotdesk", "initiate", "--guest", "2001", "--host", "1001"],
        "EventPrivateInfo ThisDN=2001 OtherDN=1001 PrivateMsgID=1",
    )
    .await;
    d.ok(
        &["hotdesk", "cancel", "--guest", "2001"],
        "EventPrivateInfo ThisDN=2001 OtherDN=1001 PrivateMsgID=2",
    )
    .await;
    d.sim("/phones/1003/hotdesk", r#"{"guest":"2003"}"#).await;
    d.sim("/phones/1003/hotdesk", "").await;

    // A call: make, answer, hold, retrieve, user data.
    let dial = d
        .ok(&["call", "make", "1001", "1002"], "EventDialing")
        .await;
    let conn = field(&dial, "ConnID").unwrap().to_string();
    d.ok(&["call", "answer", "1002"], "EventEstablished ThisDN=1002")
        .await;
    d.ok(&["call", "hold", "1001"], "EventHeld ThisDN=1001")
        .await;
    d.ok(&["call", "retrieve", "1001"], "EventRetrieved ThisDN=1001")
        .await;
    d.ok(
        &["userdata", "attach", "1001", "--set", "Case=42"],
        "EventAttachedDataChanged",
    )
    .await;
    d.ok(
        &["userdata", "update", "1001", "--set", "Case=43"],
        "EventAttachedDataChanged",
    )
    .await;

    // Two-step transfer to 1003 and a conference with 1004, answered at the phones.
    let answer = d.answer_at("1003");
    d.ok(
        &["call", "transfer", "1001", "--to", "1003"],
        "EventReleased",
    )
    .await;
    answer.await.unwrap();
    let answer = d.answer_at("1004");
    let added = d
        .ok(
            &["call", "conference", "1002", "--to", "1004"],
            "EventPartyAdded",
        )
        .await;
    answer.await.unwrap();
    assert_eq!(field(&added, "ConnID"), Some(conn.as_str()), "{added}");
    d.ok(&["call", "release", "1002"], "EventReleased").await;
    d.ok(&["call", "release", "1003"], "EventReleased").await;

    // An agent: login, ready, a queued call answered, after-call work, not ready, logout.
    d.ok(
        &[
            "agent", "login", "--dn", "2002", "--agent", "2002", "--queue", "3001",
        ],
        "EventAgentLogin ThisDN=2002",
    )
    .await;
    d.ok(&["agent", "ready", "--dn", "2002"], "EventAgentReady")
        .await;
    d.ok(&["call", "make", "1006", "3001"], "EventDialing")
        .await;
    w.wait("the queued call rings at 2002", |ls| {
        ls.iter()
            .any(|l| l.starts_with("EventRinging ThisDN=2002 "))
    })
    .await;
    d.ok(&["call", "answer", "2002"], "EventEstablished ThisDN=2002")
        .await;
    d.ok(&["call", "release", "2002"], "EventReleased ThisDN=2002")
        .await;
    d.ok(
        &["agent", "notready", "--dn", "2002", "--acw"],
        "EventAgentNotReady",
    )
    .await;
    d.ok(&["agent", "notready", "--dn", "2002"], "EventAgentNotReady")
        .await;
    d.ok(&["agent", "logout", "--dn", "2002"], "EventAgentLogout")
        .await;

    // Refusals: by the switch, by ctid, and a request the switch never answers (a Tick).
    d.sim(
        "/faults/fail-next",
        r#"{"family":"operation","value":"invalidDeviceID","service":"MakeCall"}"#,
    )
    .await;
    d.refused(&["call", "make", "1007", "1008"], "1151").await;
    d.refused(&["call", "make", "1007", "10 08"], "71").await;
    d.sim("/faults/stall", r#"{"on":true}"#).await;
    d.refused(&["--timeout", "8", "call", "make", "1007", "1008"], "57")
        .await;
    d.sim("/faults/stall", r#"{"on":false}"#).await;

    // The link drops: ctid reconnects, re-monitors and resyncs; then one more call.
    d.sim("/faults/drop", "").await;
    w.wait("the link comes back", |ls| {
        ls.iter()
            .skip_while(|l| !l.starts_with("EventLinkDisconnected"))
            .any(|l| l.starts_with("EventLinkConnected"))
    })
    .await;
    d.wait_ready().await;
    d.ok(&["call", "make", "1005", "1006"], "EventDialing")
        .await;
    let answer = d.answer_at("1006");
    answer.await.unwrap();
    d.ok(&["call", "release", "1005"], "EventReleased ThisDN=1005")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_demo_session_replays_without_differences() {
    let (ctictl, replay) = tokio::task::spawn_blocking(other_bins).await.unwrap();
    let dir = std::env::temp_dir().join(format!("ctid-record-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo.jsonl");

    // On failure, the recording and ctid's log stay in `dir`.
    eprintln!("recording and log in {}", dir.display());
    let mut d = start(&file, &dir.join("ctid.log"), ctictl).await;
    d.wait_ready().await;
    let mut w = Watch::start(
        &d,
        &["1001", "1002", "1003", "1004", "2001", "2002", "3001"],
    )
    .await;
    session(&d, &w).await;

    // SIGTERM: a graceful stop; the recording is complete.
    let pid = d.ctid.id().expect("ctid runs").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(T, d.ctid.wait())
        .await
        .expect("ctid stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "ctid: {status}");
    let _ = tokio::time::timeout(T, w.child.wait()).await;
    let _ = w.child.kill().await;

    if let Ok(keep) = std::env::var("CTID_KEEP_RECORDING") {
        std::fs::copy(&file, &keep).unwrap();
    }

    // Replay in another process: 0 differences.
    let out = Command::new(&replay).arg(&file).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "ctid-replay: {stdout}{stderr}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("replayed ") && last.ends_with(" outputs, 0 differences"),
        "{stdout}"
    );

    // The recording holds what the session did.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["ctid_recording"], 1);
    assert_eq!(header["config"]["server_name"], "ctid-demo");
    let (mut inputs, mut requests, mut csta, mut events) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    let (mut n_in, mut n_out) = (0, 0);
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap();
        if let Some(name) = v["in"].as_str() {
            n_in += 1;
            inputs.insert(name.to_string());
            // The request is kept as its text (a KV list keeps its order).
            let request: Value = v["request"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null);
            if let Some(r) = request["request"].as_str() {
                requests.insert(r.to_string());
            }
            if name == "CstaEvent" {
                csta.insert(v["message"]["message"].as_str().unwrap().to_string());
            }
        } else {
            n_out += 1;
            if let Some(e) = v["event"]["event"].as_str() {
                events.insert(e.to_string());
            }
        }
    }
    assert_eq!(
        last,
        format!("replayed {n_in} inputs, {n_out} outputs, 0 differences")
    );
    let has = |set: &BTreeSet<String>, names: &[&str], what: &str| {
        for n in names {
            assert!(set.contains(*n), "no {what} {n} in the recording: {set:?}");
        }
    };
    has(
        &inputs,
        &[
            "LinkUp",
            "LinkDown",
            "SessionOpened",
            "ClientDisconnected",
            "ClientRequest",
            "CstaAnswer",
            "CstaEvent",
            "Tick",
        ],
        "input",
    );
    has(
        &requests,
        &[
            "RequestRegisterAddress",
            "RequestPrivateService",
            "RequestMakeCall",
            "RequestAnswerCall",
            "RequestHoldCall",
            "RequestRetrieveCall",
            "RequestAttachUserData",
            "RequestUpdateUserData",
            "RequestInitiateTransfer",
            "RequestCompleteTransfer",
            "RequestInitiateConference",
            "RequestCompleteConference",
            "RequestReleaseCall",
            "RequestAgentLogin",
            "RequestAgentReady",
            "RequestAgentNotReady",
            "RequestAgentLogout",
        ],
        "request",
    );
    has(
        &csta,
        &[
            "PrivateEvent",
            "DeliveredEvent",
            "EstablishedEvent",
            "HeldEvent",
            "RetrievedEvent",
            "TransferedEvent",
            "ConferencedEvent",
            "ConnectionClearedEvent",
            "AgentReadyEvent",
        ],
        "CSTA event",
    );
    has(
        &events,
        &[
            "EventLinkConnected",
            "EventLinkDisconnected",
            "EventRegistered",
            "EventPrivateInfo",
            "EventRinging",
            "EventEstablished",
            "EventPartyAdded",
            "EventAttachedDataChanged",
            "EventAgentLogin",
            "EventError",
        ],
        "client event",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
