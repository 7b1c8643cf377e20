//! Client authentication by bearer token (docs/configuration.md, "Security").
//!
//! With `auth = "token"` the WebSocket upgrade at `/ws` and the monitor's `/api/state` require a
//! token from a `[[client-token]]` entry, given as `Authorization: Bearer <token>` or as
//! `?token=<token>` in the URL (browsers cannot set headers on a WebSocket). `/`, the page's
//! static files, `/healthz`, `/readyz` and `/metrics` stay open; `POST /admin/reload` takes an
//! `admin = true` token or `CTID_ADMIN_TOKEN`. Tokens are compared in constant time and never
//! logged; the entry's `name` is.
//!
//! Each token carries permissions ([`Permissions`]: `monitor`, `call`, `private`); a request the
//! token may not make is answered with EventError 51 and the session stays open
//! ([`Permissions::refusal`]).
//!
//! The policy lives in an [`AuthStore`] so that a configuration reload can swap it (rotating tokens
//! without a restart).

use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use percent_encoding::percent_decode_str;

/// Whether clients must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Anyone who reaches the port is served (the demo, tests; keep the port on loopback).
    #[default]
    None,
    /// A `[[client-token]]` token is required.
    Token,
}

/// One `[[client-token]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken {
    /// Logged on connect (the token never is).
    pub name: String,
    pub token: String,
    /// May also call `POST /admin/reload`.
    pub admin: bool,
    /// What its sessions may ask for (`permissions = [...]`, default all).
    pub permissions: Permissions,
}

/// One class of client requests a token may be allowed (`permissions = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Watch: RequestRegisterClient, RequestQueryServer, RequestRegisterAddress,
    /// RequestUnregisterAddress, RequestUnregisterAll, RequestSetInputMask, RequestQueryAddress,
    /// RequestQueryCall, RequestQuerySwitch, RequestQueryLocation.
    Monitor,
    /// Act: every other request (call control, agent state, forwarding and DND, routing,
    /// user data, treatments, …).
    Call,
    /// RequestPrivateService and RequestNetworkPrivateService (hot desking, switch features).
    Private,
}

impl Permission {
    pub const ALL: [Permission; 3] = [Permission::Monitor, Permission::Call, Permission::Private];

    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Monitor => "monitor",
            Permission::Call => "call",
            Permission::Private => "private",
        }
    }

    pub fn from_name(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The permission a request needs.
    pub fn required_for(name: ctid_protocol::RequestName) -> Permission {
        use ctid_protocol::RequestName as R;
        match name {
            R::RequestRegisterClient
            | R::RequestQueryServer
            | R::RequestRegisterAddress
            | R::RequestUnregisterAddress
            | R::RequestUnregisterAll
            | R::RequestSetInputMask
            | R::RequestQueryAddress
            | R::RequestQueryCall
            | R::RequestQuerySwitch
            | R::RequestQueryLocation => Permission::Monitor,
            R::RequestPrivateService | R::RequestNetworkPrivateService => Permission::Private,
            _ => Permission::Call,
        }
    }
}

/// The permissions of a token (or of every session, with `auth = "none"`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub monitor: bool,
    pub call: bool,
    pub private: bool,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::ALL
    }
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                Permission::ALL
                    .into_iter()
                    .filter(|p| self.has(*p))
                    .map(Permission::as_str),
            )
            .finish()
    }
}

impl Permissions {
    pub const ALL: Permissions = Permissions {
        monitor: true,
        call: true,
        private: true,
    };
    pub const NONE: Permissions = Permissions {
        monitor: false,
        call: false,
        private: false,
    };

    pub fn has(&self, p: Permission) -> bool {
        match p {
            Permission::Monitor => self.monitor,
            Permission::Call => self.call,
            Permission::Private => self.private,
        }
    }

    pub fn with(mut self, p: Permission) -> Self {
        match p {
            Permission::Monitor => self.monitor = true,
            Permission::Call => self.call = true,
            Permission::Private => self.private = true,
        }
        self
    }

    /// Every request allowed: the session need not look at what it forwards.
    pub fn is_all(&self) -> bool {
        *self == Permissions::ALL
    }

    /// `Some(EventError message)` when the session of token `token` may not send `name`.
    pub fn refusal(&self, token: &str, name: ctid_protocol::RequestName) -> Option<String> {
        // Resuming takes back the token's own session only (the engine checks the owner): any
        // token may (docs/protocol.md §6.9).
        if name == ctid_protocol::RequestName::RequestResumeSession {
            return None;
        }
        let need = Permission::required_for(name);
        if self.has(need) {
            return None;
        }
        Some(format!(
            "token {token} is not allowed to send {name}: it needs permission \"{}\"",
            need.as_str()
        ))
    }
}

impl std::fmt::Debug for ClientToken {
    // No secrets in logs, even through `{:?}` of the configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("admin", &self.admin)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// The authentication part of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub tokens: Vec<ClientToken>,
    /// `auth` was given in the file. Without it, [`crate::Config::check_auth`] allows
    /// unauthenticated clients on a loopback `listen` only.
    pub explicit: bool,
}

/// Constant-time equality (the length may leak, the content does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AuthConfig {
    /// The entry this token belongs to. Every entry is compared, whatever matches first.
    pub fn lookup(&self, presented: &str) -> Option<&ClientToken> {
        let mut found = None;
        for t in &self.tokens {
            if ct_eq(presented.as_bytes(), t.token.as_bytes()) && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

/// The running authentication policy, replaced on reload.
#[derive(Debug, Clone, Default)]
pub struct AuthStore(Arc<RwLock<Arc<AuthConfig>>>);

impl AuthStore {
    pub fn new(cfg: AuthConfig) -> Self {
        AuthStore(Arc::new(RwLock::new(Arc::new(cfg))))
    }
    pub fn get(&self) -> Arc<AuthConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn set(&self, cfg: AuthConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }
}

/// The bearer token of a request: `Authorization: Bearer …`, else `token=` in the query.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(t) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        // `%XX` decoded; `+` is kept (tokens are not form text), a stray `%` too.
        .map(|t| percent_decode_str(t).decode_utf8_lossy().into_owned())
}

/// Who a request is, once authenticated (a request extension, read by the `/ws` handler).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's `name`; `None` with `auth = "none"`.
    pub name: Option<String>,
    /// What the session may ask for (all with `auth = "none"`).
    pub permissions: Permissions,
}

/// Check a request against the policy: `Ok` with who it is, or `Err` with the one-line reason.
pub fn check(cfg: &AuthConfig, presented: Option<&str>) -> Result<Identity, &'static str> {
    match cfg.mode {
        AuthMode::None => Ok(Identity {
            name: None,
            permissions: Permissions::ALL,
        }),
        AuthMode::Token => {
            let Some(p) = presented.filter(|p| !p.is_empty()) else {
                return Err(
                    "authentication required: give Authorization: Bearer <token> or ?token=<token>",
                );
            };
            match cfg.lookup(p) {
                Some(t) => Ok(Identity {
                    name: Some(t.name.clone()),
                    permissions: t.permissions,
                }),
                None => Err("invalid token"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Token,
            tokens: vec![
                ClientToken {
                    name: "desk".into(),
                    token: "0123456789abcdef".into(),
                    admin: false,
                    permissions: Permissions::NONE.with(Permission::Monitor),
                },
                ClientToken {
                    name: "ops".into(),
                    token: "fedcba9876543210".into(),
                    admin: true,
                    permissions: Permissions::ALL,
                },
            ],
            explicit: true,
        }
    }

    #[test]
    fn tokens_from_header_or_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented_token(&h, Some("a=1&token=x%2By+z")),
            Some("x+y+z".into())
        );
        assert_eq!(presented_token(&h, Some("token=ab%")), Some("ab%".into()));
        assert_eq!(
            presented_token(&h, Some("token=%41%zz%4")),
            Some("A%zz%4".into())
        );
        assert_eq!(
            presented_token(&h, Some("token=caf%C3%A9%FF")),
            Some("café\u{FFFD}".into())
        );
        assert_eq!(presented_token(&h, None), None);
        h.insert("authorization", "Bearer hdr".parse().unwrap());
        assert_eq!(presented_token(&h, Some("token=q")), Some("hdr".into()));
    }

    #[test]
    fn check_and_lookup() {
        let c = cfg();
        assert_eq!(
            check(&c, Some("fedcba9876543210")).unwrap().name.as_deref(),
            Some("ops")
        );
        assert!(check(&c, Some("fedcba987654321")).is_err());
        assert!(check(&c, None).is_err());
        assert!(check(&c, Some("")).is_err());
        assert!(check(&AuthConfig::default(), None).is_ok());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let who = check(&c, Some("0123456789abcdef")).unwrap();
        assert_eq!(who.permissions, Permissions::NONE.with(Permission::Monitor));
        assert!(check(&AuthConfig::default(), None)
            .unwrap()
            .permissions
            .is_all());
    }

    #[test]
    fn permissions_classify_requests() {
        use ctid_protocol::RequestName as R;
        let monitor = Permissions::NONE.with(Permission::Monitor);
        for r in [
            R::RequestRegisterAddress,
            R::RequestUnregisterAddress,
            R::RequestQueryAddress,
            R::RequestQueryServer,
            R::RequestQueryCall,
            R::RequestRegisterClient,
        ] {
            assert_eq!(monitor.refusal("desk", r), None, "{r}");
        }
        let e = monitor.refusal("desk", R::RequestMakeCall).unwrap();
        assert!(e.contains("token desk") && e.contains("\"call\""), "{e}");
        for r in [
            R::RequestAnswerCall,
            R::RequestAgentLogin,
            R::RequestSetDNDOn,
            R::RequestCallForwardSet,
            R::RequestRouteCall,
            R::RequestAttachUserData,
        ] {
            assert_eq!(Permission::required_for(r), Permission::Call, "{r}");
        }
        let e = monitor.refusal("desk", R::RequestPrivateService).unwrap();
        assert!(e.contains("\"private\""), "{e}");
        assert!(Permissions::ALL.is_all() && !monitor.is_all());
        assert_eq!(format!("{monitor:?}"), "[\"monitor\"]");
    }
}
