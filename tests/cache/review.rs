//! Findings of the security and correctness review of the cache (branch `cache-review`), each
//! pinned by the test that showed it.

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    a_repeated_vary_by_header_is_not_a_partition,
);

/// `vary_by = ["header:x-tenant"]` trusts a header a proxy in front sets; a proxy that appends
/// its value leaves the client's own first. A request carrying the header twice has no single
/// partition: it must not be served the partition of either value (it bypasses).
fn a_repeated_vary_by_header_is_not_a_partition(d: Driver) {
    let gw = Setup::with(CacheCfg {
        vary_by: r#"["header:x-tenant"]"#,
        ..CacheCfg::default()
    })
    .start(d);
    let a = expect(
        ask(&gw, &[("x-tenant", "victim")], &chat(COFFEE)),
        "miss",
        "victim",
    );
    wait_entries(&gw, 1, "the victim's answer");
    expect(
        ask(&gw, &[("x-tenant", "victim")], &chat(COFFEE)),
        "hit-exact",
        "the victim again",
    );
    // The attacker's own value comes second, as an appending proxy would add it.
    for body in [chat(COFFEE), chat(COFFEE_WORK)] {
        let b = ask(
            &gw,
            &[("x-tenant", "victim"), ("x-tenant", "attacker")],
            &body,
        );
        assert_eq!(b.resp.status, 200, "{}", b.describe());
        assert_ne!(
            b.id(),
            a.id(),
            "the victim's answer served to a request that also names another tenant\n{}",
            b.describe()
        );
        assert_eq!(b.cache(), "bypass", "{}", b.describe());
    }
}
