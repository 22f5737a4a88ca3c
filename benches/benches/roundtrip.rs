//! A loopback round trip through the gateway (client → aigw → mock → back) against the same
//! request sent to the mock directly: the difference is what the gateway adds per request.
// criterion_group! generates undocumented functions; a failed bench setup may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;

use aigw_benches::loopback::{free_port, wait_up, Client};
use aigw_core::config::parse_str;
use aigw_io::runtime::DriverKind;
use aigw_io::workers::{run, Plan};
use criterion::{criterion_group, criterion_main, Criterion};

fn roundtrip(c: &mut Criterion) {
    let (gw, admin, mock) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[gateway]\nlisten = \"127.0.0.1:{gw}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nworkers = 1\n\
         [log]\naccess = \"off\"\n\
         [mocks.m]\nlisten = \"127.0.0.1:{mock}\"\n\
         [backends.m]\nurl = \"http://127.0.0.1:{mock}\"\n\
         [pools.p]\nmembers = [{{ backend = \"m\" }}]\n[models]\n\"*\" = \"p\"\n"
    );
    let cfg = parse_str(&toml, None).expect("bench config");
    let plan = Plan {
        gateway: true,
        mocks: cfg.mocks.clone(),
        workers: 1,
        driver: DriverKind::from_env().expect("AIGW_DRIVER"),
    };
    // The gateway and its mock run in this process on their own threads for the whole bench.
    std::thread::spawn(move || run(cfg, None, plan, || {}));
    let (gw_addr, mock_addr): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{gw}").parse().expect("addr"),
        format!("127.0.0.1:{mock}").parse().expect("addr"),
    );
    wait_up(gw_addr);
    wait_up(mock_addr);

    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;
    let req = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let direct_req = req("/v1/chat/completions");
    let gw_req = req("/v1/chat/completions");
    let mut direct = Client::connect(mock_addr);
    let mut via = Client::connect(gw_addr);
    // Warm both paths (tokenizer, upstream connection).
    direct.call(&direct_req);
    via.call(&gw_req);

    let mut g = c.benchmark_group("roundtrip");
    g.bench_function("mock_direct", |b| b.iter(|| direct.call(&direct_req)));
    g.bench_function("through_aigw", |b| b.iter(|| via.call(&gw_req)));
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
