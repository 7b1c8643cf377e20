//! Client sessions as the engine knows them: who is connected, the application name a client
//! gave (RequestRegisterClient), and which DNs it registered.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::det::Map;
use crate::io::ClientId;

/// One client session.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientState {
    pub peer: String,
    pub app: Option<String>,
    /// DNs this client registered.
    pub regs: BTreeSet<String>,
}

/// Every connected client, by number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Clients {
    #[serde(with = "crate::snapshot::with::sorted")]
    map: Map<ClientId, ClientState>,
}

impl Clients {
    /// A client connected.
    pub fn connect(&mut self, client: ClientId, peer: String) {
        self.map.insert(
            client,
            ClientState {
                peer,
                ..Default::default()
            },
        );
    }

    /// A client left: its state, if it was known.
    pub fn disconnect(&mut self, client: ClientId) -> Option<ClientState> {
        self.map.remove(&client)
    }

    /// A request from a client the engine was not told of (a server that skips
    /// ClientConnected): known from now on.
    pub fn ensure(&mut self, client: ClientId) {
        self.map.entry(client).or_default();
    }

    pub fn get(&self, client: ClientId) -> Option<&ClientState> {
        self.map.get(&client)
    }

    pub fn is_connected(&self, client: ClientId) -> bool {
        self.map.contains_key(&client)
    }

    pub fn set_app(&mut self, client: ClientId, app: Option<String>) {
        if let Some(c) = self.map.get_mut(&client) {
            c.app = app;
        }
    }

    /// Note that `client` registered `dn` (a client the engine was not told of is added).
    pub fn add_reg(&mut self, client: ClientId, dn: &str) {
        self.map
            .entry(client)
            .or_default()
            .regs
            .insert(dn.to_string());
    }

    pub fn remove_reg(&mut self, client: ClientId, dn: &str) {
        if let Some(c) = self.map.get_mut(&client) {
            c.regs.remove(dn);
        }
    }

    /// Every connected client, in order.
    pub fn all(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self.map.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every client number held, to `f` (`Engine::max_client_id`).
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        self.map.keys().for_each(|c| f(*c));
    }
}
