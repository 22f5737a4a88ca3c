//! `[routes.NAME]`: non-LLM APIs (search, functions, weather…) relayed to one backend each under a
//! path prefix of their own, with the backend's credential swapped in and no token accounting.
//!
//! Prefixes never overlap: not the gateway's own paths, not each other. A path therefore belongs
//! to at most one route, so which route (and which consumer allow-list) applies to a request
//! never depends on a precedence rule the reader of the file has to remember.

use std::collections::{BTreeMap, HashMap};

use super::locate::key_path;
use super::pool::backend_id;
use super::raw::RawRoute;
use super::types::{BackendId, Consumer};
use super::validate::{invalid, Result};
use crate::request::{is_plain_segment, prefix_covers as covers, GATEWAY_PATHS};

/// Index of a route in [`Config::routes`](super::Config::routes).
pub type RouteId = usize;

/// `[routes.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The table name (`route:NAME` in logs, the `route` label in metrics).
    pub name: String,
    /// `/` and one or more plain segments, no trailing slash: matches itself and what is below
    /// it, on whole segments (`/search` matches `/search` and `/search/x`, never `/searchx`).
    pub prefix: String,
    /// The backend every request of the route goes to (its URL path, credential and breaker).
    pub backend: BackendId,
    /// Remove the prefix from the path sent to the backend. Default false.
    pub strip_prefix: bool,
    /// The consumers (indexes into `Config::consumers`) that may call it; `None` = every caller
    /// the gateway lets in.
    pub consumers: Option<Vec<usize>>,
}

/// Check `[routes.NAME]` (sorted by name) against the backends and consumers already checked.
pub(super) fn routes(
    raw: Option<BTreeMap<String, RawRoute>>,
    backends: &HashMap<&str, BackendId>,
    consumers: &[Consumer],
) -> Result<Vec<Route>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Route> = Vec::with_capacity(raw.len());
    for (name, r) in raw {
        let route = route(name, r, backends, consumers)?;
        if let Some(prev) = out
            .iter()
            .find(|p| covers(&p.prefix, &route.prefix) || covers(&route.prefix, &p.prefix))
        {
            return Err(invalid(
                key_path!["routes", &route.name, "prefix"],
                format!(
                    "\"{}\" overlaps route \"{}\" (prefix \"{}\"): a path may belong to one route only; nest nothing under another route's prefix",
                    route.prefix, prev.name, prev.prefix
                ),
            ));
        }
        out.push(route);
    }
    Ok(out)
}

fn route(
    name: String,
    r: RawRoute,
    backends: &HashMap<&str, BackendId>,
    consumers: &[Consumer],
) -> Result<Route> {
    let at = |k: &str| key_path!["routes", &name, k];
    let missing = |k: &str| invalid(key_path!["routes", &name], format!("missing key \"{k}\""));
    let prefix = r.prefix.ok_or_else(|| missing("prefix"))?;
    check_prefix(&prefix).map_err(|e| invalid(at("prefix"), e))?;
    let backend_name = r.backend.ok_or_else(|| missing("backend"))?;
    let backend = backend_id(backends, &backend_name, at("backend"))?;
    let allowed = match r.consumers {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(invalid(
                at("consumers"),
                "lists no consumer (remove the key to let every caller in)",
            ));
        }
        Some(list) => {
            let mut ids = Vec::with_capacity(list.len());
            for (i, c) in list.iter().enumerate() {
                let here = key_path!["routes", &name, "consumers", i];
                let Some(id) = consumers.iter().position(|k| k.name == *c) else {
                    let known: Vec<&str> = consumers.iter().map(|k| k.name.as_str()).collect();
                    let defined = if known.is_empty() {
                        "no [consumers.NAME] is defined".to_owned()
                    } else {
                        format!("defined: {}", known.join(", "))
                    };
                    return Err(invalid(
                        here,
                        format!("unknown consumer \"{c}\" ({defined})"),
                    ));
                };
                if ids.contains(&id) {
                    return Err(invalid(here, format!("consumer \"{c}\" is listed twice")));
                }
                ids.push(id);
            }
            Some(ids)
        }
    };
    Ok(Route {
        name,
        prefix,
        backend,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        consumers: allowed,
    })
}

/// A prefix is `/seg[/seg…]` of plain segments, outside the gateway's own paths.
fn check_prefix(p: &str) -> std::result::Result<(), String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!("\"{p}\" must start with \"/\""));
    };
    if rest.is_empty() {
        return Err(
            "\"/\" would take every path: name at least one segment, e.g. \"/search\"".into(),
        );
    }
    if let Some(trimmed) = p.strip_suffix('/') {
        return Err(format!(
            "\"{p}\" ends with \"/\": write \"{trimmed}\" (it matches \"{trimmed}\" and every path below it)"
        ));
    }
    if let Some(seg) = rest.split('/').find(|s| !is_plain_segment(s)) {
        return Err(format!(
            "segment \"{seg}\" of \"{p}\" is not a plain path segment: use letters, digits and - . _ ~ : only, and not \".\" or \"..\""
        ));
    }
    if let Some((own, what)) = GATEWAY_PATHS
        .iter()
        .find(|(own, _)| covers(own, p) || covers(p, own))
    {
        return Err(format!(
            "\"{p}\" overlaps the gateway's own path {own} ({what}); choose a prefix outside {}",
            GATEWAY_PATHS.map(|(o, _)| o).join(", ")
        ));
    }
    Ok(())
}
