#!/usr/bin/env python3
"""Start N streamed chat completions and stop reading them, holding the connections open.

Used by benches/load/streams.sh and soak.sh. Each client sends one streaming request, reads the
response head and the first --read bytes of the body, then reads nothing more (the gateway's
writes back up into the kernel's socket buffers and then stop). Protocol on stdout:

    STALLED n=N ok=K       every client got a 200 head and its first bytes
    (waits until a line arrives on stdin, or stdin closes; then closes every connection)
    CLOSED

Only the Python standard library is used.
"""

import argparse
import socket
import sys


def start(host, port, body, read, timeout, extra):
    s = socket.create_connection((host, port), timeout=timeout)
    req = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    s.sendall(req)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the head")
        got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    while status == 200 and len(rest) < read:
        chunk = s.recv(min(65536, read - len(rest)))
        if not chunk:
            break
        rest += chunk
    return s, status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--read", type=int, default=64 * 1024)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--header", action="append", default=[], help="NAME: VALUE, repeatable")
    a = ap.parse_args()
    body = (
        '{"model":"%s","stream":true,"messages":[{"role":"user","content":"tell me a long story"}]}'
        % a.model
    ).encode()
    extra = "".join(f"{h}\r\n" for h in a.header)
    held, ok = [], 0
    for _ in range(a.n):
        try:
            s, status = start(a.host, a.port, body, a.read, a.timeout, extra)
            held.append(s)
            ok += status == 200
        except (OSError, RuntimeError, ValueError) as e:
            print(f"stream failed: {e!r}", file=sys.stderr)
    print(f"STALLED n={a.n} ok={ok}", flush=True)
    sys.stdin.readline()
    for s in held:
        s.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    main()
