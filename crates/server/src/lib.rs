//! ctid-server: the `ctid` process. Configuration ([`config`]), the CSTA link driver, the core
//! task that owns the engine, and the client port (WebSocket + HTTP, [`http`]). [`start`] runs
//! it all on the current tokio runtime; `ctid --demo` adds an embedded csta-sim ([`demo`]).
//! Operability: metrics ([`metrics`]), configuration reload ([`reload`]), the web monitor ([`web`]),
//! recording the engine's inputs for `ctid-replay` ([`record`]).
#![deny(unsafe_code)]

pub mod auth;
pub mod config;
pub mod core;
pub mod demo;
pub mod export;
pub mod ha;
pub mod http;
pub mod link;
pub mod metrics;
pub mod record;
pub mod reload;
pub mod session;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::Config;

/// A running ctid. Dropping it stops every task.
pub struct Running {
    /// Where clients connect (`ws://ADDR/ws`, `wss://` with `[tls]`).
    pub addr: SocketAddr,
    /// The client port serves TLS (HTTPS/WSS) only.
    pub tls: bool,
    /// Client authentication in force (a reload through [`Running::reload`] swaps it).
    pub auth: auth::AuthStore,
    config_path: Option<PathBuf>,
    pub metrics: metrics::Metrics,
    pub status: watch::Receiver<core::Status>,
    /// Re-reads the configuration file (SIGHUP, `POST /admin/reload`).
    pub reloader: Arc<reload::Reloader>,
    /// `[ha]`: this node's view of the pair (`/api/ha`).
    pub ha: Option<watch::Receiver<ha::HaView>>,
    core: mpsc::Sender<core::CoreMsg>,
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
    /// Graceful shutdown: stop accepting, close every client session with a reason (WebSocket
    /// close 1001 "ctid is shutting down"), give the writers `grace` to flush, then stop the link
    /// and every task. Bounded by `grace` plus a second.
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        // The accept loop is the last task started.
        if let Some(accept) = self.tasks.pop() {
            accept.abort();
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.core.send(core::CoreMsg::Shutdown(tx)).await.is_ok() {
            if let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await {
                tracing::info!(clients = n, "client sessions closed");
            }
        }
        tokio::time::sleep(grace).await;
        self.stop();
        tracing::info!("stopped");
    }

    /// The WebSocket URL of the client port.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }
    /// Reload what is reloadable: the engine part and the client tokens ([`reload_all`]).
    pub async fn reload(&self) -> Result<String, reload::ReloadError> {
        reload_all(&self.reloader, self.config_path.as_deref(), &self.auth).await
    }
    /// `[ha]`: a planned switchover to `to` (or any ready backup), as
    /// `POST /admin/ha/switchover` does.
    pub async fn switchover(&self, to: Option<String>) -> Result<serde_json::Value, String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.core
            .send(core::CoreMsg::Switchover { to, reply })
            .await
            .map_err(|_| "ctid is stopping".to_string())?;
        rx.await.map_err(|_| "ctid is stopping".to_string())?
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

/// A configuration reload ([`reload::Reloader`]) that also re-reads `auth` and the
/// `[[client-token]]` entries (token files included) and puts them in force: rotating a token
/// needs no restart. Sessions already open stay open.
pub async fn reload_all(
    reloader: &reload::Reloader,
    path: Option<&Path>,
    auth: &auth::AuthStore,
) -> Result<String, reload::ReloadError> {
    let mut summary = reloader.reload().await?;
    if let Some(path) = path {
        match Config::load(path) {
            Ok(c) => {
                let n = c.auth.tokens.len();
                let mode = match c.auth.mode {
                    auth::AuthMode::None => "none",
                    auth::AuthMode::Token => "token",
                };
                if *auth.get() != c.auth {
                    tracing::info!(auth = mode, tokens = n, "client tokens reloaded");
                }
                auth.set(c.auth);
                summary.push_str(&format!("; auth = {mode}, {n} client token(s)"));
            }
            // Changed between the two reads: keep the tokens in force.
            Err(e) => summary.push_str(&format!("; client tokens not re-read: {e}")),
        }
    }
    Ok(summary)
}

/// `[ha]`: connect to NATS (retrying until it answers), open the input stream and the lease
/// bucket, hand them to the core, then run the lease task.
async fn ha_bootstrap(
    cfg: ha::HaConfig,
    shared: ha::Shared,
    core: mpsc::Sender<core::CoreMsg>,
    view: watch::Sender<ha::lease::LeaseWatch>,
) {
    use async_nats::jetstream;
    let mut complained = false;
    let mut complain = |what: &str, e: &str| {
        if !complained {
            tracing::warn!(error = %e, "hot standby: {what}; retrying (this node cannot serve until it can)");
            complained = true;
        }
    };
    let retry = std::time::Duration::from_millis(500);
    let client = loop {
        match ha::connect(&cfg.nats, &format!("ctid-{}", cfg.node)).await {
            Ok(c) => break c,
            Err(e) => complain("cannot connect to NATS", &e),
        }
        tokio::time::sleep(retry).await;
    };
    let js = jetstream::new(client);
    let log = loop {
        match ha::log::Log::open(js.clone(), &cfg).await {
            Ok(l) => break l,
            Err(e) => complain("cannot open the input stream", &e),
        }
        tokio::time::sleep(retry).await;
    };
    let kv = loop {
        let r = match js.get_key_value(cfg.bucket()).await {
            Ok(kv) => Ok(kv),
            Err(_) => js
                .create_key_value(jetstream::kv::Config {
                    bucket: cfg.bucket(),
                    history: 1,
                    num_replicas: cfg.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string()),
        };
        match r {
            Ok(kv) => break kv,
            Err(e) => complain("cannot open the lease bucket", &e),
        }
        tokio::time::sleep(retry).await;
    };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    if core
        .send(core::CoreMsg::HaUp {
            log: Box::new(log),
            lease_cmds: cmd_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    ha::lease::run(kv, cfg, shared, core, cmd_rx, view).await;
}

/// Start ctid with this configuration.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    start_with(cfg, StartOptions::default()).await
}

/// Start ctid with this configuration and options.
pub async fn start_with(mut cfg: Config, opts: StartOptions) -> anyhow::Result<Running> {
    // A link's `request-timeout` and `hotdesk.enabled` are read by its session and by the
    // engine's per-link option set: the link's value is the one (a caller may have changed it
    // after parsing).
    for l in &cfg.links {
        if let Some(o) = cfg.engine.links.iter_mut().find(|o| o.name == l.name) {
            o.request_timeout_ms = l.request_timeout.as_millis() as u64;
            o.hotdesk_enabled = l.hotdesk_enabled;
        }
    }
    if let Some(first) = cfg.engine.links.first().map(|o| o.name.clone()) {
        cfg.engine.select_link(&first);
    }
    // Unauthenticated clients only on loopback or with an explicit `auth = "none"` (this also
    // covers `--listen` overriding the file).
    cfg.check_auth().map_err(|e| anyhow::anyhow!(e))?;
    // Certificate and key first: a bad one stops start-up before anything listens.
    let tls = match &cfg.tls {
        Some(t) => Some(tls::server_config(t).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let metrics = metrics::Metrics::default();
    // The export: its lineage names this engine's events for the life of its state
    // (`Nats-Msg-Id` = lineage:EventSequenceNumber).
    cfg.engine.export_events = cfg.export.is_some();
    let export = match cfg.export.clone() {
        // A node of a pair starts the export when it becomes primary, with the cluster's lineage.
        Some(_) if cfg.ha.is_some() => None,
        Some(n) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let lineage: String = b.iter().map(|x| format!("{x:02x}")).collect();
            tracing::info!(urls = %n.urls.join(","), stream = %n.stream, prefix = %n.subject_prefix, %lineage, "event export to NATS JetStream on");
            Some(export::start(n, lineage, metrics.clone()))
        }
        None => None,
    };
    let (core_tx, core_rx) = mpsc::channel(65_536);
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(core::Status::default());
    // The recording starts with the engine's configuration: a file that cannot be created stops
    // start-up (the operator asked for it).
    let recorder = match &cfg.record_inputs {
        Some(path) => Some(
            record::Recorder::create(path, &cfg.engine, metrics.clone())
                .with_context(|| format!("record-inputs: cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let engine = ctid_engine::Engine::new(cfg.engine.clone());
    let mut tasks = Vec::new();
    anyhow::ensure!(!cfg.links.is_empty(), "no [[link]] configured");
    let (link_settings_tx, link_settings_rx) = watch::channel(cfg.links.clone());
    let next_id = Arc::new(AtomicU64::new(0));
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    // `[ha]`: the node starts as a backup, without a link; it connects the link when it
    // becomes primary (docs/operations.md §13).
    let (ha_core, ha_shared, ha_view) = match cfg.ha.clone() {
        Some(mut h) => {
            if h.advertise.is_empty() {
                h.advertise = format!("{scheme}://{addr}/ws");
                if addr.ip().is_unspecified() {
                    tracing::warn!(advertise = %h.advertise, "hot standby: [ha] advertise is not set and ctid listens on every address: clients sent here by the other node cannot use this URL; set advertise to the address clients reach");
                }
            }
            let shared = ha::Shared::new(ha::Gate::closed());
            let (lease_tx, lease_rx) = watch::channel(ha::lease::LeaseWatch::default());
            let (view_tx, view_rx) = watch::channel(ha::HaView {
                enabled: true,
                cluster: h.cluster.clone(),
                node: h.node.clone(),
                role: ha::Role::Backup,
                ..Default::default()
            });
            metrics.ha_enabled.set(1);
            metrics.ha_role.set(1);
            tracing::info!(cluster = %h.cluster, node = %h.node, advertise = %h.advertise, lease_ms = h.lease.as_millis() as u64, "hot standby on: starting as a backup");
            let core_ha = core::HaCore::new(
                h.clone(),
                shared.clone(),
                lease_rx,
                view_tx,
                core::LinkStart {
                    links: cfg.links.clone(),
                    settings: link_settings_rx.clone(),
                },
                cfg.engine.clone(),
                cfg.export.clone(),
                core_tx.clone(),
            );
            tasks.push(tokio::spawn(ha_bootstrap(
                h,
                shared.clone(),
                core_tx.clone(),
                lease_tx,
            )));
            (Some(core_ha), Some(shared), Some(view_rx))
        }
        None => (None, None, None),
    };
    let standalone = ha_core.is_none();
    tasks.push(tokio::spawn(
        core::Core::new(
            engine,
            link_tx,
            metrics.clone(),
            status_tx,
            cfg.client_queue_bytes,
        )
        .with_client_queue(cfg.client_queue)
        .with_recorder(recorder)
        .with_export(export)
        .with_next_id(next_id.clone())
        .with_ha(ha_core)
        .run(core_rx),
    ));
    if standalone {
        tasks.push(tokio::spawn(link::run_links(
            cfg.links.clone(),
            core_tx.clone(),
            link_rx,
            metrics.clone(),
            link_settings_rx,
            ha::Gate::open(),
        )));
    }
    let reloader = Arc::new(reload::Reloader::new(
        opts.config_path.clone(),
        core_tx.clone(),
        link_settings_tx,
        cfg.clone(),
        metrics.clone(),
    ));
    let auth_store = auth::AuthStore::new(cfg.auth.clone());
    // Token files are re-read when they change (and on every reload): a rotated token works
    // within seconds without SIGHUP. A file that does not parse meanwhile keeps the tokens in force.
    if let Some(path) = opts.config_path.clone() {
        if cfg.auth.mode == auth::AuthMode::Token {
            let store = auth_store.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(3));
                loop {
                    every.tick().await;
                    let Ok(c) = Config::load(&path) else { continue };
                    if *store.get() != c.auth {
                        tracing::info!(
                            tokens = c.auth.tokens.len(),
                            "client tokens changed on disk: reloaded"
                        );
                        store.set(c.auth);
                    }
                }
            }));
        }
    }
    let app = http::router(http::AppState {
        core: core_tx.clone(),
        status: status_rx.clone(),
        metrics: metrics.clone(),
        next_id,
        ha: ha_shared,
        ha_view: ha_view.clone(),
        max_frame: cfg.max_client_frame,
        queue: cfg.client_queue,
        reloader: reloader.clone(),
        admin_token: opts.admin_token,
        auth: auth_store.clone(),
        config_path: opts.config_path.clone(),
        links: cfg
            .links
            .iter()
            .map(|l| (l.name.clone(), format!("{}:{}", l.host, l.port), l.priority))
            .collect(),
        client: cfg.client.clone(),
    });
    let is_tls = tls.is_some();
    match tls {
        Some(tls) => tasks.push(tokio::spawn(tls::serve(listener, tls, app))),
        None => tasks.push(tokio::spawn(async move {
            let svc = app.into_make_service_with_connect_info::<SocketAddr>();
            // Events go out as soon as the core hands them over (the writer already sends a
            // turn's frames in one write): no Nagle delay behind an unacknowledged segment.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, svc).await {
                tracing::error!(error = %e, "client port failed");
            }
        })),
    }
    let auth_mode = match cfg.auth.mode {
        auth::AuthMode::None => "none",
        auth::AuthMode::Token => "token",
    };
    tracing::info!(%addr, tls = is_tls, auth = auth_mode, "ctid listening ({scheme}://{addr}/ws)");
    if cfg.auth.mode == auth::AuthMode::None && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "auth = \"none\" on a non-loopback address: anyone who reaches the port is served");
    }
    Ok(Running {
        addr,
        tls: is_tls,
        auth: auth_store,
        config_path: opts.config_path,
        metrics,
        status: status_rx,
        reloader,
        ha: ha_view,
        core: core_tx,
        tasks,
    })
}
