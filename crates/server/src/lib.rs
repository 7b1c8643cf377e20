//! ctid-server: the `ctid` process. Configuration ([`config`]), the CSTA link driver, the core
//! task that owns the engine, and the client port (WebSocket + HTTP, [`http`]). [`start`] runs
//! it all on the current tokio runtime; `ctid --demo` adds an embedded csta-sim ([`demo`]).
//! Operability: metrics ([`metrics`]), configuration reload ([`reload`]), the web monitor ([`web`]).
#![deny(unsafe_code)]

pub mod config;
pub mod core;
pub mod demo;
pub mod http;
pub mod link;
pub mod metrics;
pub mod reload;
pub mod session;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::Config;

/// A running ctid. Dropping it stops every task.
pub struct Running {
    /// Where clients connect (`ws://ADDR/ws`).
    pub addr: SocketAddr,
    pub metrics: metrics::Metrics,
    pub status: watch::Receiver<core::Status>,
    /// Re-reads the configuration file (SIGHUP, `POST /admin/reload`).
    pub reloader: Arc<reload::Reloader>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start-up options beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The file the configuration came from; reloads re-read it (`None`: reload is refused).
    pub config_path: Option<PathBuf>,
    /// Bearer token for `POST /admin/reload` (`CTID_ADMIN_TOKEN`); `None` disables `/admin/*`.
    pub admin_token: Option<String>,
}

impl Running {
    /// The WebSocket URL of the client port.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
    /// Stop every task.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start ctid with this configuration.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    start_with(cfg, StartOptions::default()).await
}

/// Start ctid with this configuration and options.
pub async fn start_with(cfg: Config, opts: StartOptions) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let metrics = metrics::Metrics::default();
    let (core_tx, core_rx) = mpsc::channel(65_536);
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(core::Status::default());
    let engine = ctid_engine::Engine::new(cfg.engine.clone());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        core::Core::new(engine, link_tx, metrics.clone(), status_tx).run(core_rx),
    ));
    anyhow::ensure!(!cfg.links.is_empty(), "no [[link]] configured");
    tasks.push(tokio::spawn(link::run_links(
        cfg.links.clone(),
        core_tx.clone(),
        link_rx,
        metrics.clone(),
    )));
    let reloader = Arc::new(reload::Reloader::new(
        opts.config_path,
        core_tx.clone(),
        cfg.clone(),
        metrics.clone(),
    ));
    let app = http::router(http::AppState {
        core: core_tx,
        status: status_rx.clone(),
        metrics: metrics.clone(),
        next_id: Arc::new(AtomicU64::new(0)),
        max_frame: cfg.max_client_frame,
        queue: cfg.client_queue,
        reloader: reloader.clone(),
        admin_token: opts.admin_token,
        links: cfg
            .links
            .iter()
            .map(|l| (l.name.clone(), format!("{}:{}", l.host, l.port), l.priority))
            .collect(),
        client: cfg.client.clone(),
    });
    tasks.push(tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc).await {
            tracing::error!(error = %e, "client port failed");
        }
    }));
    tracing::info!(%addr, "ctid listening (ws://{addr}/ws)");
    Ok(Running {
        addr,
        metrics,
        status: status_rx,
        reloader,
        tasks,
    })
}
