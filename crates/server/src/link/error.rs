//! [`LinkError`]: why a CSTA link session could not start or ended. The text of each variant is
//! what the log shows and, when the link was operational, the reason the engine gets with
//! LinkDown (clients read it in EventLinkDisconnected).

use std::sync::Arc;
use std::time::Duration;

use ctid_csta::{
    CstaError, EncodeError, FrameError, SessionErrorCode, SessionTermReasonChoice,
    SystemStatusValue,
};

/// Why a link session could not start, or why it ended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection was refused or failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The TCP connection was not established within `connect-tout`.
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    /// Connected, but the session was not operational within `connect-tout`.
    #[error("not operational within connect-tout ({timeout:?})")]
    NotOperational { timeout: Duration },
    /// The Connector answered StartApplicationSession with a NegResponse.
    #[error("session refused: {0:?}")]
    SessionRefused(Option<SessionErrorCode>),
    /// The Connector answered SystemRegister with CSTAErrorCode.
    #[error("SystemRegister refused: {0}")]
    RegisterRefused(CstaError),
    /// While starting, RequestSystemStatus was answered with a status other than normal/enabled.
    #[error("Connector system status is {0}")]
    StatusNotNormal(SystemStatusValue),
    /// The Connector reported system status `disabled` (the session is kept; only reported).
    #[error("Connector system status disabled")]
    StatusDisabled,
    /// `kpl-tolerance` keepalives in a row were not answered within `kpl-interval`.
    #[error(
        "keepalive: {misses} RequestSystemStatus unanswered within kpl-interval ({interval:?})"
    )]
    KeepaliveMissed { misses: u32, interval: Duration },
    /// ResetApplicationSessionTimer was answered with a NegResponse.
    #[error("session timer reset refused: {0:?}")]
    TimerResetRefused(Option<SessionErrorCode>),
    /// The Connector ended the ECMA-354 session (ApplicationSessionTerminated).
    #[error("session terminated by the Connector: {0:?}")]
    SessionTerminated(Option<SessionTermReasonChoice>),
    /// A frame header whose length is below 8: the byte stream cannot be split any more.
    #[error(transparent)]
    FramingLost(FrameError),
    /// A message to send could not be encoded.
    #[error("encode {message}: {source}")]
    Encode {
        message: String,
        #[source]
        source: EncodeError,
    },
    /// Every invoke ID of the session's own range (9000–9998) is waiting for an answer.
    #[error("no free invoke ID")]
    InvokeIdsExhausted,
    /// The Connector closed the TCP connection.
    #[error("connection closed by the Connector")]
    ClosedByPeer,

    /// `[ha]`: this node is no longer primary; it sends nothing more on the link.
    #[error("this node is no longer primary")]
    NotPrimary,
    /// Reading from or writing to the TCP connection failed.
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The link manager moved to a link with higher priority; this session ends so that the
    /// link comes back as a standby holding no monitors.
    #[error("left for a link with higher priority; session restarted as standby")]
    Demoted,
    /// ctid is stopping.
    #[error("shutdown")]
    Shutdown,
}

impl LinkError {
    /// An I/O error of the TCP connection (`op`: "read" or "write").
    pub fn io(op: &'static str, e: std::io::Error) -> LinkError {
        LinkError::Io {
            op,
            source: Arc::new(e),
        }
    }
}
