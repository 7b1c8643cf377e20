//! Compare ctid's model, as a client sees it, with csta-sim's switch state.
//!
//! ctid's side is read the way any client can: `RequestQueryAddress` with
//! `AddressInfoDNStatus` for each DN (Extensions `conn-N`/`ps-N`, `AgentStatus`, `HOST_DN`,
//! `AgentID`). The simulator's side is `Sim::snapshot()` (`calls[].connections`, `agents`,
//! `associations`). Both are reduced to the same [`Model`], limited to the DNs asked about:
//!
//! * calls: for each call, the sorted (DN, party state) pairs of its parties among those DNs —
//!   ctid groups by ConnID, the simulator by callID, so no ID mapping is needed and a call split
//!   or merged differently shows up;
//! * agents: DN → (agent ID, `ready` / `notReady` / `workingAfterCall`);
//! * hot-desk pairs: (guest, host).
//!
//! This file is shared by the `ctid-chaos` tool and `crates/server/tests/faults.rs` (included by
//! path); it may use only `ctid_client`, `ctid_protocol`, `ctid_sim`, `serde_json` and `std`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{AddressInfoType, EventName, Request};
use ctid_sim::Sim;
use serde_json::Value;

/// What both sides must agree on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Each call as its sorted (DN, state) parties; the list itself sorted.
    pub calls: Vec<Vec<(String, String)>>,
    /// DN → (agent ID, state).
    pub agents: BTreeMap<String, (String, String)>,
    /// (guest, host).
    pub pairs: BTreeSet<(String, String)>,
    /// ctid only: DN → the ConnIDs of its calls (not compared with the switch, whose call IDs
    /// are its own; used to check what each client was told).
    pub conns: BTreeMap<String, BTreeSet<String>>,
}

/// ctid's party state names (`ps-N`) in the simulator's words. The calling party is
/// `connected` at the switch as soon as the call is delivered, where ctid still reports it
/// Initiated (EventDialing) until the call is answered: both are compared as `connected`.
fn party_state(ps: &str) -> String {
    match ps {
        "Initiated" => "connected",
        "Alerting" => "alerting",
        "Connected" => "connected",
        "Held" => "hold",
        "Queued" => "queued",
        "Failed" => "fail",
        "NULL" => "null",
        other => other,
    }
    .to_string()
}

/// ctid's `AgentStatus` in the simulator's words; `None` = not logged in.
fn agent_state(status: &str) -> Option<&'static str> {
    match status {
        "LoggedOut" | "" => None,
        "AgentManualIn" | "AgentAutoIn" => Some("ready"),
        "AgentAfterCallWork" => Some("workingAfterCall"),
        _ => Some("notReady"),
    }
}

/// ctid's view of `dns`, read with RequestQueryAddress (AddressInfoDNStatus) per DN.
pub async fn ctid_model(client: &mut Client, dns: &[String]) -> Result<Model, String> {
    let mut by_conn: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut m = Model::default();
    for dn in dns {
        let ev = client
            .request(
                Request::query_address(dn.clone(), AddressInfoType::DnStatus),
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| format!("query {dn}: {e}"))?;
        if ev.name != EventName::EventAddressInfo {
            return Err(format!("query {dn}: {:?} {:?}", ev.name, ev.error_message));
        }
        let Some(k) = ev.extensions.as_ref() else {
            continue;
        };
        for n in 1.. {
            let Some(conn) = k.get_str(&format!("conn-{n}")) else {
                break;
            };
            let ps = k.get_str(&format!("ps-{n}")).unwrap_or("?");
            m.conns
                .entry(dn.clone())
                .or_default()
                .insert(conn.to_string());
            by_conn
                .entry(conn.to_string())
                .or_default()
                .push((dn.clone(), party_state(ps)));
        }
        if let Some(state) = k.get_str("AgentStatus").and_then(agent_state) {
            let id = ev.agent_id.clone().unwrap_or_default();
            m.agents.insert(dn.clone(), (id, state.to_string()));
        }
        if let Some(h) = k.get_str("HOST_DN") {
            m.pairs.insert((dn.clone(), h.to_string()));
        }
    }
    m.calls = by_conn
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    m.calls.sort();
    Ok(m)
}

/// The simulator's state (from `Sim::snapshot()`), limited to `dns`.
pub fn sim_model(snapshot: &Value, dns: &[String]) -> Model {
    let set: BTreeSet<&str> = dns.iter().map(String::as_str).collect();
    let mut m = Model::default();
    for c in snapshot["calls"].as_array().into_iter().flatten() {
        let mut parties: Vec<(String, String)> = c["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                let d = x["device"].as_str()?;
                let s = x["state"].as_str()?;
                let s = if s == "initiated" { "connected" } else { s };
                (set.contains(d) && s != "null").then(|| (d.to_string(), s.to_string()))
            })
            .collect();
        if !parties.is_empty() {
            parties.sort();
            m.calls.push(parties);
        }
    }
    m.calls.sort();
    for a in snapshot["agents"].as_array().into_iter().flatten() {
        let (Some(id), Some(dev), Some(st)) = (
            a["agentID"].as_str(),
            a["device"].as_str(),
            a["state"].as_str(),
        ) else {
            continue;
        };
        if set.contains(dev) && st != "loggedOff" {
            m.agents
                .insert(dev.to_string(), (id.to_string(), st.to_string()));
        }
    }
    for p in snapshot["associations"].as_array().into_iter().flatten() {
        if let (Some(g), Some(h)) = (p["guest"].as_str(), p["host"].as_str()) {
            if set.contains(g) {
                m.pairs.insert((g.to_string(), h.to_string()));
            }
        }
    }
    m
}

fn count(v: &[Vec<(String, String)>]) -> BTreeMap<&Vec<(String, String)>, usize> {
    let mut m: BTreeMap<&Vec<(String, String)>, usize> = BTreeMap::new();
    for c in v {
        *m.entry(c).or_default() += 1;
    }
    m
}

/// The differences, one line each (empty when equal).
pub fn diff(ctid: &Model, sim: &Model) -> Vec<String> {
    let mut d = Vec::new();
    let (a, b) = (count(&ctid.calls), count(&sim.calls));
    for (c, n) in &a {
        let m = b.get(c).copied().unwrap_or(0);
        if *n > m {
            d.push(format!("call only in ctid ({}x): {c:?}", n - m));
        }
    }
    for (c, n) in &b {
        let m = a.get(c).copied().unwrap_or(0);
        if *n > m {
            d.push(format!("call only at the switch ({}x): {c:?}", n - m));
        }
    }
    let dns: BTreeSet<&String> = ctid.agents.keys().chain(sim.agents.keys()).collect();
    for dn in dns {
        let (x, y) = (ctid.agents.get(dn), sim.agents.get(dn));
        if x != y {
            d.push(format!("agent at {dn}: ctid {x:?}, switch {y:?}"));
        }
    }
    for p in ctid.pairs.difference(&sim.pairs) {
        d.push(format!("hot-desk pair only in ctid: {p:?}"));
    }
    for p in sim.pairs.difference(&ctid.pairs) {
        d.push(format!("hot-desk pair only at the switch: {p:?}"));
    }
    d
}

/// Compare once: the differences between ctid (through `client`) and `sim` on `dns`.
pub async fn compare(
    sim: &Sim,
    client: &mut Client,
    dns: &[String],
) -> Result<Vec<String>, String> {
    let c = ctid_model(client, dns).await?;
    let s = sim_model(&sim.snapshot().await, dns);
    Ok(diff(&c, &s))
}

/// Compare until both sides agree (events may still be on their way) or `timeout` passes;
/// returns the last differences (empty = consistent).
pub async fn settle(
    sim: &Sim,
    client: &mut Client,
    dns: &[String],
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        // Two equal readings in a row, so a change in flight is not mistaken for agreement.
        let d = compare(sim, client, dns).await?;
        if d.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let again = compare(sim, client, dns).await?;
            if again.is_empty() {
                return Ok(again);
            }
        }
        if Instant::now() >= deadline {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
