//! Validation of `[pools.NAME]`, `[models]` and status lists such as `[429, "500-599"]`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::locate::{key_path, KeyPath};
use super::raw::{RawPool, RawStatus};
use super::types::*;
use super::validate::{duration, invalid, Result};

/// Most members of one pool.
pub const MAX_MEMBERS: usize = 64;

/// Check `[pools.NAME]`; `ids` maps backend names to their ids.
pub(super) fn pool(name: &str, p: &RawPool, ids: &HashMap<&str, BackendId>) -> Result<Pool> {
    let at = |k: &str| key_path!["pools", name, k];
    let raw_members = p.members.as_deref().unwrap_or_default();
    if raw_members.is_empty() {
        let path = if p.members.is_some() {
            at("members")
        } else {
            key_path!["pools", name]
        };
        return Err(invalid(path, "a pool needs at least one member"));
    }
    if raw_members.len() > MAX_MEMBERS {
        // The failover loop tracks the members a request tried in a u64 bitmask.
        return Err(invalid(
            at("members"),
            format!(
                "a pool has at most {MAX_MEMBERS} members (this one has {}); split it into pools",
                raw_members.len()
            ),
        ));
    }
    let mut members = Vec::with_capacity(raw_members.len());
    for (i, m) in raw_members.iter().enumerate() {
        let here = |k: &str| key_path!["pools", name, "members", i, k];
        let Some(backend_name) = &m.backend else {
            return Err(invalid(
                key_path!["pools", name, "members", i],
                "missing key \"backend\"",
            ));
        };
        let backend = backend_id(ids, backend_name, here("backend"))?;
        if members.iter().any(|m: &PoolMember| m.backend == backend) {
            return Err(invalid(
                here("backend"),
                format!("backend \"{backend_name}\" is listed twice"),
            ));
        }
        let weight = match m.weight.unwrap_or(1) {
            0 => return Err(invalid(here("weight"), "must be at least 1")),
            w => w,
        };
        members.push(PoolMember {
            backend,
            priority: m.priority.unwrap_or(1),
            weight,
        });
    }
    let strategy = match p.strategy.as_deref() {
        None | Some("weighted") => Strategy::Weighted,
        Some("random") => Strategy::Random,
        Some(other) => {
            return Err(invalid(
                at("strategy"),
                format!("unknown strategy \"{other}\" (expected \"weighted\" or \"random\")"),
            ));
        }
    };
    let retry_on = match &p.retry_on {
        Some(list) => statuses(&at("retry_on"), list)?,
        None => [429, 500, 502, 503, 504]
            .map(|s| StatusRange { lo: s, hi: s })
            .to_vec(),
    };
    let max_attempts = match p.max_attempts {
        None => members.len(),
        Some(0) => return Err(invalid(at("max_attempts"), "must be at least 1")),
        Some(n) => usize::try_from(n).map_err(|_| invalid(at("max_attempts"), "too large"))?,
    };
    let bench_for = duration(at("bench_for"), &p.bench_for, Duration::from_secs(10))?;
    Ok(Pool {
        name: name.to_owned(),
        members,
        strategy,
        retry_on,
        max_attempts,
        bench_for,
    })
}

/// The id of the backend called `name`, or an error at `path` listing the defined ones.
pub(super) fn backend_id(
    ids: &HashMap<&str, BackendId>,
    name: &str,
    path: KeyPath,
) -> Result<BackendId> {
    ids.get(name).copied().ok_or_else(|| {
        let mut known: Vec<&str> = ids.keys().copied().collect();
        known.sort_unstable();
        invalid(
            path,
            format!("unknown backend \"{name}\" (defined: {})", known.join(", ")),
        )
    })
}

/// Check `[models]` (absent is fine when there is exactly one pool).
pub(super) fn models(
    raw: Option<BTreeMap<String, String>>,
    pools: &BTreeMap<String, RawPool>,
) -> Result<ModelMap> {
    let Some(raw) = raw else {
        if pools.len() == 1 {
            return Ok(ModelMap {
                exact: HashMap::new(),
                fallback: Some(0),
            });
        }
        return Err(invalid(
            key_path!["models"],
            "missing [models] table (required when there is more than one pool)",
        ));
    };
    if raw.is_empty() {
        return Err(invalid(
            key_path!["models"],
            "maps no model (add e.g. \"*\" = \"POOL\")",
        ));
    }
    let mut map = ModelMap::default();
    for (model, pool_name) in raw {
        let Some(id) = pools.keys().position(|p| *p == pool_name) else {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            return Err(invalid(
                key_path!["models", &model],
                format!(
                    "unknown pool \"{pool_name}\" (defined: {})",
                    known.join(", ")
                ),
            ));
        };
        if model == "*" {
            map.fallback = Some(id);
        } else {
            map.exact.insert(model, id);
        }
    }
    Ok(map)
}

/// `n` as an HTTP status (100..=599).
pub(super) fn status_code(n: i64) -> std::result::Result<u16, String> {
    match u16::try_from(n) {
        Ok(s @ 100..=599) => Ok(s),
        _ => Err(format!("status {n} is outside 100..=599")),
    }
}

/// A status list such as `[429, "500-599"]`; an empty list is allowed (nothing matches).
pub(super) fn statuses(path: &KeyPath, list: &[RawStatus]) -> Result<Vec<StatusRange>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let mut here = path.clone();
        here.0.push(i.into());
        let range = match entry {
            RawStatus::Code(n) => status_code(*n).map(|s| StatusRange { lo: s, hi: s }),
            RawStatus::Text(t) => status_range(t),
        };
        out.push(range.map_err(|e| invalid(here, e))?);
    }
    Ok(out)
}

fn status_range(t: &str) -> std::result::Result<StatusRange, String> {
    let bad = || format!("invalid status range \"{t}\" (expected e.g. \"500-599\" or 429)");
    let num = |s: &str| -> std::result::Result<u16, String> {
        let n: i64 = s.trim().parse().map_err(|_| bad())?;
        status_code(n)
    };
    let (lo, hi) = match t.split_once('-') {
        Some((lo, hi)) => (num(lo)?, num(hi)?),
        None => (num(t)?, num(t)?),
    };
    if lo > hi {
        return Err(format!("status range \"{t}\" is backwards ({lo} > {hi})"));
    }
    Ok(StatusRange { lo, hi })
}
