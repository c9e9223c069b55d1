#!/usr/bin/env python3
"""Open N CONNECT tunnels through a forward proxy and hold them open.

Usage: hold_tunnels.py PROXY_HOST:PORT TARGET_HOST:PORT N [MAX_HOLD_SECONDS]

Each tunnel: TCP connect to the proxy, send `CONNECT target`, read the
response head and require a 2xx status. The tunnel is then left idle.
Prints `ready OK/N` (OK = tunnels established) once all attempts are done,
then holds every tunnel until SIGTERM/SIGINT arrives or MAX_HOLD_SECONDS
(default 120) pass. Loopback targets only.
"""
import resource
import signal
import socket
import sys
import time


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def split_hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def open_tunnel(proxy, target, timeout):
    s = socket.create_connection(proxy, timeout=timeout)
    try:
        s.sendall(
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("proxy closed before response head")
            head += chunk
            if len(head) > 65536:
                raise ConnectionError("response head too large")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].startswith("2"):
            raise ConnectionError(f"proxy refused: {status_line!r}")
        return s
    except BaseException:
        s.close()
        raise


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    proxy = split_hostport(sys.argv[1])
    target = sys.argv[2]
    n = int(sys.argv[3])
    max_hold = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    for host in (proxy[0], split_hostport(target)[0]):
        if not (host.startswith("127.") or host in ("localhost", "::1", "[::1]")):
            print(f"refusing non-loopback address {host}", file=sys.stderr)
            return 2
    raise_nofile(n + 256)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tunnels, errors = [], {}
    deadline = time.monotonic() + 60.0
    for _ in range(n):
        if stop["flag"] or time.monotonic() > deadline:
            break
        try:
            tunnels.append(open_tunnel(proxy, target, timeout=5.0))
        except (OSError, ConnectionError) as e:
            key = type(e).__name__ + ": " + str(e)[:80]
            errors[key] = errors.get(key, 0) + 1
    for k, v in errors.items():
        print(f"error x{v}: {k}", file=sys.stderr)
    print(f"ready {len(tunnels)}/{n}", flush=True)

    end = time.monotonic() + max_hold
    while not stop["flag"] and time.monotonic() < end:
        time.sleep(0.2)
    for s in tunnels:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
