//! Opening a protocol v1 session: upgrade on `/ws?userId=U[&resume=T]`, then
//! the server's first frame must be a `welcome`.
//!
//! A session counts as established only once the welcome arrived, because
//! that is when the node has registered the user (and replayed nothing yet:
//! replayed and live messages follow the welcome and are left in the
//! connection for the scenario's read loop).

use super::conn::{connect, Conn, Next};
use super::error::ConnectError;
use crate::target::Target;
use futures_lite::future;
use shardcast::protocol::ServerEnvelope;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

/// What the welcome told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Welcome {
    /// Token to resume this session later.
    pub resume_token: Option<String>,
    /// The user's offset at connect time.
    pub offset: Option<u64>,
    /// The node that welcomed the user.
    pub node: Option<String>,
}

/// Connects `user` to `target` (with `token=jwt` when given) and waits for
/// its welcome, all within `timeout`.
pub async fn open(
    target: &Target,
    user: &str,
    resume: Option<&str>,
    jwt: Option<&str>,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(Rc<Conn>, Welcome), ConnectError> {
    let path = target.path_for_user(user, resume, jwt);
    future::or(
        async {
            let conn = connect(target, &path, source, timeout).await?;
            let mut first: Option<Result<Welcome, String>> = None;
            let end = conn
                .run(|payload, _| {
                    first = Some(parse_welcome(payload));
                    Next::Stop
                })
                .await;
            match first {
                Some(Ok(w)) => Ok((conn, w)),
                Some(Err(other)) => Err(ConnectError::NoWelcome(other)),
                None => Err(ConnectError::NoWelcome(format!(
                    "connection ended: {}",
                    end.cause()
                ))),
            }
        },
        async {
            glommio::timer::sleep(timeout).await;
            Err(ConnectError::Timeout)
        },
    )
    .await
}

fn parse_welcome(payload: &[u8]) -> Result<Welcome, String> {
    let shorten = || String::from_utf8_lossy(&payload[..payload.len().min(120)]).into_owned();
    match ServerEnvelope::parse(payload) {
        Ok(ServerEnvelope::Welcome {
            resume_token,
            offset,
            node,
            ..
        }) => Ok(Welcome {
            resume_token: Some(resume_token.into_owned()),
            offset: Some(offset),
            node: Some(node.into_owned()),
        }),
        _ => Err(shorten()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_is_recognized_and_anything_else_is_not() {
        let w = parse_welcome(
            br#"{"type":"welcome","userId":"u","node":"n","resumeToken":"T","offset":3}"#,
        )
        .unwrap();
        assert_eq!(w.resume_token.as_deref(), Some("T"));
        assert_eq!(w.offset, Some(3));
        assert_eq!(w.node.as_deref(), Some("n"));
        assert!(parse_welcome(br#"{"type":"error","code":"bad"}"#).is_err());
        assert!(parse_welcome(b"not json").is_err());
    }
}
