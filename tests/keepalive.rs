//! Keepalive and idle timeout: a silent client is pinged, a client that
//! answers stays, one that never answers is closed with 1001.

mod common;

use std::time::Duration;

use common::Node;

#[test]
fn client_answering_pings_stays_and_a_silent_one_is_closed_with_1001() {
    let node = Node::start(&["--ping-interval-secs", "1", "--idle-timeout-secs", "3"]);
    // A raw client that upgrades and then never sends another byte.
    let mut silent = node.raw_upgrade("silent");
    // A stock client; tungstenite answers pings while it reads.
    let (mut lively, _) = node.connect("lively");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = lively.ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let pings = lively.answer_pings_for(Duration::from_secs(6), || {});
    assert!(pings >= 1, "the node pinged the quiet client");
    // The silent one got a ping, then a close 1001 (read past the 101 head).
    let mut bytes = Vec::new();
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = std::io::Read::read_to_end(&mut silent, &mut bytes);
    let close = bytes
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(
        u16::from_be_bytes([bytes[close + 2], bytes[close + 3]]),
        1001
    );
}
