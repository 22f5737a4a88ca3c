#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections, send one request on each, then hold them open.

Used by benches/load/conns.sh. Connections are opened and used BATCH at a time (so the proxy
never needs more than BATCH upstream connections), then all sit idle. Protocol on stdout:

    READY opened=N ok=K failed=F       every connection has had its one answer
    (the script waits here until a line arrives on stdin, or stdin closes)
    CHECK alive=A of=S                 a second request on S of them (spread over all)

Only the Python standard library is used.
"""

import argparse
import asyncio
import resource
import sys


async def one_request(reader, writer, host, port, body, extra=""):
    req = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def open_one(host, port, body, timeout, extra):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    status = await asyncio.wait_for(one_request(reader, writer, host, port, body, extra), timeout)
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return reader, writer


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--check", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--header", action="append", default=[], help="NAME: VALUE, repeatable")
    ap.add_argument(
        "--body",
        default='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}',
    )
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    body = a.body.encode()
    extra = "".join(f"{h}\r\n" for h in a.header)
    conns, failed = [], 0
    for start in range(0, a.n, a.batch):
        batch = [
            open_one(a.host, a.port, body, a.timeout, extra)
            for _ in range(min(a.batch, a.n - start))
        ]
        for r in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(r, BaseException):
                failed += 1
                if failed <= 3:
                    print(f"connection failed: {r!r}", file=sys.stderr)
            else:
                conns.append(r)
    print(f"READY opened={a.n} ok={len(conns)} failed={failed}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    step = max(1, len(conns) // max(1, a.check))
    sample = conns[::step][: a.check]
    alive = 0
    for reader, writer in sample:
        try:
            status = await asyncio.wait_for(
                one_request(reader, writer, a.host, a.port, body, extra), a.timeout
            )
            alive += status == 200
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
    print(f"CHECK alive={alive} of={len(sample)}", flush=True)
    for _, writer in conns:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
