#!/usr/bin/env python3
"""Writes the starting corpus of each fuzz target into fuzz/corpus/TARGET/.

The envelope and token seeds are the golden vectors'
(src/protocol/vectors/*.json), so they change when the vectors do; the
room and upgrade-request seeds are a few texts written here. The corpus
directories are not committed (fuzz/.gitignore): run this once before the
first `cargo fuzz run`, and again whenever you want the vectors back in.
"""
import hashlib
import json
import pathlib
import struct

FUZZ = pathlib.Path(__file__).resolve().parent
VECTORS = FUZZ.parent / "src" / "protocol" / "vectors"


def load(name):
    return json.loads((VECTORS / name).read_text())


def write(target, seeds):
    out = FUZZ / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        if isinstance(seed, str):
            seed = seed.encode()
        # Named like libFuzzer names its own inputs, so reruns do not duplicate.
        (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{target}: {len(seeds)} seeds in {out.relative_to(FUZZ.parent)}")


client = load("client.json")
server = load("server.json")
token = load("token.json")

write("client_envelope", [v["text"] for v in client["valid"] + client["invalid"]])
write("server_envelope", [v["text"] for v in server["valid"] + server["invalid"]])

rooms = {"chat.lobby", "chat.*", "*", "*.alert", "game:7.alert", "a-b_c.d", "a..b", ".a", "a b"}
for v in client["valid"]:
    if "room" in v["envelope"]:
        rooms.add(v["envelope"]["room"])
write("room_pattern", sorted(rooms))

# resume_token: 8 bytes of `now` (little-endian), then `user\ntoken`.
write(
    "resume_token",
    [
        struct.pack("<Q", v["now"]) + f"{v['userId']}\n{v['token']}".encode()
        for v in token["valid"] + token["refused"]
    ],
)

UPGRADE = (
    "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
write(
    "upgrade_request",
    [
        f"GET /ws?userId=alice HTTP/1.1\r\n{UPGRADE}",
        f"GET /ws?userId=a%40b&resume={token['valid'][1]['token']} HTTP/1.1\r\n{UPGRADE}",
        f"GET /echo HTTP/1.1\r\n{UPGRADE}",
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /ws?userId=alice HTTP/1.1\r\nHost: x\r\n",
        "POST /ws HTTP/1.1\r\n\r\n",
    ],
)
API_HEAD = "Host: x\r\nAuthorization: Bearer fuzz-api-key-0123456789\r\n"
write(
    "api_request",
    [
        f'POST /api/v1/send HTTP/1.1\r\n{API_HEAD}Content-Length: 38\r\n\r\n'
        '{"to":"alice","id":"m1","data":{"a":1}}',
        f'POST /api/v1/publish HTTP/1.1\r\n{API_HEAD}Content-Length: 45\r\n\r\n'
        '{"room":"order:7.status","id":"e","from":"svc"}',
        f"GET /api/v1/online?userId=a%40b HTTP/1.1\r\n{API_HEAD}\r\n",
        "POST /api/v1/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        '{"to":"bob","id":"x","data":null}',
    ],
)

# frame_reader: byte 0 = size limit (16 * (b + 1)), bytes 1..=3 = piece
# sizes, then masked client frames (text, fragments with a ping between
# them, binary, close), one stream per seed.
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def client_frame(first, payload):
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


texts = [v["text"].encode() for v in client["valid"]]
frames = [
    b"".join(client_frame(0x81, t) for t in texts),
    client_frame(0x01, "fr".encode()) + client_frame(0x89, b"hi") + client_frame(0x80, "ag€".encode()),
    client_frame(0x82, bytes(range(256))) + client_frame(0x88, struct.pack(">H", 1000) + b"bye"),
    client_frame(0x81, bytes([0xFF, 0xFE])),
    client_frame(0x88, struct.pack(">H", 1005)),
]
write("frame_reader", [bytes([255, 1, 7, 64]) + f for f in frames] + [bytes([0, 3, 3, 3]) + frames[1]])
