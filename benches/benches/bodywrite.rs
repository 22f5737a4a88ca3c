//! A head and a body over loopback TCP: copied behind the head into one reused buffer and
//! written with one `write`, against one `writev` of the two as they are, and against two
//! `write`s. The same bytes reach the socket each way; what differs is the user-space copy, a
//! second iovec, a second system call. A thread drains the other end.
// criterion_group! generates undocumented functions; a failed bench setup may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A connected pair whose far end is drained by its own thread until closed.
fn drained() -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 20];
        while s.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Write all of `bufs` with `writev`, finishing a short write with plain writes.
fn writev_all(s: &mut TcpStream, head: &[u8], body: &[u8]) {
    let n = s
        .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
        .expect("writev");
    if n < head.len() {
        s.write_all(&head[n..]).expect("write");
        s.write_all(body).expect("write");
    } else {
        s.write_all(&body[n - head.len()..]).expect("write");
    }
}

fn bodywrite(c: &mut Criterion) {
    let head = vec![b'h'; 400];
    let mut g = c.benchmark_group("bodywrite");
    for size in [256usize, 4096, 16 * 1024, 64 * 1024] {
        let body = vec![b'b'; size];
        g.throughput(Throughput::Bytes((head.len() + size) as u64));
        let mut s = drained();
        let mut out = Vec::with_capacity(32 * 1024);
        g.bench_with_input(
            BenchmarkId::new("copy_then_write", size),
            &body,
            |b, body| {
                b.iter(|| {
                    out.clear();
                    out.extend_from_slice(&head);
                    out.extend_from_slice(black_box(body));
                    s.write_all(&out).expect("write");
                })
            },
        );
        let mut s = drained();
        g.bench_with_input(BenchmarkId::new("writev", size), &body, |b, body| {
            b.iter(|| writev_all(&mut s, &head, black_box(body)))
        });
        let mut s = drained();
        g.bench_with_input(BenchmarkId::new("two_writes", size), &body, |b, body| {
            b.iter(|| {
                s.write_all(&head).expect("write");
                s.write_all(black_box(body)).expect("write");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bodywrite);
criterion_main!(benches);
