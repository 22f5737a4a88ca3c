//! `openai::peek` over arbitrary bytes: never panics; non-objects peek as "nothing known"; a
//! borrowed `model` points into the body; the result does not depend on trailing whitespace.
#![no_main]

use std::borrow::Cow;

use aigw_core::openai::{peek, Peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let r = peek(body);
    if first != Some(&b'{') {
        assert_eq!(
            r.as_ref().ok(),
            Some(&Peek::default()),
            "a non-object must peek as nothing"
        );
        return;
    }
    let Ok(p) = r else { return };
    if let Some(Cow::Borrowed(m)) = &p.model {
        let range = body.as_ptr_range();
        let mp = m.as_ptr();
        assert!(
            range.start <= mp && mp <= range.end,
            "borrowed model is not inside the body"
        );
    }
    // JSON allows trailing whitespace: appending some must not change the answer.
    let mut padded = body.to_vec();
    padded.extend_from_slice(b" \n");
    let q = peek(&padded).ok();
    assert_eq!(q.as_ref(), Some(&p), "trailing whitespace changed the peek");
});
