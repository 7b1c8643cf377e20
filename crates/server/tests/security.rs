//! The client port's security: bearer-token authentication (`auth = "token"`,
//! `[[client-token]]`) on `/ws` and `/api/state` with the probes left open, token rotation by a
//! reload, and TLS (`[tls]`): a WSS client trusting a self-signed certificate made here registers
//! a DN; a plain-TCP client to the TLS port fails cleanly and the server keeps serving.
//! Per-token permissions (a monitor-only token is refused call control and private services with
//! EventError 51 on a session that stays open) and `max-clients` (HTTP 503 beyond it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{parse_event, ErrorCode, EventName, Request};
use ctid_server::auth::{AuthConfig, AuthMode, ClientToken, Permission, Permissions};
use ctid_server::config::TlsConfig;
use ctid_server::demo::demo_config;
use ctid_server::{Config, Running};
use ctid_sim::{Sim, SimConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const T: Duration = Duration::from_secs(5);
const DESK: &str = "desk-token-0123456789abcdef";
const OPS: &str = "ops-token-fedcba9876543210";
const WATCH: &str = "watch-token-5555555555555555";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn tokens() -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Token,
        tokens: vec![
            ClientToken {
                name: "desk".into(),
                token: DESK.into(),
                admin: false,
                permissions: Permissions::ALL,
            },
            ClientToken {
                name: "ops".into(),
                token: OPS.into(),
                admin: true,
                permissions: Permissions::ALL,
            },
            ClientToken {
                name: "watch".into(),
                token: WATCH.into(),
                admin: false,
                permissions: Permissions::NONE.with(Permission::Monitor),
            },
        ],
        explicit: true,
    }
}

async fn wait_up(ctid: &Running) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctid.status.borrow().link.as_str() != "up" {
        assert!(Instant::now() < deadline, "link never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rig_with(edit: impl FnOnce(&mut Config)) -> (Sim, Running) {
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let mut cfg = demo_config(any(), sim.csta_addr());
    edit(&mut cfg);
    let ctid = ctid_server::start(cfg).await.unwrap();
    wait_up(&ctid).await;
    (sim, ctid)
}

/// A fresh directory for this test's files.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctid-security-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One HTTP/1.1 request over any stream; returns (status, body).
async fn http_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

async fn http(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    http_on(
        TcpStream::connect(addr).await.unwrap(),
        method,
        path,
        bearer,
    )
    .await
}

/// The refused upgrade: HTTP status and the one-line reason.
async fn refused(url: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Err(WsError::Http(r)) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string(),
        ),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("upgrade accepted without a valid token"),
    }
}

/// Read events from a raw WebSocket until `want` (returns it).
async fn until<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, want: EventName) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let ev = parse_event(&t).unwrap();
                if ev.name == want {
                    return t.to_string();
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {want:?}: {other:?}"),
        }
    }
}

async fn register_raw<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, dn: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = Request::register_address(dn).with_reference_id(7).to_json();
    ws.send(Message::text(req)).await.unwrap();
    let t = until(ws, EventName::EventRegistered).await;
    assert!(t.contains(dn), "{t}");
}

#[tokio::test]
async fn token_auth_guards_the_client_port_and_leaves_the_probes_open() {
    let (_sim, ctid) = rig_with(|c| c.auth = tokens()).await;
    let url = ctid.ws_url();

    let (code, body) = refused(&url).await;
    assert_eq!(code, 401);
    assert!(body.contains("authentication required"), "{body:?}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    let (code, body) = refused(&format!("{url}?token=not-a-token-0123456789")).await;
    assert_eq!(code, 401);
    assert!(body.contains("invalid token"), "{body:?}");
    let mut wrong = url.as_str().into_client_request().unwrap();
    wrong.headers_mut().insert(
        "authorization",
        "Bearer desk-token-0123456789abcdeX".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(wrong).await {
        Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("wrong header token: {:?}", other.map(|_| ())),
    }

    // Header token: the link status on connect, then it works.
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {DESK}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let first = until(&mut ws, EventName::EventLinkConnected).await;
    assert!(first.contains("EventLinkConnected"));
    register_raw(&mut ws, "2002").await;

    // Query token (what browsers and ctid-client can do).
    let mut c = Client::connect(&format!("{url}?token={OPS}"))
        .await
        .unwrap();
    let ev = c.next_event(T).await.unwrap().unwrap();
    assert_eq!(ev.name, EventName::EventLinkConnected);
    let ev = c
        .request(Request::register_address("2003"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");

    // Probes and the static page stay open; the monitor's data does not.
    assert_eq!(http(ctid.addr, "GET", "/healthz", None).await.0, 200);
    assert_eq!(http(ctid.addr, "GET", "/readyz", None).await.0, 200);
    assert_eq!(http(ctid.addr, "GET", "/metrics", None).await.0, 200);
    assert_eq!(http(ctid.addr, "GET", "/", None).await.0, 200);
    let (code, body) = http(ctid.addr, "GET", "/api/state", None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        http(ctid.addr, "GET", "/api/state", Some(DESK)).await.0,
        200
    );
    let q = format!("/api/state?limit=5&token={DESK}");
    assert_eq!(http(ctid.addr, "GET", &q, None).await.0, 200);

    // The session opened with the header token still works after all that.
    register_raw(&mut ws, "2004").await;
}

/// A monitor-only token registers and queries; call control and private services are answered
/// with EventError 51 naming the token, and the session goes on.
#[tokio::test]
async fn a_monitor_only_token_is_refused_call_control_and_private_services() {
    let (_sim, ctid) = rig_with(|c| c.auth = tokens()).await;
    let url = format!("{}?token={WATCH}", ctid.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    until(&mut ws, EventName::EventLinkConnected).await;
    register_raw(&mut ws, "2002").await;
    let q = Request::query_address("2002", ctid_protocol::AddressInfoType::DnStatus)
        .with_reference_id(8)
        .to_json();
    ws.send(Message::text(q)).await.unwrap();
    until(&mut ws, EventName::EventAddressInfo).await;

    let mut make = Request::new(ctid_protocol::RequestName::RequestMakeCall)
        .with_reference_id(9)
        .with_this_dn("2002")
        .with_other_dn("2003");
    make.make_call_type = Some(ctid_protocol::MakeCallType::Regular);
    ws.send(Message::text(make.to_json())).await.unwrap();
    let e = parse_event(&until(&mut ws, EventName::EventError).await).unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(51), "{e:?}");
    let m = e.error_message.clone().unwrap_or_default();
    assert!(
        m.contains("token watch") && m.contains("RequestMakeCall") && m.contains("\"call\""),
        "{m}"
    );
    assert!(e.event_sequence_number > 0, "{e:?}");

    let private = Request::private_service("2002", 1).with_reference_id(10);
    ws.send(Message::text(private.to_json())).await.unwrap();
    let e = parse_event(&until(&mut ws, EventName::EventError).await).unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(51), "{e:?}");
    let m = e.error_message.clone().unwrap_or_default();
    assert!(
        m.contains("RequestPrivateService") && m.contains("\"private\""),
        "{m}"
    );

    // The session is still usable, and a full token on the same server may make the call.
    register_raw(&mut ws, "2004").await;
    let mut c = Client::connect(&format!("{}?token={DESK}", ctid.ws_url()))
        .await
        .unwrap();
    c.next_event(T).await.unwrap().unwrap();
    let ev = c
        .request(Request::register_address("2005"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    let mut make = Request::new(ctid_protocol::RequestName::RequestMakeCall)
        .with_this_dn("2005")
        .with_other_dn("2006");
    make.make_call_type = Some(ctid_protocol::MakeCallType::Regular);
    let ev = c.request(make, T).await.unwrap();
    assert_ne!(ev.name, EventName::EventError, "{ev:?}");
}

/// `max-clients`: the upgrade beyond it is answered 503 with a one-line reason; the sessions
/// already open go on, and a closed one frees its place.
#[tokio::test]
async fn max_clients_refuses_the_upgrade_beyond_it() {
    let (_sim, ctid) = rig_with(|c| c.client.max_clients = 2).await;
    let url = ctid.ws_url();
    let mut a = Client::connect(&url).await.unwrap();
    a.next_event(T).await.unwrap().unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    until(&mut b, EventName::EventLinkConnected).await;

    let (code, body) = refused(&url).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("max-clients"), "{body:?}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    // The probes are not sessions.
    assert_eq!(http(ctid.addr, "GET", "/healthz", None).await.0, 200);

    let ev = a
        .request(Request::register_address("2002"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    register_raw(&mut b, "2003").await;

    // One leaves: a new one gets in (once the server has seen the close).
    b.close(None).await.unwrap();
    drop(b);
    let deadline = Instant::now() + T;
    let (mut c, _) = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(ok) => break ok,
            Err(WsError::Http(r)) if r.status().as_u16() == 503 => {
                assert!(
                    Instant::now() < deadline,
                    "the closed session's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    until(&mut c, EventName::EventLinkConnected).await;
    register_raw(&mut c, "2004").await;
    assert_eq!(refused(&url).await.0, 503);
}

/// With `auth` left out, the loopback client port (the demo, these tests) serves clients without
/// a token; `Config::check_auth` refuses the same configuration on any other address.
#[tokio::test]
async fn auth_none_is_the_default_on_loopback() {
    let (_sim, ctid) = rig_with(|_| {}).await;
    assert_eq!(http(ctid.addr, "GET", "/api/state", None).await.0, 200);
    let mut c = Client::connect(&ctid.ws_url()).await.unwrap();
    let ev = c.next_event(T).await.unwrap().unwrap();
    assert_eq!(ev.name, EventName::EventLinkConnected);
    let mut cfg = Config::parse("[[link]]\nhost='x'\n").unwrap();
    cfg.check_auth().unwrap();
    cfg.listen = "0.0.0.0:7000".parse().unwrap();
    let e = cfg.check_auth().unwrap_err();
    assert!(
        e.starts_with("auth: the client port listens on 0.0.0.0:7000"),
        "{e}"
    );
}

#[tokio::test]
async fn config_keys_and_their_errors() {
    let dir = scratch("keys");
    std::fs::write(dir.join("desk.token"), format!("{DESK}\n")).unwrap();
    let text = format!(
        "auth = \"token\"\n[[link]]\nhost='x'\n[[client-token]]\nname='desk'\ntoken-file='desk.token'\n[[client-token]]\ntoken='{OPS}'\nadmin=true\n"
    );
    let file = dir.join("ctid.toml");
    std::fs::write(&file, &text).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.auth.mode, AuthMode::Token);
    assert_eq!(c.auth.tokens.len(), 2);
    assert_eq!(c.auth.tokens[0].name, "desk");
    assert_eq!(c.auth.tokens[0].token, DESK);
    assert_eq!(c.auth.tokens[1].name, "token2");
    assert!(c.auth.tokens[1].admin);
    assert!(!format!("{c:?}").contains(DESK), "token in Debug output");
    assert!(c.auth.tokens.iter().all(|t| t.permissions.is_all()));
    let e = Config::parse(&format!(
        "auth = \"token\"\n[[link]]\nhost='x'\n[[client-token]]\ntoken='{OPS}'\npermissions=['monitor','everything']\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("client-token[0].permissions") && e.contains("everything"),
        "{e}"
    );
    // `--check-config` (Config::load): no `auth` on a non-loopback `listen` is an error.
    std::fs::write(&file, "listen = '0.0.0.0:7000'\n[[link]]\nhost='x'\n").unwrap();
    let e = Config::load(&file).unwrap_err();
    assert!(
        e.contains("auth: the client port listens on") && e.contains("not loopback"),
        "{e}"
    );
    std::fs::write(
        &file,
        "listen = '0.0.0.0:7000'\nauth = 'none'\n[[link]]\nhost='x'\n",
    )
    .unwrap();
    Config::load(&file).unwrap();

    let e = Config::parse("auth = \"token\"\n[[link]]\nhost='x'\n").unwrap_err();
    assert!(e.contains("auth") && e.contains("client-token"), "{e}");
    let e = Config::parse("auth = \"password\"\n[[link]]\nhost='x'\n").unwrap_err();
    assert!(e.starts_with("auth:"), "{e}");
    let e = Config::parse("[[link]]\nhost='x'\n[[client-token]]\ntoken='short'\n").unwrap_err();
    assert!(e.contains("client-token[0].token"), "{e}");
    let e = Config::parse("[[link]]\nhost='x'\n[[client-token]]\ntoken-file='/nonexistent/t'\n")
        .unwrap_err();
    assert!(e.contains("client-token[0].token-file"), "{e}");
    let e = Config::parse(
        "[[link]]\nhost='x'\n[tls]\ncert='/nonexistent/c.pem'\nkey='/nonexistent/k.pem'\n",
    )
    .unwrap_err();
    assert!(e.starts_with("tls.cert"), "{e}");
    let (cert, _) = self_signed(&dir);
    let e = Config::parse(&format!(
        "[[link]]\nhost='x'\n[tls]\ncert='{}'\nkey='/nonexistent/k.pem'\n",
        cert.display()
    ))
    .unwrap_err();
    assert!(e.starts_with("tls.key"), "{e}");
}

/// Tokens are re-read by a reload (`POST /admin/reload` with an `admin = true` token): a rotated
/// token file takes effect without a restart.
#[tokio::test]
async fn a_reload_rotates_tokens() {
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let dir = scratch("rotate");
    let old = "old-desk-token-0123456789";
    let new = "new-desk-token-9876543210";
    std::fs::write(dir.join("desk.token"), old).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nauth = \"token\"\n[[link]]\nhost = \"{}\"\nport = {}\n[[dn]]\nrange = \"2001-2010\"\n[[client-token]]\nname = \"desk\"\ntoken-file = \"desk.token\"\n[[client-token]]\nname = \"ops\"\ntoken = \"{OPS}\"\nadmin = true\n",
        sim.csta_addr().ip(),
        sim.csta_addr().port()
    );
    let file = dir.join("ctid.toml");
    std::fs::write(&file, text).unwrap();
    let cfg = Config::load(&file).unwrap();
    let ctid = ctid_server::start_with(
        cfg,
        ctid_server::StartOptions {
            config_path: Some(file),
            admin_token: None,
        },
    )
    .await
    .unwrap();
    wait_up(&ctid).await;
    let url = ctid.ws_url();
    let mut before = Client::connect(&format!("{url}?token={old}"))
        .await
        .unwrap();
    before.next_event(T).await.unwrap().unwrap();

    std::fs::write(dir.join("desk.token"), new).unwrap();
    // A non-admin token may not reload.
    assert_eq!(
        http(ctid.addr, "POST", "/admin/reload", Some(old)).await.0,
        401
    );
    let (code, body) = http(ctid.addr, "POST", "/admin/reload", Some(OPS)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("2 client token(s)"), "{body}");

    assert_eq!(refused(&format!("{url}?token={old}")).await.0, 401);
    let mut after = Client::connect(&format!("{url}?token={new}"))
        .await
        .unwrap();
    assert_eq!(
        after.next_event(T).await.unwrap().unwrap().name,
        EventName::EventLinkConnected
    );
    // A session opened with the old token stays open.
    let ev = before
        .request(Request::register_address("2005"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
}

// ---------------------------------------------------------------------------------------- TLS

/// A self-signed certificate for localhost / 127.0.0.1 in `dir`: (cert.pem, key.pem).
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// A TLS connector trusting exactly the certificate in `cert`.
fn connector(cert: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_to(addr: SocketAddr, cert: &std::path::Path) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector(cert).connect(name, tcp).await.unwrap()
}

/// A WSS session (the bearer header when a token is given).
async fn wss(
    ctid: &Running,
    cert: &std::path::Path,
    token: Option<&str>,
) -> tokio_tungstenite::WebSocketStream<Tls> {
    let mut req = "wss://localhost/ws".into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let tls = tls_to(ctid.addr, cert).await;
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws
}

#[tokio::test]
async fn tls_serves_wss_and_survives_plain_clients() {
    let dir = scratch("tls");
    let (cert, key) = self_signed(&dir);
    let (_sim, ctid) = rig_with(|c| {
        c.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
        c.auth = tokens();
    })
    .await;
    assert!(ctid.ws_url().starts_with("wss://"), "{}", ctid.ws_url());

    // A WSS client (trusting the self-signed certificate, token in the header) registers a DN.
    let mut ws = wss(&ctid, &cert, Some(DESK)).await;
    until(&mut ws, EventName::EventLinkConnected).await;
    register_raw(&mut ws, "2002").await;

    // Plain WebSocket and plain HTTP to the TLS port fail cleanly (no hang, no answer).
    let plain = format!("ws://{}/ws?token={DESK}", ctid.addr);
    match tokio::time::timeout(T, tokio_tungstenite::connect_async(plain.as_str())).await {
        Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("plain WebSocket accepted on the TLS port"),
        Err(_) => panic!("plain WebSocket to the TLS port hung"),
    }
    let mut tcp = TcpStream::connect(ctid.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // Garbage, then silence, then a half-done handshake: each only costs its own connection.
    let mut junk = TcpStream::connect(ctid.addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    drop(junk);

    // The server keeps serving: the open session and new ones, HTTPS included.
    register_raw(&mut ws, "2003").await;
    let mut again = wss(&ctid, &cert, Some(OPS)).await;
    until(&mut again, EventName::EventLinkConnected).await;
    register_raw(&mut again, "2004").await;
    let (code, body) = http_on(tls_to(ctid.addr, &cert).await, "GET", "/healthz", None).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = http_on(tls_to(ctid.addr, &cert).await, "GET", "/api/state", None).await;
    assert_eq!(code, 401);
    // And WSS without a token is refused like WS.
    let tls = tls_to(ctid.addr, &cert).await;
    match tokio_tungstenite::client_async("wss://localhost/ws", tls).await {
        Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("WSS without a token: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn bad_certificate_paths_stop_start_up() {
    let dir = scratch("badtls");
    let (cert, _key) = self_signed(&dir);
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let mut cfg = demo_config(any(), sim.csta_addr());
    cfg.tls = Some(TlsConfig {
        cert: cert.clone(),
        key: garbage,
    });
    let e = ctid_server::start(cfg.clone())
        .await
        .err()
        .expect("started");
    assert!(e.to_string().starts_with("tls.key"), "{e}");
    cfg.tls = Some(TlsConfig {
        cert: dir.join("missing.pem"),
        key: cert,
    });
    let e = ctid_server::start(cfg).await.err().expect("started");
    assert!(e.to_string().starts_with("tls.cert"), "{e}");
}

#[tokio::test]
async fn a_changed_token_file_is_picked_up_without_a_reload() {
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let dir = scratch("watch");
    let old = "old-watch-token-0123456789";
    let new = "new-watch-token-9876543210";
    std::fs::write(dir.join("desk.token"), old).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nauth = \"token\"\n[[link]]\nhost = \"{}\"\nport = {}\n[[dn]]\nrange = \"2001-2010\"\n[[client-token]]\nname = \"desk\"\ntoken-file = \"desk.token\"\n",
        sim.csta_addr().ip(),
        sim.csta_addr().port()
    );
    let file = dir.join("ctid.toml");
    std::fs::write(&file, text).unwrap();
    let cfg = Config::load(&file).unwrap();
    let ctid = ctid_server::start_with(
        cfg,
        ctid_server::StartOptions {
            config_path: Some(file),
            admin_token: None,
        },
    )
    .await
    .unwrap();
    wait_up(&ctid).await;
    let url = ctid.ws_url();
    assert!(Client::connect(&format!("{url}?token={old}")).await.is_ok());
    std::fs::write(dir.join("desk.token"), new).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if Client::connect(&format!("{url}?token={new}")).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new token was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(refused(&format!("{url}?token={old}")).await.0, 401);
}

#[tokio::test]
async fn a_session_resumed_with_another_token_is_refused_and_ended() {
    let (_sim, ctid) = rig_with(|c| c.auth = tokens()).await;
    wait_up(&ctid).await;
    let open = |token: &'static str| {
        let url = format!("{}?token={token}", ctid.ws_url());
        async move {
            let mut c = Client::connect(&url).await.unwrap();
            let first = c.next_event(T).await.unwrap().unwrap();
            let id = first.session_id.clone().unwrap();
            (c, id, first.event_sequence_number)
        }
    };
    let (mut desk, id, seq) = open(DESK).await;
    desk.request(Request::register_address("1001"), T)
        .await
        .unwrap();
    drop(desk); // lost, not closed: the session waits for a resume
                // a watch-only token may resume (its own sessions), not the desk's
    let (mut other, _, _) = open(WATCH).await;
    let ev = other
        .request(Request::resume_session(id.clone(), seq), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventError, "{ev:?}");
    assert_eq!(ev.error_code, Some(ErrorCode::SESSION_OTHER_TOKEN));
    // the leaked SessionID is burnt: the desk itself can no longer resume it
    let (mut again, _, _) = open(DESK).await;
    let ev = again
        .request(Request::resume_session(id, seq), T)
        .await
        .unwrap();
    assert_eq!(ev.error_code, Some(ErrorCode::SESSION_UNKNOWN), "{ev:?}");
}
