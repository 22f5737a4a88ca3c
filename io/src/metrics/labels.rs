//! Label values: how any value is cleaned and capped before it becomes a label, and which
//! `backend` and `model` values a finished request is counted under (bounded by the config).

use std::borrow::Cow;

use aigw_core::config::Config;

/// Most bytes of a label value; longer values are cut at a char boundary.
pub const MAX_LABEL_BYTES: usize = 128;

/// The `backend` of a request no backend was tried for (refused before routing, refused by a
/// limit, answered by the gateway itself), and the `model` of a request that named none or was
/// refused before its caller was identified.
pub const NONE: &str = "none";

/// What client-chosen label values fold into: a model no pool serves, a model routed by `"*"`
/// once a worker holds [`MAX_CLIENT_MODELS`] of those, any client-chosen counter label past the
/// series cap.
pub const OTHER: &str = "_other";

/// Most model names routed by `"*"` (client-chosen) that one worker keeps as label values; later
/// ones are labelled [`OTHER`]. Names listed in `[models]` are bounded by the config and never
/// fold.
pub const MAX_CLIENT_MODELS: usize = 64;

/// A label value as it may be stored and rendered: at most [`MAX_LABEL_BYTES`] bytes, cut at a
/// char boundary, with every control character (C0, DEL, C1: line breaks, escape sequences)
/// replaced by U+FFFD, so that no value can break a line of the text format or a terminal.
/// Borrowed (a prefix of `v`) when only cutting is needed, which is the common case: no
/// allocation. The same cleaning as log fields get.
pub fn label_value(v: &str) -> Cow<'_, str> {
    crate::record::log_field(v, MAX_LABEL_BYTES)
}

/// Escape a label value for the text format (backslash, quote and line feed are its only
/// escapes); values were cleaned by [`label_value`] when stored, so no other control character
/// is left to break a line.
pub(super) fn escape(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// The `backend` and `model` label values of one finished request. Never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLabels<'a> {
    /// The backend that answered or was tried last, by its config name; [`NONE`] when none was.
    pub backend: &'a str,
    /// The model, when the config names it or routes it; see [`request_labels`].
    pub model: &'a str,
    /// `model` is a name only `"*"` routes: the client chose it, so a worker keeps at most
    /// [`MAX_CLIENT_MODELS`] of them and labels the rest [`OTHER`].
    pub client_chosen: bool,
}

/// The labels of a request for `model` (`""` when the body named none or was never read),
/// answered by `backend` (a config index), from a caller that was `identified`:
///
/// - `backend`: the backend's config name, or [`NONE`] when no backend was tried;
/// - `model`: [`NONE`] when the caller was never identified (nothing sent before the key check
///   becomes a label) or no model was named; the name itself when `[models]` lists it; the name,
///   marked client-chosen, when only `"*"` routes it; [`OTHER`] when no pool serves it.
pub fn request_labels<'a>(
    cfg: &'a Config,
    identified: bool,
    model: &'a str,
    backend: Option<usize>,
) -> RequestLabels<'a> {
    let backend = backend
        .and_then(|i| cfg.backends.get(i))
        .map_or(NONE, |b| b.name.as_str());
    let (model, client_chosen) = if !identified || model.is_empty() {
        (NONE, false)
    } else if cfg.models.exact.contains_key(model) {
        (model, false)
    } else if cfg.models.fallback.is_some() {
        (model, true)
    } else {
        (OTHER, false)
    };
    RequestLabels {
        backend,
        model,
        client_chosen,
    }
}
