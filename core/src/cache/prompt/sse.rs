//! A whole `text/event-stream` body → its events, as the WHATWG event-stream rules read it:
//! lines end with `\r\n`, `\n` or `\r`; a leading BOM is skipped; `:` lines are comments; `data:`
//! lines (one leading space dropped) accumulate, joined by `\n`; `event:` names the event; a blank
//! line dispatches an event that has data; an event not followed by a blank line before the end is
//! discarded (a stream cut off mid-event is not complete).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// Its `event:` name, when it had one.
    pub(crate) kind: Option<String>,
    /// Its data lines, joined by `\n`.
    pub(crate) data: String,
}

/// The events of a whole body; `None` when it is not UTF-8.
pub(crate) fn events(body: &[u8]) -> Option<Vec<Event>> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut data = String::new();
    let mut has_data = false;
    let mut kind: Option<String> = None;
    let mut rest = text;
    // Only terminated lines are read: what follows the last line break is an unfinished line.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = rest.get(..end).unwrap_or_default();
        let skip = if rest.get(end..end + 2) == Some("\r\n") {
            2
        } else {
            1
        };
        rest = rest.get(end + skip..).unwrap_or_default();
        if line.is_empty() {
            if has_data {
                out.push(Event {
                    kind: kind.take(),
                    data: std::mem::take(&mut data),
                });
            }
            has_data = false;
            kind = None;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            "event" => kind = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(out)
}
