//! Helpers shared by the fuzz targets: deterministic, data-derived split points.
//!
//! The targets take raw bytes (so the seed corpora are plain HTTP messages and JSON bodies), and
//! derive everything else, such as where to split the input, from a hash of those bytes. The same
//! input therefore always exercises the same splits, which keeps crashes reproducible.

/// FNV-1a over the input: a cheap, stable source of "random" choices derived from the data.
pub fn mix(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One split point in `0..=len`, derived from `seed`.
pub fn split_point(seed: u64, len: usize) -> usize {
    (seed % (len as u64 + 1)) as usize
}

/// Up to `parts - 1` sorted split points in `0..=len` (so `parts` pieces, some possibly empty).
pub fn split_points(seed: u64, len: usize, parts: usize) -> Vec<usize> {
    let mut s = seed;
    let mut cuts: Vec<usize> = (1..parts)
        .map(|_| {
            s = s.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
            split_point(s, len)
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

/// Cut `data` into pieces at `cuts` (sorted, each `<= data.len()`).
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &c in cuts {
        out.push(&data[start..c]);
        start = c;
    }
    out.push(&data[start..]);
    out
}

/// Decode `data` as the IO layer would if it arrived in two reads split at `cut`: decode the
/// first piece; after `Ok(None)` append the rest and decode again, otherwise just append the rest.
/// Returns the outcome and the bytes left in the buffer. `cut == data.len()` is one read.
pub fn decode_in_two<T, E>(
    data: &[u8],
    cut: usize,
    mut decode: impl FnMut(&mut bytes::BytesMut) -> Result<Option<T>, E>,
) -> (Result<Option<T>, E>, bytes::BytesMut) {
    let mut buf = bytes::BytesMut::from(&data[..cut]);
    let first = decode(&mut buf);
    buf.extend_from_slice(&data[cut..]);
    match first {
        Ok(None) => {
            let r = decode(&mut buf);
            (r, buf)
        }
        other => (other, buf),
    }
}
