//! For tests, benches and examples that drive the engine without a switch: the answer an
//! empty switch gives to the requests the engine sends when it monitors a DN (no calls, no
//! agent, no forwarding, DND off; monitors named after their DN). Not used by ctid itself.

use ctid_csta::{
    GetAgentStateResponse, GetDoNotDisturbResponse, GetForwardingResponse, Message, MonitorObject,
    MonitorStartResponse, SnapshotDeviceResponse, SnapshotResult,
};

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
