#!/usr/bin/env python3
"""Hold N idle TLS connections open to HOST:PORT (after a full handshake, ALPN
http/1.1) for SECONDS, for bench/reverse.sh's RSS-under-connections figure.

  hold_tls.py HOST:PORT N SECONDS

Prints "ready OPENED/N" once every connection is set up (or failed), then sleeps.
Failures are counted and their reasons printed to stderr.
"""
import socket
import ssl
import sys
import time


def main(argv):
    host, port = argv[1].rsplit(":", 1)
    n, hold = int(argv[2]), float(argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    conns, failed = [], 0
    for _ in range(n):
        try:
            raw = socket.create_connection((host, int(port)), timeout=10)
            conns.append(ctx.wrap_socket(raw, server_hostname="localhost"))
        except OSError as e:
            failed += 1
            print(f"connect failed: {e}", file=sys.stderr)
    print(f"ready {len(conns)}/{n}", flush=True)
    time.sleep(hold)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
