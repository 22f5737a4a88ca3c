//! Counter keys of the limits that are not per consumer (`counter = "ip"` or `"header:NAME"`).
//!
//! A key is a 64-bit SipHash of a short, capped input under a key drawn at random once per process
//! (`std`'s `RandomState`, which is seeded from the OS and built to resist HashDoS), so whatever
//! a client sends, a counter key costs the same few bytes, and a client that does not know the
//! process's key cannot steer two of its values (or its value and someone else's) into one bucket.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

/// Bytes of a counter header's value that count: values that agree on these share a bucket. Long
/// enough for any user id, tenant name or token hash a front proxy would set.
pub const MAX_KEY_VALUE_BYTES: usize = 256;

/// Turns what a caller is counted by into its counter key.
#[derive(Debug, Clone, Default)]
pub struct KeyHasher(RandomState);

/// Domain tags, so an address and a header value never hash alike by construction.
const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;
const TAG_HEADER: u8 = b'h';
const TAG_NO_HEADER: u8 = b'n';

impl KeyHasher {
    /// A hasher with a fresh random key.
    pub fn new() -> Self {
        KeyHasher(RandomState::new())
    }

    /// The key of a client address: an IPv4 address by itself, an IPv6 address by its /64 (one
    /// subscriber's usual allocation: counting single addresses would let one host take 2^64
    /// buckets). An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn ip(&self, ip: IpAddr) -> u64 {
        let mut h = self.0.build_hasher();
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                h.write_u8(TAG_V4);
                h.write(&v4.octets());
            }
            IpAddr::V6(v6) => {
                h.write_u8(TAG_V6);
                h.write(&v6.octets()[..8]);
            }
        }
        h.finish()
    }

    /// The key of a counter header's value (`None`: the header is absent, which is its own key,
    /// distinct from every value). Only the first [`MAX_KEY_VALUE_BYTES`] bytes count.
    pub fn header(&self, value: Option<&[u8]>) -> u64 {
        let mut h = self.0.build_hasher();
        match value {
            Some(v) => {
                h.write_u8(TAG_HEADER);
                v[..v.len().min(MAX_KEY_VALUE_BYTES)].hash(&mut h);
            }
            None => h.write_u8(TAG_NO_HEADER),
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let k = KeyHasher::new();
        let a = k.ip(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, k.ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_eq!(a, k.ip(ip("2001:db8:1:2::")));
        assert_ne!(a, k.ip(ip("2001:db8:1:3::1")));
        assert_ne!(a, k.ip(ip("2001:db8:0:2:aaaa::1")));
        // IPv4 counts by the whole address, mapped or not.
        let v4 = k.ip(ip("192.0.2.7"));
        assert_eq!(v4, k.ip(ip("::ffff:192.0.2.7")));
        assert_ne!(v4, k.ip(ip("192.0.2.8")));
        assert_ne!(
            k.ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            k.ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
    }

    #[test]
    fn header_values_are_capped_and_distinct() {
        let k = KeyHasher::new();
        assert_eq!(k.header(Some(b"tenant-a")), k.header(Some(b"tenant-a")));
        assert_ne!(k.header(Some(b"tenant-a")), k.header(Some(b"tenant-b")));
        assert_ne!(k.header(Some(b"ab")), k.header(Some(b"abc")));
        // Absent is not the empty value, nor the old stand-in "-".
        assert_ne!(k.header(None), k.header(Some(b"")));
        assert_ne!(k.header(None), k.header(Some(b"-")));
        // Past the cap, only the first bytes count: a megabyte-long value costs nothing more.
        let long = vec![b'x'; MAX_KEY_VALUE_BYTES];
        let mut longer = long.clone();
        longer.extend_from_slice(&[b'y'; 1 << 20]);
        assert_eq!(k.header(Some(&long)), k.header(Some(&longer)));
        let mut differs = long.clone();
        differs[MAX_KEY_VALUE_BYTES - 1] = b'z';
        assert_ne!(k.header(Some(&long)), k.header(Some(&differs)));
    }

    #[test]
    fn keys_depend_on_the_process_key() {
        // Two hashers (as two processes would have) disagree: a client cannot precompute keys.
        let (a, b) = (KeyHasher::new(), KeyHasher::new());
        let values: Vec<String> = (0..8).map(|i| format!("tenant-{i}")).collect();
        let differ = values
            .iter()
            .filter(|v| a.header(Some(v.as_bytes())) != b.header(Some(v.as_bytes())))
            .count();
        assert_eq!(differ, values.len());
    }
}
