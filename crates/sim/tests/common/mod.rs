//! A raw CSTA client for the tests (the ctid-csta codec over a TCP socket), a one-line event
//! summary to assert whole events, and a tiny HTTP client for the control API.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_message, FrameItem, MAX_FRAME_LEN};
use ctid_csta::*;
use ctid_sim::{Sim, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn start(cfg: SimConfig) -> Sim {
    Sim::start(
        cfg,
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .expect("sim starts")
}

/// The demo switch without session start (the client speaks at once).
pub fn demo_none() -> SimConfig {
    SimConfig {
        session: ctid_sim::SessionMode::None,
        ..SimConfig::demo()
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    next: u16,
    /// Frames read while waiting for something else.
    queued: VecDeque<(InvokeId, Message)>,
    pub opts: CodecOptions,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            next: 1,
            queued: VecDeque::new(),
            opts: CodecOptions::default(),
        }
    }

    pub async fn send(&mut self, invoke: u16, msg: &Message) {
        let mut b = BytesMut::new();
        encode_message(InvokeId::new(invoke).unwrap(), msg, &self.opts, &mut b).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame from the socket; `None` on timeout or EOF.
    pub async fn read_frame(&mut self, wait: Duration) -> Option<(InvokeId, Message)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match decode_frame(&mut self.buf, MAX_FRAME_LEN).expect("framing") {
                Some(FrameItem::Frame(f)) => {
                    let m = decode(&f.xml).unwrap_or_else(|e| {
                        panic!(
                            "sim sent undecodable XML ({e}): {}",
                            String::from_utf8_lossy(&f.xml)
                        )
                    });
                    return Some((f.invoke_id, m));
                }
                Some(FrameItem::Skipped { error, .. }) => panic!("sim sent a bad frame: {error}"),
                None => {}
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Raw bytes until the deadline (for malformed-frame checks).
    pub async fn read_raw(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(n)) =
            tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await
        {
            if n == 0 {
                break;
            }
        }
        self.buf.split().to_vec()
    }

    pub fn next_invoke(&mut self) -> u16 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// Send a request and wait for its answer (events meanwhile are kept for `event`).
    pub async fn request(&mut self, msg: Message) -> Message {
        let id = self.next_invoke();
        self.send(id, &msg).await;
        self.answer(id).await
    }

    /// The answer with invoke `id`.
    pub async fn answer(&mut self, id: u16) -> Message {
        loop {
            let (inv, m) = self
                .read_frame(WAIT)
                .await
                .unwrap_or_else(|| panic!("no answer to invoke {id}"));
            let is_answer = matches!(m.kind(), MessageKind::Response | MessageKind::Error);
            if inv.get() == id && is_answer {
                return m;
            }
            self.queued.push_back((inv, m));
        }
    }

    /// The next unsolicited message (event or switch request) with its invoke ID.
    pub async fn next(&mut self) -> (InvokeId, Message) {
        if let Some(x) = self.queued.pop_front() {
            return x;
        }
        self.read_frame(WAIT).await.expect("a message from the sim")
    }

    /// The next event, summarised.
    pub async fn event(&mut self) -> String {
        let (inv, m) = self.next().await;
        assert!(
            inv.is_event() || m.kind() == MessageKind::Event,
            "expected an event, got {inv} {}",
            summary(&m)
        );
        summary(&m)
    }

    /// The next `n` events, summarised.
    pub async fn events(&mut self, n: usize) -> Vec<String> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.event().await);
        }
        v
    }

    /// Assert nothing arrives for `ms` milliseconds.
    pub async fn quiet(&mut self, ms: u64) {
        if let Some((inv, m)) = self.queued.pop_front() {
            panic!("unexpected {inv} {}", summary(&m));
        }
        if let Some((inv, m)) = self.read_frame(Duration::from_millis(ms)).await {
            panic!("unexpected {inv} {}", summary(&m));
        }
    }

    /// MonitorStart on `device`; returns the crossRefID.
    pub async fn monitor(&mut self, device: &str) -> String {
        let r = self
            .request(Message::MonitorStart(MonitorStart {
                monitor_object: MonitorObject::Device(device.into()),
                monitor_type: Some(MonitorType::Device),
                extensions: None,
            }))
            .await;
        match r {
            Message::MonitorStartResponse(r) => r.monitor_cross_ref_id.into(),
            other => panic!("MonitorStart {device}: {}", summary(&other)),
        }
    }
}

fn flat(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(flat).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            match keys.as_slice() {
                ["callID", "deviceID"] => {
                    format!("{}@{}", flat(&o["callID"]), flat(&o["deviceID"]))
                }
                ["callID"] => flat(&o["callID"]),
                ["deviceIdentifier"] | ["deviceID"] => flat(&o[keys[0]]),
                [k] if o[*k] == Value::Bool(true) => k.to_string(),
                [k] => format!("{k}:{}", flat(&o[*k])),
                _ => format!(
                    "{{{}}}",
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", flat(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            }
        }
    }
}

/// `Root k=v k=v …` with every field (keys sorted), connection IDs as `call@device`.
pub fn summary(m: &Message) -> String {
    let v = m.to_json();
    let o = v.as_object().unwrap();
    let mut s = m.name().to_string();
    for (k, x) in o {
        if k == "message" {
            continue;
        }
        s.push(' ');
        s.push_str(k);
        s.push('=');
        s.push_str(&flat(x));
    }
    s
}

pub fn conn(call: &str, dev: &str) -> ConnectionId {
    ConnectionId::new(call, dev)
}

pub fn make_call(from: &str, to: &str) -> Message {
    Message::MakeCall(MakeCall {
        calling_device: from.into(),
        called_directory_number: to.into(),
        account_code: None,
        auth_code: None,
        auto_originate: Some(AutoOriginate::DoNotPrompt),
        correlator_data: None,
        extensions: None,
    })
}

pub fn escape(h: HotDesk) -> Message {
    Message::Escape(Escape {
        escape_register_id: None,
        private_data: Some(h.into_private_data()),
        extensions: None,
    })
}

pub fn set_agent(device: &str, state: ReqAgentState, agent: Option<&str>) -> Message {
    Message::SetAgentState(SetAgentState {
        device: device.into(),
        requested_agent_state: state,
        agent_id: agent.map(Into::into),
        password: None,
        group: None,
        extensions: None,
    })
}

/// A minimal HTTP/1.1 client: returns (status, JSON body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((len, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    let v = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    (status, v)
}
