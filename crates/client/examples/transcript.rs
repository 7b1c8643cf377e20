//! Captures the call-model examples of docs/protocol.md from a real run: starts `ctid --demo`
//! in-process (ctid and the csta-sim demo switch on 127.0.0.1), drives it with ctid-client over
//! WebSocket and with the simulator's phone controls, and prints every frame in the document's
//! format: `[client] ← request` for a frame sent and `[client] → event` for a frame received.
//!
//! `cargo run -p ctid-client --example transcript`

use std::time::Duration;

use ctid_client::{Client, Received};
use ctid_protocol::{
    AgentWorkMode, ConnId, Event, EventName, ForwardMode, KvList, Request, RequestName,
};

const T: Duration = Duration::from_secs(8);
const QUIET: Duration = Duration::from_millis(250);

struct Tap {
    name: &'static str,
    c: Client,
}

impl Tap {
    async fn open(url: &str, name: &'static str, dns: &[&str]) -> Tap {
        let mut t = Tap {
            name,
            c: Client::connect(url).await.expect("connect"),
        };
        t.drain().await;
        for d in dns {
            t.ask(Request::register_address(*d)).await;
        }
        t
    }

    fn show(&self, r: &Received) {
        println!("[{}] → {}", self.name, r.raw);
    }

    /// Sends `req`, prints it and everything up to and including its answer.
    async fn ask(&mut self, mut req: Request) -> Event {
        let id = self.c.allocate_reference_id();
        req.reference_id = Some(id);
        println!("[{}] ← {}", self.name, req.to_json());
        self.c.send(&mut req).await.expect("send");
        loop {
            let r = self
                .c
                .next_received(T)
                .await
                .expect("receive")
                .unwrap_or_else(|| panic!("no answer to {}", req.to_json()));
            self.show(&r);
            if r.event.reference_id == Some(id) {
                return r.event;
            }
        }
    }

    /// Prints what arrives until a quiet spell.
    async fn drain(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(r) = self.c.next_received(QUIET).await.expect("receive") {
            self.show(&r);
            v.push(r.event);
        }
        v
    }
}

async fn drain_all(taps: &mut [&mut Tap]) -> Vec<Event> {
    let mut v = Vec::new();
    for t in taps.iter_mut() {
        v.extend(t.drain().await);
    }
    v
}

fn rq(name: RequestName, dn: &str) -> Request {
    Request::new(name).with_this_dn(dn)
}

fn on(mut r: Request, c: ConnId) -> Request {
    r.conn_id = Some(c);
    r
}

fn step(what: &str) {
    println!("\n## {what}");
}

fn conn_of(events: &[Event], name: EventName, dn: &str) -> ConnId {
    events
        .iter()
        .rev()
        .find(|e| e.name == name && e.this_dn.as_deref() == Some(dn))
        .and_then(|e| e.conn_id)
        .unwrap_or_else(|| panic!("no {name:?} on {dn}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let demo = ctid_server::demo::start_demo("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo");
    let url = demo.ctid.ws_url();
    let sim = &demo.sim;
    tokio::time::sleep(Duration::from_millis(1500)).await; // link up, monitors started

    step("connect, server info");
    let mut a = Tap::open(&url, "A", &[]).await;
    a.ask(Request::new(RequestName::RequestQueryServer)).await;
    let mut r = Request::new(RequestName::RequestRegisterClient);
    r.application_name = Some("desk-42".into());
    a.ask(r).await;

    step("register");
    a.ask(Request::register_address("1001")).await;
    let mut b = Tap::open(&url, "B", &["1002"]).await;
    let mut c = Tap::open(&url, "C", &["1003"]).await;

    step("basic call: MakeCall 1001 -> 1002");
    let dial = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    let c1 = dial.conn_id.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    step("AnswerCall at 1002");
    b.ask(on(rq(RequestName::RequestAnswerCall, "1002"), c1))
        .await;
    drain_all(&mut [&mut a, &mut b]).await;
    step("QueryAddress 1001 while talking");
    a.ask(Request::query_address(
        "1001",
        ctid_protocol::AddressInfoType::DnStatus,
    ))
    .await;
    step("Hold / Retrieve at 1001");
    a.ask(on(rq(RequestName::RequestHoldCall, "1001"), c1))
        .await;
    drain_all(&mut [&mut a, &mut b]).await;
    a.ask(on(rq(RequestName::RequestRetrieveCall, "1001"), c1))
        .await;
    drain_all(&mut [&mut a, &mut b]).await;
    step("SendDTMF");
    let mut r = on(rq(RequestName::RequestSendDTMF, "1001"), c1);
    r.dtmf_digits = Some("1234#".into());
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b]).await;
    step("QueryCall");
    a.ask(on(rq(RequestName::RequestQueryCall, "1001"), c1))
        .await;
    step("user data");
    let mut ud = KvList::new();
    ud.insert_str("CaseID", "C-77");
    ud.insert_str("Lang", "fr");
    let mut r = on(rq(RequestName::RequestAttachUserData, "1001"), c1);
    r.user_data = Some(ud);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b]).await;
    let mut ud = KvList::new();
    ud.insert_str("Lang", "en");
    ud.insert_int("Score", 42);
    let mut r = on(rq(RequestName::RequestUpdateUserData, "1001"), c1);
    r.user_data = Some(ud);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b]).await;
    let mut r = on(rq(RequestName::RequestDeletePair, "1001"), c1);
    r.data_key = Some("Lang".into());
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b]).await;
    a.ask(on(rq(RequestName::RequestDeleteUserData, "1001"), c1))
        .await;
    drain_all(&mut [&mut a, &mut b]).await;
    step("ReleaseCall at 1001");
    a.ask(on(rq(RequestName::RequestReleaseCall, "1001"), c1))
        .await;
    drain_all(&mut [&mut a, &mut b]).await;

    step("errors");
    a.ask(on(rq(RequestName::RequestHoldCall, "1001"), c1))
        .await; // 56 gone
    a.ask(rq(RequestName::RequestHoldCall, "1001")).await; // 53 ConnID missing
    a.ask(rq(RequestName::RequestMakeCall, "1005").with_other_dn("1002"))
        .await; // 41
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("10 02"))
        .await; // 71
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1001"))
        .await; // 11xx
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("4999"))
        .await; // 11xx unknown
    drain_all(&mut [&mut a]).await;

    step("dialled at the phone: EventOffHook");
    sim.dial("1001", "1002").await.unwrap();
    let evs = drain_all(&mut [&mut a, &mut b]).await;
    let c2 = conn_of(&evs, EventName::EventRinging, "1002");
    step("the caller hangs up while it rings: EventAbandoned");
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    let _ = c2;

    step("transfer: 1001 -> 1002, consult 1003, complete");
    let dial = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    let orig = dial.conn_id.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    let cons = a
        .ask(on(rq(RequestName::RequestInitiateTransfer, "1001"), orig).with_other_dn("1003"))
        .await
        .conn_id
        .unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.answer("1003").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    let mut r = on(rq(RequestName::RequestCompleteTransfer, "1001"), cons);
    r.transfer_conn_id = Some(orig);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.hangup("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("conference: 1001 -> 1002, consult 1003, complete, delete 1003, clear");
    let orig = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await
        .conn_id
        .unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    let cons = a
        .ask(on(rq(RequestName::RequestInitiateConference, "1001"), orig).with_other_dn("1003"))
        .await
        .conn_id
        .unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.answer("1003").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    let mut r = on(rq(RequestName::RequestCompleteConference, "1001"), cons);
    r.conference_conn_id = Some(orig);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    a.ask(on(rq(RequestName::RequestQueryCall, "1001"), orig).with_other_dn("1003"))
        .await;
    a.ask(on(rq(RequestName::RequestDeleteFromConference, "1001"), orig).with_other_dn("1003"))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    a.ask(on(rq(RequestName::RequestClearCall, "1001"), orig))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("alternate / reconnect");
    let orig = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await
        .conn_id
        .unwrap();
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    let cons = a
        .ask(on(rq(RequestName::RequestInitiateTransfer, "1001"), orig).with_other_dn("1003"))
        .await
        .conn_id
        .unwrap();
    sim.answer("1003").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    let mut r = on(rq(RequestName::RequestAlternateCall, "1001"), cons);
    r.transfer_conn_id = Some(orig);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    let mut r = on(rq(RequestName::RequestReconnectCall, "1001"), orig);
    r.transfer_conn_id = Some(cons);
    a.ask(r).await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    a.ask(on(rq(RequestName::RequestReleaseCall, "1001"), cons))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("mute transfer");
    let orig = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await
        .conn_id
        .unwrap();
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    a.ask(on(rq(RequestName::RequestMuteTransfer, "1001"), orig).with_other_dn("1003"))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.hangup("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("single-step transfer at 1002 to 1003");
    let orig = a
        .ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await
        .conn_id
        .unwrap();
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    b.ask(on(rq(RequestName::RequestSingleStepTransfer, "1002"), orig).with_other_dn("1003"))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("redirect the ringing call at 1002 to 1003");
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    let evs = drain_all(&mut [&mut a, &mut b]).await;
    let ring = conn_of(&evs, EventName::EventRinging, "1002");
    b.ask(on(rq(RequestName::RequestRedirectCall, "1002"), ring).with_other_dn("1003"))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;

    step("DND on 1003, call to it: EventDestinationBusy");
    c.ask(rq(RequestName::RequestSetDNDOn, "1003")).await;
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1003"))
        .await;
    drain_all(&mut [&mut a, &mut c]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut c]).await;
    c.ask(rq(RequestName::RequestSetDNDOff, "1003")).await;
    drain_all(&mut [&mut c]).await;

    step("forwarding 1002 -> 1003, a call to 1002");
    let mut r = rq(RequestName::RequestCallForwardSet, "1002").with_other_dn("1003");
    r.forward_mode = Some(ForwardMode::Unconditional);
    b.ask(r).await;
    b.ask(Request::query_address(
        "1002",
        ctid_protocol::AddressInfoType::DnStatus,
    ))
    .await;
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut b, &mut c]).await;
    let mut r = rq(RequestName::RequestCallForwardCancel, "1002");
    r.forward_mode = Some(ForwardMode::Unconditional);
    b.ask(r).await;
    drain_all(&mut [&mut b]).await;

    step("agent 2001 on DN 2001, queue 3001");
    let mut g = Tap::open(&url, "G", &["2001"]).await;
    let mut q = Tap::open(&url, "Q", &["3001"]).await;
    let mut r = rq(RequestName::RequestAgentLogin, "2001");
    r.agent_id = Some("2001".into());
    r.this_queue = Some("3001".into());
    g.ask(r).await;
    drain_all(&mut [&mut g]).await;
    let mut r = rq(RequestName::RequestAgentLogin, "2001");
    r.agent_id = Some("2002".into());
    g.ask(r).await; // 42
    g.ask(rq(RequestName::RequestAgentReady, "2001")).await;
    drain_all(&mut [&mut g]).await;
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("3001"))
        .await;
    drain_all(&mut [&mut a, &mut q, &mut g]).await;
    sim.answer("2001").await.unwrap();
    drain_all(&mut [&mut a, &mut q, &mut g]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut q, &mut g]).await;
    let mut r = rq(RequestName::RequestAgentNotReady, "2001");
    r.agent_work_mode = Some(AgentWorkMode::AfterCallWork);
    g.ask(r).await;
    g.ask(rq(RequestName::RequestAgentNotReady, "2001")).await;
    g.ask(rq(RequestName::RequestAgentLogout, "2001")).await;
    drain_all(&mut [&mut g]).await;
    g.ask(rq(RequestName::RequestAgentReady, "2001")).await; // refused

    step("route point 3101");
    let mut rp = Tap::open(&url, "R", &["3101"]).await;
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("3101"))
        .await;
    let evs = drain_all(&mut [&mut a, &mut rp]).await;
    let routed = conn_of(&evs, EventName::EventRouteRequest, "3101");
    let mut r = on(rq(RequestName::RequestRouteCall, "3101"), routed).with_other_dn("1002");
    r.route_type = Some(ctid_protocol::RouteType::Default);
    rp.ask(r).await;
    drain_all(&mut [&mut a, &mut rp, &mut b]).await;
    sim.hangup("1001").await.unwrap();
    drain_all(&mut [&mut a, &mut rp, &mut b]).await;

    step("switch stalls: 57");
    sim.set_stall(true).await;
    a.ask(rq(RequestName::RequestSetDNDOn, "1001")).await;
    sim.set_stall(false).await;
    drain_all(&mut [&mut a]).await;
    step("link down: 54; a call ends during the outage: resync");
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    sim.answer("1002").await.unwrap();
    drain_all(&mut [&mut a, &mut b]).await;
    sim.drop_connections().await;
    sim.hangup("1002").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.drain().await;
    a.ask(rq(RequestName::RequestMakeCall, "1001").with_other_dn("1002"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drain_all(&mut [&mut a, &mut b]).await;

    scripted_connector().await;
}

// ------------------------------------------------------------------ a scripted Connector

/// The events the demo switch never produces (a call leaving through a trunk, a device out of
/// service): ctid against a tiny scripted CSTA Connector that answers what ctid asks and then
/// sends NetworkReachedEvent and Out/BackInServiceEvent on the monitor of DN 4001.
async fn scripted_connector() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    step("scripted Connector: EventNetworkReached, EventDNOutOfService, EventDNBackInService");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let csta = listener.local_addr().unwrap();
    let cfg = ctid_server::Config::parse(&format!(
        r#"
listen = "127.0.0.1:0"
[[link]]
name = "connector-1"
host = "{}"
port = {}
session = "none"
[[dn]]
number = "4001"
type = "Extension"
register = true
"#,
        csta.ip(),
        csta.port()
    ))
    .expect("config");
    let ctid = ctid_server::start(cfg).await.expect("ctid");
    let (mut tcp, _) = listener.accept().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (xref_tx, mut xref_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    // the Connector: answers requests, sends what arrives on `rx` as events
    tokio::spawn(async move {
        let ns = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";
        let mut next_xref = 16;
        loop {
            let mut header = [0u8; 8];
            tokio::select! {
                r = tcp.read_exact(&mut header) => {
                    if r.is_err() { return; }
                    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                    let mut xml = vec![0u8; len - 8];
                    if tcp.read_exact(&mut xml).await.is_err() { return; }
                    let xml = String::from_utf8_lossy(&xml).into_owned();
                    let root = root_of(&xml);
                    let answer = match root.as_str() {
                        "RequestSystemStatus" => format!("<RequestSystemStatusResponse xmlns=\"{ns}\"><systemStatus>normal</systemStatus></RequestSystemStatusResponse>"),
                        "MonitorStart" => {
                            next_xref += 1;
                            let dev = between(&xml, "<deviceObject", "</deviceObject>").map(|v| v.rsplit('>').next().unwrap_or("").to_string()).unwrap_or_default();
                            let _ = xref_tx.send((dev, next_xref.to_string()));
                            format!("<MonitorStartResponse xmlns=\"{ns}\"><monitorCrossRefID>{next_xref}</monitorCrossRefID></MonitorStartResponse>")
                        }
                        "SnapshotDevice" => format!("<SnapshotDeviceResponse xmlns=\"{ns}\"><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
                        _ => format!("<CSTAErrorCode xmlns=\"{ns}\"><operation>serviceNotSupported</operation></CSTAErrorCode>"),
                    };
                    let invoke = [header[4], header[5], header[6], header[7]];
                    if tcp.write_all(&frame(invoke, &answer)).await.is_err() { return; }
                }
                ev = rx.recv() => {
                    let Some(ev) = ev else { return };
                    let body = ev.replace("NS", ns);
                    if tcp.write_all(&frame(*b"9999", &body)).await.is_err() { return; }
                }
            }
        }
    });
    let (dev, xref) = xref_rx.recv().await.expect("MonitorStart");
    assert_eq!(dev, "4001");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut d = Tap::open(&ctid.ws_url(), "D", &["4001"]).await;
    let x = xref;
    let events = [
        format!("<OriginatedEvent xmlns=\"NS\"><monitorCrossRefID>{x}</monitorCrossRefID><originatedConnection><callID>C42</callID><deviceID>4001</deviceID></originatedConnection><callingDevice><deviceIdentifier>4001</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>+4930555</deviceIdentifier></calledDevice><localConnectionInfo>connected</localConnectionInfo><cause>newCall</cause></OriginatedEvent>"),
        format!("<NetworkReachedEvent xmlns=\"NS\"><monitorCrossRefID>{x}</monitorCrossRefID><outboundConnection><callID>C42</callID><deviceID>T1</deviceID></outboundConnection><networkInterfaceUsed><deviceIdentifier>T1</deviceIdentifier></networkInterfaceUsed><callingDevice><deviceIdentifier>4001</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>+4930555</deviceIdentifier></calledDevice><localConnectionInfo>connected</localConnectionInfo><cause>normal</cause></NetworkReachedEvent>"),
        format!("<ConnectionClearedEvent xmlns=\"NS\"><monitorCrossRefID>{x}</monitorCrossRefID><droppedConnection><callID>C42</callID><deviceID>4001</deviceID></droppedConnection><releasingDevice><deviceIdentifier>4001</deviceIdentifier></releasingDevice><localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause></ConnectionClearedEvent>"),
        format!("<OutOfServiceEvent xmlns=\"NS\"><monitorCrossRefID>{x}</monitorCrossRefID><device><deviceIdentifier>4001</deviceIdentifier></device><cause>maintenance</cause></OutOfServiceEvent>"),
        format!("<BackInServiceEvent xmlns=\"NS\"><monitorCrossRefID>{x}</monitorCrossRefID><device><deviceIdentifier>4001</deviceIdentifier></device><cause>maintenance</cause></BackInServiceEvent>"),
    ];
    for (i, e) in events.iter().enumerate() {
        tx.send(e.clone()).unwrap();
        d.drain().await;
        if i == 3 {
            d.ask(Request::query_address(
                "4001",
                ctid_protocol::AddressInfoType::DnStatus,
            ))
            .await;
        }
    }
}

fn frame(invoke: [u8; 4], xml: &str) -> Vec<u8> {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{xml}");
    let len = u16::try_from(8 + xml.len()).expect("small frame");
    let mut v = vec![0, 0];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&invoke);
    v.extend_from_slice(xml.as_bytes());
    v
}

fn root_of(xml: &str) -> String {
    let body = match xml.find("?>") {
        Some(i) => &xml[i + 2..],
        None => xml,
    };
    let start = body.find('<').map_or(0, |i| i + 1);
    body[start..]
        .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .next()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_string()
}

fn between(s: &str, a: &str, b: &str) -> Option<String> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(s[i..j].to_string())
}
