//! Errors of the WebSocket client, each with a stable cause name for the
//! report's `errors` map.

use super::frame::FrameError;
use super::handshake::HandshakeError;
use std::io;
use thiserror::Error;

/// Why a connection attempt failed; [`ConnectError::cause`] is the key used
/// in the report's `errors` map.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Nothing listens (ECONNREFUSED).
    #[error("connection refused")]
    Refused,
    /// Connect plus upgrade took longer than the connect timeout.
    #[error("timed out")]
    Timeout,
    /// The upgrade was answered with something other than 101.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer reset or closed the connection during the upgrade.
    #[error("connection reset during handshake")]
    Reset,
    /// No local port left for this source address (EADDRNOTAVAIL).
    #[error("no free local port on the source address")]
    SourceExhausted,
    /// Out of file descriptors (EMFILE/ENFILE).
    #[error("out of file descriptors")]
    FdLimit,
    /// The first server message was not what protocol v1 promises.
    #[error("unexpected first message: {0}")]
    NoWelcome(String),
    /// Any other I/O error.
    #[error("I/O: {0}")]
    Io(io::Error),
}

impl ConnectError {
    /// Stable cause name for the report.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Handshake(HandshakeError::Status(503)) => "http_503",
            Self::Handshake(HandshakeError::Status(_)) => "http_status",
            Self::Handshake(HandshakeError::Redirect { .. }) => "http_307",
            Self::Handshake(_) => "handshake",
            Self::Reset => "reset",
            Self::SourceExhausted => "source_exhausted",
            Self::FdLimit => "fd_limit",
            Self::NoWelcome(_) => "no_welcome",
            Self::Io(_) => "io",
        }
    }

    /// Classifies a socket error by cause.
    pub fn from_io(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Self::Refused,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => Self::Reset,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Self::SourceExhausted,
            Some(libc::EMFILE) | Some(libc::ENFILE) => Self::FdLimit,
            Some(libc::ETIMEDOUT) => Self::Timeout,
            _ if e.kind() == io::ErrorKind::UnexpectedEof => Self::Reset,
            _ => Self::Io(e),
        }
    }
}

/// A send that could not be queued.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed or broken.
    #[error("connection closed")]
    Closed,
    /// More than the backlog limit is already waiting for the kernel.
    #[error("send backlog full")]
    BacklogFull,
}

/// How a connection's read loop ended; [`Ended::cause`] names it.
#[derive(Debug)]
pub enum Ended {
    /// The message handler asked to stop; the connection is still open.
    Stopped,
    /// The server sent a close frame (with this code, if any).
    PeerClosed(Option<u16>),
    /// The stream ended without a close frame.
    Eof,
    /// The server broke the framing rules.
    Protocol(FrameError),
    /// A read or write failed.
    Io(io::Error),
}

impl Ended {
    /// Stable cause name for the report (`dropped:<cause>`).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            // The codes a shardcast node closes with, so a report tells why
            // (src/protocol/codes.rs): idle timeout, protocol, UTF-8, token
            // refused, too big, store failed, drain, replaced, token expired.
            Self::PeerClosed(Some(1000)) => "closed_1000",
            Self::PeerClosed(Some(1001)) => "closed_1001",
            Self::PeerClosed(Some(1002)) => "closed_1002",
            Self::PeerClosed(Some(1007)) => "closed_1007",
            Self::PeerClosed(Some(1008)) => "closed_1008",
            Self::PeerClosed(Some(1009)) => "closed_1009",
            Self::PeerClosed(Some(1011)) => "closed_1011",
            Self::PeerClosed(Some(1012)) => "closed_1012",
            Self::PeerClosed(Some(4001)) => "closed_4001",
            Self::PeerClosed(Some(4003)) => "closed_4003",
            Self::PeerClosed(_) => "closed_by_server",
            Self::Eof => "eof",
            Self::Protocol(_) => "protocol",
            Self::Io(_) => "reset",
        }
    }
}
