//! Just enough of Server-Sent Events to rewrite a bounded, finished reply (`tools/list` filtering,
//! the edge's own catalog fetch). Streams the edge relays are never parsed: they pass through.

/// One event of a stream: its raw lines other than `data:`, and its data joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:`, `id:`, `retry:` and comment lines, verbatim.
    pub other_lines: Vec<String>,
    pub data: Option<String>,
}

/// Splits a complete SSE body into events (the last one may lack its blank line).
pub fn parse(body: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let mut other = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if data.is_some() || !other.is_empty() {
                events.push(Event {
                    other_lines: std::mem::take(&mut other),
                    data: data.take(),
                });
            }
            continue;
        }
        if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            match &mut data {
                Some(acc) => {
                    acc.push('\n');
                    acc.push_str(d);
                }
                None => data = Some(d.to_string()),
            }
        } else {
            other.push(line.to_string());
        }
    }
    if data.is_some() || !other.is_empty() {
        events.push(Event {
            other_lines: other,
            data,
        });
    }
    events
}

/// Writes events back as an SSE body.
pub fn write(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        for l in &e.other_lines {
            out.push_str(l);
            out.push('\n');
        }
        if let Some(d) = &e.data {
            for l in d.split('\n') {
                out.push_str("data: ");
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// One event carrying a JSON-RPC message.
pub fn message_event(json: &str) -> String {
    write(&[Event {
        other_lines: vec!["event: message".into()],
        data: Some(json.to_string()),
    }])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trips_events_with_multi_line_data() {
        let body =
            "event: message\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: keepalive\n\ndata: x";
        let events = parse(body);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(events[0].other_lines, vec!["event: message", "id: 7"]);
        assert_eq!(events[1].data, None);
        assert_eq!(events[2].data.as_deref(), Some("x"));
        assert_eq!(parse(&write(&events)), events);
    }
}
