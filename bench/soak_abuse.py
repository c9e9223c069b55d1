#!/usr/bin/env python3
"""soak_abuse.py SECONDS FWD MITM REV ECHO DEAD: for SECONDS, misbehaving clients and
failing upstreams against the proxies on 127.0.0.1 (for bench/soak.sh): heads cut off,
uploads abandoned mid-body, garbage bytes, requests and CONNECTs to a port nobody
listens on (502), handshakes dropped half-way. Prints how many of each it sent."""
import random
import socket
import sys
import time

secs, fwd, mitm, rev, echo, dead = (int(a) for a in sys.argv[1:7])
rng = random.Random(7)
counts = {}


def talk(port, data, read=True):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(data)
            if read:
                s.recv(4096)
    except OSError:
        pass


def cut_head(port):
    talk(port, b"GET http://127.0.0.1:%d/cut HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-A: " % (echo, echo), read=False)


def abandoned_upload(port):
    head = b"POST http://127.0.0.1:%d/up HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 100000\r\n\r\n" % (echo, echo)
    talk(port, head + b"x" * 1000, read=False)


def garbage(port):
    talk(port, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600))))


def dead_upstream(port):
    talk(port, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (dead, dead))


def dead_connect(port):
    talk(port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (dead, dead))


def dropped_handshake(port):
    # CONNECT to the TLS origin, then a ClientHello-looking start, then gone.
    data = b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (rev, rev)
    talk(port, data + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, read=False)


def tls_cut(port):
    talk(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20, read=False)


actions = [
    ("cut head (forward)", lambda: cut_head(fwd)),
    ("abandoned upload (forward)", lambda: abandoned_upload(fwd)),
    ("garbage (forward)", lambda: garbage(fwd)),
    ("dead upstream (forward)", lambda: dead_upstream(fwd)),
    ("dead CONNECT (forward)", lambda: dead_connect(fwd)),
    ("abandoned upload (mitm)", lambda: abandoned_upload(mitm)),
    ("garbage (mitm)", lambda: garbage(mitm)),
    ("dropped handshake (mitm)", lambda: dropped_handshake(mitm)),
    ("dead CONNECT (mitm)", lambda: dead_connect(mitm)),
    ("garbage (reverse)", lambda: garbage(rev)),
    ("cut TLS handshake (reverse)", lambda: tls_cut(rev)),
]

end = time.monotonic() + secs
while time.monotonic() < end:
    name, act = rng.choice(actions)
    act()
    counts[name] = counts.get(name, 0) + 1
for name, n in sorted(counts.items()):
    print(f"{n:6d} {name}")
