//! The server API in a static cluster (`--ring`, `--kafka`, a real Redis
//! and a real broker): a send to a user of another node is relayed to every
//! connection of that user, a publish reaches subscribers on every node,
//! and `online` for another node's user redirects to that node's API.

mod common;

use std::net::SocketAddr;

use common::{cluster::Cluster, http_request};
use serde_json::{json, Value};

const KEY: &str = "api-cluster-key-0123456789";

fn cluster(n: usize) -> Cluster {
    // One file per cluster: the tests run in parallel.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("shardcast-api-ckey-{}-{k}", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, KEY).unwrap();
    Cluster::start(n, &["--api-key-file", path.to_str().unwrap()])
}

/// One request with the API key: the status, the whole response, its JSON.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    http_request(addr, &head, body.as_bytes())
}

#[test]
fn a_send_to_another_nodes_user_reaches_each_of_its_connections() {
    let cluster = cluster(2);
    let user = cluster.users_per_node(1)[1][0].clone();
    let (mut phone, _) = cluster.connect(&user);
    let (mut laptop, _) = cluster.connect(&user);
    let body = json!({"to": user, "id": "api-1", "data": {"k": 1}}).to_string();
    let (status, _, reply) = request(cluster.node(0).ws, "POST", "/api/v1/send", &body);
    assert_eq!(
        (status, reply),
        (200, json!({"id":"api-1"})),
        "durable and relayed"
    );
    for c in [&mut phone, &mut laptop] {
        let m = c.recv();
        assert_eq!(
            (&m["from"], &m["id"], &m["offset"]),
            (&json!("#server"), &json!("api-1"), &json!(1))
        );
    }
}

#[test]
fn a_publish_reaches_subscribers_on_every_node() {
    let cluster = cluster(2);
    let mut subs: Vec<_> = cluster
        .users_per_node(1)
        .iter()
        .map(|u| {
            let (mut c, _) = cluster.connect(&u[0]);
            c.join("order:9.*", "j");
            assert_eq!(c.recv()["type"], "ack");
            c
        })
        .collect();
    let body = json!({"room":"order:9.status","id":"e1","data":"shipped"}).to_string();
    let (status, _, _) = request(cluster.node(0).ws, "POST", "/api/v1/publish", &body);
    assert_eq!(status, 200);
    for sub in &mut subs {
        let m = sub.recv();
        assert_eq!(
            (&m["room"], &m["id"]),
            (&json!("order:9.status"), &json!("e1"))
        );
    }
}

#[test]
fn online_for_another_nodes_user_redirects_to_its_api() {
    let cluster = cluster(2);
    let user = cluster.users_per_node(1)[1][0].clone();
    let (_c, _) = cluster.connect(&user);
    let path = format!("/api/v1/online?userId={user}");
    let (status, text, reply) = request(cluster.node(0).ws, "GET", &path, "");
    assert_eq!(status, 307, "{text}");
    let location = format!("http://{}{path}", cluster.node(1).ws);
    assert!(
        text.contains(&format!("Location: {location}\r\n")),
        "{text}"
    );
    assert_eq!(reply["node"], "n1");
    // Its owner answers.
    let (status, _, reply) = request(cluster.node(1).ws, "GET", &path, "");
    assert_eq!(
        (status, &reply["online"], &reply["node"]),
        (200, &json!(true), &json!("n1"))
    );
}
