//! The WebSocket client: pure framing and handshake code plus the thin
//! glommio connection around them, and the protocol v1 session opening.

pub mod conn;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod session;
mod socket;

pub use conn::{connect, Conn, Next};
pub use error::{ConnectError, Ended, SendError};
pub use frame::OpCode;
