//! TLS on the client port (`[tls] cert`, `key`): with it the port serves HTTPS and WSS only.
//!
//! A custom accept loop ([`serve`]): accept TCP, do the TLS handshake in the connection's own task
//! with a timeout, then serve the connection with hyper-util (HTTP/1.1 with upgrades, so
//! WebSocket works; HTTP/2 too). A failed or slow handshake is logged and that connection
//! dropped; the listener never stops for a client's fault.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::TlsConfig;

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Read the certificate chain and key and build the rustls server configuration. Errors name the
/// configuration key (`tls.cert`, `tls.key`) and the file.
pub fn server_config(t: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.cert: {}: {e}", t.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert: {}: no PEM certificate in the file",
            t.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .map_err(|e| format!("tls.key: {}: {e}", t.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls.key: {} does not fit tls.cert {}: {e}",
                t.key.display(),
                t.cert.display()
            )
        })?;
    // HTTP/1.1 only: WebSocket upgrades are HTTP/1.1 (browsers and ctid-client alike).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve `app` over TLS on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, cfg: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(cfg);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "client port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    info!(%peer, error = %e, "TLS handshake failed; connection dropped");
                    return;
                }
                Err(_) => {
                    info!(%peer, "TLS handshake timed out; connection dropped");
                    return;
                }
            };
            serve_conn(tls, peer, app).await;
        });
    }
}

async fn serve_conn<S>(io: S, peer: SocketAddr, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app.layer(Extension(ConnectInfo(peer))));
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
    {
        debug!(%peer, error = %e, "client connection ended with an error");
    }
}
