//! ctid against a CSTA implementation nobody here wrote: the mock CSTA server of pyssimist (PyPI
//! `pyssimist`, GPL-3.0), installed into a throwaway venv under target/ and run as a separate
//! process by our own driver script (tests/pyssimist/driver.py, which imports it; none of its
//! code is in this repository). The mock speaks first (`system-register` session); ctid must
//! come up, monitor both configured DNs, turn a client's RequestMakeCall into MakeCall and the
//! switch's events into EventDialing / EventRinging / EventEstablished with one ConnID, and a
//! RequestReleaseCall into ClearConnection and EventReleased.
//!
//! Skipped (with a message, passing) only when python3, a venv or PyPI is not available.
//! The driver's log and pyssimist's own CallTrace.txt are in target/tmp/pyssimist-interop/;
//! `RUST_LOG=ctid::csta=debug` prints ctid's CSTA frames.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{ConnId, Event, EventName, Request, RequestName};
use ctid_server::{Config, Running};

/// The version whose mock (and its defects, see driver.py) the driver is written against.
const PYSSIMIST: &str = "pyssimist==1.0.3";
const T: Duration = Duration::from_secs(5);
const A: &str = "1001";
const B: &str = "1002";

/// What pip prints when it cannot reach the index (or has no network at all).
const UNREACHABLE: &[&str] = &[
    "NewConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "SSLError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "connection broken",
];

/// A venv under target/ with pyssimist installed; its python. `Err` (skip the test) when
/// python3, a venv or PyPI is not available; any other failure fails the test.
fn venv() -> Result<PathBuf, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyssimist-interop-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        let st = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(format!("cannot create a venv with {python}"));
        }
    }
    // (not by importing it: pyssimist writes CallTrace.txt into the working directory on import)
    let installed = Command::new(&py)
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m; assert m.version('pyssimist') == '{}'",
                PYSSIMIST.trim_start_matches("pyssimist==")
            ),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let out = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "--timeout",
                "15",
                "--retries",
                "2",
                PYSSIMIST,
            ])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty());
            let last = last.unwrap_or("").trim();
            if err.contains("No module named pip") {
                return Err(format!("the venv has no pip: {last}"));
            }
            if let Some(why) = err
                .lines()
                .find(|l| UNREACHABLE.iter().any(|m| l.contains(m)))
            {
                let why: String = why.trim().chars().take(240).collect();
                return Err(format!("PyPI is not reachable: {why}"));
            }
            panic!("pip install {PYSSIMIST} failed with PyPI reachable:\n{err}");
        }
    }
    Ok(py)
}

/// The driver process: pyssimist's mock on 127.0.0.1:`port`. Killed on drop; when the test
/// fails, its log is printed.
struct Driver {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: PathBuf,
}

impl Driver {
    fn start(py: &Path) -> Driver {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyssimist-interop");
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyssimist/driver.py");
        let log = std::fs::File::create(dir.join("driver.log")).unwrap();
        let mut child = Command::new(py)
            .arg("-u")
            .arg(&script)
            .arg("0")
            .current_dir(&dir) // pyssimist writes CallTrace.txt into its working directory
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut d = Driver {
            child,
            _stdin: stdin,
            port: 0,
            dir,
        };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        d.port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("the driver did not report its port: {line:?}"));
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("driver.log")).unwrap_or_default();
            eprintln!(
                "---- driver.log (pyssimist's trace: {}) ----\n{log}",
                self.dir.join("CallTrace.txt").display()
            );
        }
    }
}

fn config(port: u16) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
server-name = "ctid-pyssimist"

[[link]]
name = "pyssimist"
host = "127.0.0.1"
port = {port}
session = "system-register"
edition = "ed4"
# pyssimist's mock does not answer RequestSystemStatus (only the driver's catch-all would)
kpl-interval = 0
connect-tout = 5
reconnect-min = 0.2
reconnect-max = 1

[[dn]]
number = "{A}"
register = true

[[dn]]
number = "{B}"
register = true
"#
    );
    Config::parse(&text).expect("valid configuration")
}

/// Wait until ctid's link is up with both DNs monitored.
async fn wait_up(ctid: &Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut rx = ctid.status.clone();
    loop {
        {
            let s = rx.borrow();
            if s.link.as_str() == "up" && s.monitored == 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ctid never came up against pyssimist: link {:?}, {} monitored",
                s.link,
                s.monitored
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// Events up to and including `name` on every one of `dns` (in any order); returns those
/// `name` events in the order of `dns`. An EventError fails the test.
async fn until(c: &mut Client, name: EventName, dns: &[&str], seen: &mut Vec<Event>) -> Vec<Event> {
    let deadline = Instant::now() + T;
    let mut found: Vec<Option<Event>> = vec![None; dns.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {name:?} on each of {dns:?}; after {seen:#?}"));
        assert_ne!(ev.name, EventName::EventError, "{ev:?}");
        seen.push(ev.clone());
        if ev.name == name {
            if let Some(i) = dns.iter().position(|d| ev.this_dn.as_deref() == Some(*d)) {
                found[i].get_or_insert(ev);
            }
        }
    }
    found.into_iter().flatten().collect()
}

fn req(name: RequestName, dn: &str) -> Request {
    Request::new(name).with_this_dn(dn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctid_works_against_pyssimists_mock_csta_server() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let t0 = Instant::now();
    let py = match venv() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED ctid against pyssimist's mock CSTA server: {e}");
            return;
        }
    };
    let driver = Driver::start(&py);
    let mut ctid = ctid_server::start(config(driver.port)).await.unwrap();
    wait_up(&ctid).await;
    assert_eq!(ctid.metrics.monitored_dns.get(), 2);

    // A client sees the link up and registers both DNs.
    let mut c = Client::connect(&ctid.ws_url()).await.unwrap();
    let first = c.next_event(T).await.unwrap().expect("link status");
    assert_eq!(first.name, EventName::EventLinkConnected, "{first:?}");
    for dn in [A, B] {
        let ev = c.request(Request::register_address(dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }

    // MakeCall A → B: the driver delivers the call to B, which answers.
    let dial = c
        .request(req(RequestName::RequestMakeCall, A).with_other_dn(B), T)
        .await
        .unwrap();
    assert_eq!(dial.name, EventName::EventDialing, "{dial:?}");
    assert_eq!(dial.this_dn.as_deref(), Some(A));
    assert_eq!(dial.other_dn.as_deref(), Some(B));
    let conn: ConnId = dial.conn_id.expect("EventDialing has a ConnID");
    let mut seen = vec![dial];
    let ring = until(&mut c, EventName::EventRinging, &[B], &mut seen).await;
    assert_eq!(ring[0].other_dn.as_deref(), Some(A), "{ring:?}");
    let est = until(&mut c, EventName::EventEstablished, &[A, B], &mut seen).await;
    assert_eq!(est[0].other_dn.as_deref(), Some(B), "{est:?}");
    assert_eq!(est[1].other_dn.as_deref(), Some(A), "{est:?}");
    let conns: BTreeSet<ConnId> = seen.iter().filter_map(|e| e.conn_id).collect();
    assert_eq!(
        conns,
        BTreeSet::from([conn]),
        "one call, one ConnID: {seen:#?}"
    );

    // Release from A: ClearConnection; both parties are released.
    let mut rel = req(RequestName::RequestReleaseCall, A);
    rel.conn_id = Some(conn);
    let rel = c.request(rel, T).await.unwrap();
    assert_eq!(rel.name, EventName::EventReleased, "{rel:?}");
    assert_eq!((rel.this_dn.as_deref(), rel.conn_id), (Some(A), Some(conn)));
    let mut seen = vec![rel];
    let rel_b = until(&mut c, EventName::EventReleased, &[B], &mut seen).await;
    assert_eq!(rel_b[0].conn_id, Some(conn), "{rel_b:?}");

    // Nothing pyssimist sent was unreadable or unexpected.
    assert_eq!(ctid.metrics.bad_frames.get(), 0, "bad CSTA frames");
    assert_eq!(
        ctid.metrics.unknown_messages.get(),
        0,
        "unknown CSTA messages"
    );
    assert_eq!(
        ctid.metrics.unmatched_answers.get(),
        0,
        "unmatched CSTA answers"
    );
    assert_eq!(ctid.metrics.reconnects.get(), 0, "reconnects");
    ctid.stop();
    drop(driver);
    eprintln!("pyssimist interop: {:.1} s", t0.elapsed().as_secs_f64());
}
