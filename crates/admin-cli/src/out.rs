//! Printing: text for people, one JSON document for scripts (`--json`), progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints `json` with `--json`, otherwise the text `text` builds.
    pub fn emit(&self, json: &Value, text: impl FnOnce() -> String) {
        let s = if self.json {
            serde_json::to_string_pretty(json).unwrap_or_default()
        } else {
            text()
        };
        let mut o = std::io::stdout().lock();
        // A closed stdout (`| head`) is not an error worth reporting.
        let _ = writeln!(o, "{}", s.trim_end_matches('\n'));
    }

    /// One line of a stream (`audit tail -f`): compact JSON or text.
    pub fn line(&self, json: &Value, text: impl FnOnce() -> String) -> bool {
        let s = if self.json { json.to_string() } else { text() };
        let mut o = std::io::stdout().lock();
        writeln!(o, "{s}").and_then(|()| o.flush()).is_ok()
    }
}

/// Columns aligned, no borders.
pub fn table<const N: usize>(header: [&str; N], rows: Vec<[String; N]>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for r in rows {
        t.add_row(r);
    }
    // comfy-table pads every cell with one space on each side; drop the leading one.
    t.to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, to the second.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub fn opt(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

/// Progress of a long operation on stderr: rewritten in place on a terminal, one line per
/// update otherwise.
pub struct Progress {
    tty: bool,
    shown: bool,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub fn update(&mut self, msg: &str) {
        let mut e = std::io::stderr().lock();
        let _ = if self.tty {
            write!(e, "\r\x1b[2K{msg}")
        } else {
            writeln!(e, "{msg}")
        };
        let _ = e.flush();
        self.shown = true;
    }

    pub fn finish(&mut self) {
        if self.tty && self.shown {
            let _ = writeln!(std::io::stderr());
        }
        self.shown = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            ["NAME", "STATE"],
            vec![
                ["a".to_string(), "on".to_string()],
                ["longer".to_string(), "off".to_string()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        let col = |l: &str, w: &str| l.find(w).unwrap_or(usize::MAX);
        assert_eq!(col(lines[0], "STATE"), col(lines[2], "off"), "{t}");
        assert!(lines[1].starts_with('a'), "{t}");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
