//! Tests of the log writers: writing, rotation, drop accounting, the byte budget.
use super::*;

#[test]
fn time_format() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(784_111_777_123), "1994-11-06T08:49:37.123Z");
    assert_eq!(rfc3339_ms(1_835_395_200_000), "2028-02-29T00:00:00.000Z");
}

#[test]
fn writes_rotates_and_drops_when_full() {
    let dir = std::env::temp_dir().join(format!("aigw-logsink-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("m.jsonl");
    let sink = Sink::start(
        "t",
        Target::File {
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        },
        1024,
        DEFAULT_QUEUE_BYTES,
    )
    .unwrap();
    for i in 0..30 {
        sink.send(format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}").as_bytes());
    }
    sink.close();
    let cur = std::fs::read_to_string(&path).unwrap();
    let one = std::fs::read_to_string(dir.join("m.jsonl.1")).unwrap();
    assert!(cur.lines().all(|l| l.starts_with("{\"n\":")));
    assert!(cur.len() <= 100 && one.len() <= 100);
    assert!(cur.contains("\"n\":29"), "newest line is in the live file");
    assert!(!dir.join("m.jsonl.3").exists(), "only `keep` rotated files");
    assert_eq!(sink.accepted.load(Relaxed), 30);
    let _ = std::fs::remove_dir_all(&dir);

    // A writer that cannot keep up (capacity 1, many lines at once) drops and counts.
    let slow = Sink::start(
        "t2",
        Target::File {
            path: std::env::temp_dir().join(format!("aigw-ls2-{}", std::process::id())),
            max_bytes: 0,
            keep: 0,
        },
        1,
        DEFAULT_QUEUE_BYTES,
    )
    .unwrap();
    for _ in 0..10_000 {
        slow.send(b"xxxxxxxxxx");
    }
    slow.close();
    let total = slow.accepted.load(Relaxed) + slow.dropped.load(Relaxed);
    assert_eq!(
        total, 10_000,
        "every line is either written or counted as dropped"
    );
}

#[test]
fn the_byte_budget_never_overcommits() {
    let b = ByteBudget {
        queued: AtomicUsize::new(0),
        max: 100,
    };
    assert!(!b.try_take(101), "a line bigger than the whole budget");
    assert!(b.try_take(60));
    assert!(!b.try_take(41));
    assert!(b.try_take(40));
    assert!(!b.try_take(1));
    b.give_back(60);
    assert!(b.try_take(60));
    assert_eq!(b.queued.load(Relaxed), 100);
    // Racing senders: whatever they got never sums past the budget.
    let b = ByteBudget {
        queued: AtomicUsize::new(0),
        max: 10_000,
    };
    let taken: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..10_000).filter(|_| b.try_take(7)).count() * 7))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(taken <= 10_000 && taken > 10_000 - 7, "{taken}");
    assert_eq!(b.queued.load(Relaxed), taken);
}

#[test]
fn lines_over_the_byte_budget_are_dropped_and_counted() {
    let path = std::env::temp_dir().join(format!("aigw-ls3-{}", std::process::id()));
    let target = Target::File {
        path: path.clone(),
        max_bytes: 0,
        keep: 0,
    };
    let sink = Sink::start("t3", target, 1024, 1000).unwrap();
    sink.send("x".repeat(1000).as_bytes()); // 1001 bytes with its newline: never fits
    sink.send(b"yyyyyyyyyy");
    sink.close();
    assert_eq!(sink.dropped.load(Relaxed), 1);
    assert_eq!(sink.accepted.load(Relaxed), 1);
    assert_eq!(sink.queued_bytes(), 0, "the writer gave every byte back");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", "y".repeat(10))
    );
    let _ = std::fs::remove_file(&path);
}
