//! For tests, benches and examples that drive the engine without a switch: the answer an
//! empty switch gives to the requests the engine sends when it monitors a DN (no calls, no
//! agent, no forwarding, DND off; monitors named after their DN), and the snapshot proof over a
//! run of inputs ([`check_snapshots`]). Not used by ctid itself.

use ctid_csta::{
    GetAgentStateResponse, GetDoNotDisturbResponse, GetForwardingResponse, Message, MonitorObject,
    MonitorStartResponse, SnapshotDeviceResponse, SnapshotResult,
};

pub use crate::snapshot::first_difference;
use crate::{Engine, EngineConfig, Input, Now, Output};

/// The empty switch's answer to `msg`, or `None` for a request it does not answer this way
/// (a hot-desking Escape, call control, …: the caller answers those).
pub fn empty_switch_answer(msg: &Message) -> Option<Message> {
    Some(match msg {
        Message::MonitorStart(m) => {
            let MonitorObject::Device(d) = &m.monitor_object else {
                return None;
            };
            Message::MonitorStartResponse(MonitorStartResponse {
                monitor_cross_ref_id: d.clone(),
                monitor_existing_calls: None,
                extensions: None,
            })
        }
        Message::SnapshotDevice(_) => Message::SnapshotDeviceResponse(SnapshotDeviceResponse {
            cross_ref_id_or_snapshot_data: SnapshotResult::Data(vec![]),
            extensions: None,
        }),
        Message::GetAgentState(_) => Message::GetAgentStateResponse(GetAgentStateResponse {
            agent_state_list: vec![],
            extensions: None,
        }),
        Message::GetForwarding(_) => Message::GetForwardingResponse(GetForwardingResponse {
            forwarding_list: vec![],
            extensions: None,
        }),
        Message::GetDoNotDisturb(_) => Message::GetDoNotDisturbResponse(GetDoNotDisturbResponse {
            do_not_disturb_on: false,
            extensions: None,
        }),
        _ => return None,
    })
}

/// A DeliveredEvent seen on `monitor`: call `call` from `from` alerting at `to`.
pub fn delivered(monitor: &str, call: &str, from: &str, to: &str) -> Message {
    Message::DeliveredEvent(ctid_csta::DeliveredEvent {
        monitor_cross_ref_id: monitor.into(),
        connection: ctid_csta::ConnectionId::new(call, to),
        alerting_device: Some(ctid_csta::DeviceRef::id(to)),
        calling_device: Some(ctid_csta::DeviceRef::id(from)),
        called_device: Some(ctid_csta::DeviceRef::id(to)),
        last_redirection_device: None,
        originating_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(ctid_csta::EventCause::NewCall),
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    })
}

/// An EstablishedEvent seen on `monitor`: `to` answered call `call` from `from`.
pub fn established(
    monitor: &str,
    call: &str,
    from: &str,
    to: &str,
    cause: Option<ctid_csta::EventCause>,
) -> Message {
    Message::EstablishedEvent(ctid_csta::EstablishedEvent {
        monitor_cross_ref_id: monitor.into(),
        established_connection: ctid_csta::ConnectionId::new(call, to),
        answering_device: Some(ctid_csta::DeviceRef::id(to)),
        calling_device: Some(ctid_csta::DeviceRef::id(from)),
        called_device: Some(ctid_csta::DeviceRef::id(to)),
        last_redirection_device: None,
        originatin_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause,
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    })
}

/// A ConnectionClearedEvent seen on `monitor`: `who` left call `call` (normal clearing).
pub fn cleared(monitor: &str, call: &str, who: &str) -> Message {
    Message::ConnectionClearedEvent(ctid_csta::ConnectionClearedEvent {
        monitor_cross_ref_id: monitor.into(),
        dropped_connection: ctid_csta::ConnectionId::new(call, who),
        releasing_device: Some(ctid_csta::DeviceRef::id(who)),
        local_connection_info: None,
        correlator_data: None,
        cause: Some(ctid_csta::EventCause::NormalClearing),
        extensions: None,
    })
}

/// The moment `ms` of a test run (wall clock a fixed date plus `ms`).
pub fn now_at(ms: u64) -> Now {
    Now {
        mono_ms: ms,
        unix_micros: 1_790_000_000_000_000 + ms * 1000,
    }
}

/// Answer every CSTA request in `out` like an empty switch (and a hot-desking query with "no
/// pair"), again until the engine asks nothing more; other outputs are dropped. For examples
/// and benches that need the link up with every DN monitored.
pub fn serve_empty_switch(e: &mut Engine, out: &mut Vec<Output>, now: Now) {
    loop {
        let reqs: Vec<(ctid_csta::InvokeId, Message)> = out
            .drain(..)
            .filter_map(|o| match o {
                Output::CstaRequest { invoke_id, message } => Some((invoke_id, message)),
                _ => None,
            })
            .collect();
        if reqs.is_empty() {
            return;
        }
        for (invoke_id, m) in reqs {
            let message = match &m {
                Message::Escape(_) => Message::EscapeResponse(ctid_csta::EscapeResponse {
                    extensions: Some(ctid_csta::Extensions::private(
                        ctid_csta::HotDesk::answer(None).into_private_data(),
                    )),
                }),
                other => match empty_switch_answer(other) {
                    Some(a) => a,
                    None => continue,
                },
            };
            e.handle(now, Input::CstaAnswer { invoke_id, message }, out);
        }
    }
}

/// What [`check_snapshots`] went through.
#[derive(Debug, Clone)]
pub struct SnapshotRun {
    /// The snapshot after each number of inputs (index 0: the fresh engine), `inputs + 1` of them.
    pub snapshots: Vec<serde_json::Value>,
    /// The cuts checked (numbers of inputs run before the snapshot).
    pub cuts: Vec<usize>,
}

/// The snapshot proof over a run of `inputs` from an engine with `cfg` (hot standby,
/// `crate::snapshot`): engine A runs every input; for every `every`-th cut k (and the last),
/// engine B is restored from A's snapshot after k inputs and runs the rest. B's outputs must be
/// A's (compared by [`crate::Output::to_json`]), its snapshot after the first input must be A's
/// there, and its final snapshot A's final one; at each cut, `restore(s).snapshot()` must be `s`
/// and the restored engine's views (DNs, calls, sessions, counters, timers, the window) must be
/// A's, which reads the state by another road than the snapshot. The first failure is the
/// error, naming the cut, the input and where the two differ.
pub fn check_snapshots(
    cfg: &EngineConfig,
    inputs: &[(Now, Input)],
    every: usize,
) -> Result<SnapshotRun, String> {
    let mut a = Engine::new(cfg.clone());
    let mut snapshots = vec![a.snapshot()];
    let mut views = vec![views_of(&a)];
    let mut outputs = Vec::with_capacity(inputs.len());
    for (now, input) in inputs {
        let mut out = Vec::new();
        a.handle(*now, input.clone(), &mut out);
        outputs.push(out.iter().map(Output::to_json).collect::<Vec<_>>());
        snapshots.push(a.snapshot());
        views.push(views_of(&a));
    }
    let n = inputs.len();
    let mut cuts: Vec<usize> = (0..=n).step_by(every.max(1)).collect();
    if cuts.last() != Some(&n) {
        cuts.push(n);
    }
    for &k in &cuts {
        let taken = &snapshots[k];
        let mut b = Engine::restore(taken).map_err(|e| format!("cut {k}: restore failed: {e}"))?;
        let again = b.snapshot();
        if &again != taken {
            return Err(format!(
                "cut {k}: restore(snapshot).snapshot() differs at {}",
                first_difference(taken, &again)
            ));
        }
        let seen = views_of(&b);
        if seen != views[k] {
            return Err(format!(
                "cut {k}: the restored engine's views differ\n  expected {}\n  got      {seen}",
                views[k]
            ));
        }
        for (j, (now, input)) in inputs.iter().enumerate().skip(k) {
            let mut out = Vec::new();
            b.handle(*now, input.clone(), &mut out);
            let got: Vec<_> = out.iter().map(Output::to_json).collect();
            if got != outputs[j] {
                return Err(format!(
                    "cut {k}: input {j} ({}) gives other outputs after the restore\n  expected {}\n  got      {}",
                    input.name(),
                    serde_json::Value::from(outputs[j].clone()),
                    serde_json::Value::from(got)
                ));
            }
            if j == k {
                let s = b.snapshot();
                if s != snapshots[k + 1] {
                    return Err(format!(
                        "cut {k}: after input {j} ({}) the state differs at {}",
                        input.name(),
                        first_difference(&snapshots[k + 1], &s)
                    ));
                }
            }
        }
        let last = b.snapshot();
        if last != snapshots[n] {
            return Err(format!(
                "cut {k}: the final state differs at {}",
                first_difference(&snapshots[n], &last)
            ));
        }
    }
    Ok(SnapshotRun { snapshots, cuts })
}

/// What the engine's read-only views say, as text (compared across a restore).
pub fn views_of(e: &Engine) -> String {
    format!(
        "link={:?} dns={:?} calls={:?} sessions={:?} counters={:?} session_counters={:?} \
         timeout={:?} outstanding={} limit={} pairs={:?} seq={} clients={} detached={} \
         monitored={} max_client={}",
        e.link_state(),
        e.dn_views(),
        e.call_views(),
        e.session_views(),
        e.counters(),
        e.session_counters(),
        e.poll_timeout(),
        e.outstanding(),
        e.window_limit(),
        e.hotdesk_pairs(),
        e.sequence(),
        e.client_count(),
        e.detached_sessions(),
        e.monitored_count(),
        e.max_client_id(),
    )
}
