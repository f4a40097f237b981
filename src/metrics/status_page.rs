//! The status page at `GET /` of the metrics endpoint: one server-rendered
//! HTML page for a person (a browser, a phone), from the same figures
//! `/metrics` exposes plus consumer-group lag and the recent events.
//!
//! Owns: the page's HTML and CSS. Must never load anything from elsewhere
//! (no external assets, no script: it refreshes itself with a meta tag),
//! show a secret (settings, URLs, credentials are not among its figures),
//! or put a string in the page unescaped (topic, group and client-supplied
//! names go through [`escape_html`]).

use std::fmt::Write as _;

use super::{Event, PartitionFigures};

/// Seconds between the page's own reloads.
pub const REFRESH_SECONDS: u32 = 10;

/// Everything the page shows, read when it is requested.
#[derive(Debug, Clone, Default)]
pub struct StatusFigures {
    /// Engine clock, ms (events are shown as an age from it).
    pub now_ms: i64,
    /// Why `/readyz` fails, if it does.
    pub not_ready: Option<String>,
    /// Online partitions, by topic and partition.
    pub partitions: Vec<PartitionFigures>,
    pub offline: Vec<OfflinePartition>,
    pub groups: Vec<GroupLag>,
    /// Newest first.
    pub events: Vec<Event>,
    /// Events recorded since start (older ones are no longer kept).
    pub events_total: u64,
}

/// A partition that is not serving, and why.
#[derive(Debug, Clone)]
pub struct OfflinePartition {
    pub topic: String,
    pub partition: u32,
    pub reason: String,
}

/// A consumer group's committed offsets against the log end offsets.
#[derive(Debug, Clone)]
pub struct GroupLag {
    pub group: String,
    pub partitions: Vec<GroupPartitionLag>,
}

/// One committed offset of a group.
#[derive(Debug, Clone)]
pub struct GroupPartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    /// `None` when the partition is gone or offline.
    pub log_end_offset: Option<i64>,
}

impl GroupPartitionLag {
    /// Records the group has not consumed yet (Kafka's consumer lag).
    pub fn lag(&self) -> Option<i64> {
        self.log_end_offset.map(|end| (end - self.committed).max(0))
    }
}

impl GroupLag {
    /// The lag summed over the group's partitions with a known log end.
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag()).sum()
    }
}

/// `s` with HTML's special characters escaped (for text and attributes).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Bytes for a person: `1.5 MiB` (the status page, `tierlog tier status`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A width in percent of `max`, at least 1 for a non-zero value.
fn percent(v: u64, max: u64) -> f64 {
    if max == 0 || v == 0 {
        return 0.0;
    }
    (v as f64 * 100.0 / max as f64).clamp(1.0, 100.0)
}

/// An age for a person: `42 s ago`, `3 min ago`, `5 h ago`.
fn age(now_ms: i64, at_ms: i64) -> String {
    let s = (now_ms - at_ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:0.5em;max-width:60em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:0.9em}\
th,td{text-align:left;padding:0.25em 0.5em;border-bottom:1px solid #ddd;white-space:nowrap}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.bar{display:flex;height:0.8em;min-width:6em;background:#eee;border-radius:2px}\
.local{background:#3b7dd8}.remote{background:#e8912d}.dirty{background:#c0392b}\
.key span{display:inline-block;width:0.8em;height:0.8em;margin:0 0.3em 0 1em;vertical-align:middle}\
.ok{color:#1e7b34}.bad{color:#b00020}.muted{color:#777}";

/// The whole page.
pub fn render_status_page(f: &StatusFigures) -> String {
    let mut out = String::with_capacity(4096 + f.partitions.len() * 400);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<title>tierlog status</title><style>{STYLE}</style></head><body>\n<h1>tierlog</h1>\n"
    );
    match &f.not_ready {
        None => out.push_str("<p id=\"ready\" class=\"ok\">Ready.</p>\n"),
        Some(why) => {
            let _ = writeln!(
                out,
                "<p id=\"ready\" class=\"bad\">Not ready: {}.</p>",
                escape_html(why)
            );
        }
    }
    partitions(&mut out, f);
    groups(&mut out, f);
    cleaning(&mut out, f);
    events(&mut out, f);
    let _ = writeln!(
        out,
        "<p class=\"muted\">Refreshes every {REFRESH_SECONDS} s. Figures as in <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>"
    );
    out
}

fn partitions(out: &mut String, f: &StatusFigures) {
    out.push_str("<h2>Partitions</h2>\n");
    if f.partitions.is_empty() && f.offline.is_empty() {
        out.push_str("<p class=\"muted\">No topics.</p>\n");
        return;
    }
    let max = f
        .partitions
        .iter()
        .map(|p| p.local_bytes + p.remote_bytes)
        .max()
        .unwrap_or(0);
    out.push_str(
        "<p class=\"key\"><span class=\"local\"></span>local<span class=\"remote\"></span>remote (tiered)</p>\n\
<div class=\"scroll\"><table id=\"partitions\"><tr><th>topic</th><th>partition</th><th>bytes</th><th></th>\
<th>tiering lag</th><th>log start</th><th>local start</th><th>log end</th></tr>\n",
    );
    for p in &f.partitions {
        let lag = match p.tiering_lag() {
            Some(l) => format!("{l} records"),
            None => "not tiered".to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td>\
<td><div class=\"bar\" title=\"local {} / remote {}\"><div class=\"local\" style=\"width:{:.1}%\"></div><div class=\"remote\" style=\"width:{:.1}%\"></div></div></td>\
<td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape_html(&p.topic),
            p.partition,
            p.local_bytes,
            p.remote_bytes,
            percent(p.local_bytes, max),
            percent(p.remote_bytes, max),
            human_bytes(p.local_bytes),
            human_bytes(p.remote_bytes),
            lag,
            p.log_start_offset,
            p.local_log_start_offset,
            p.log_end_offset,
        );
    }
    for o in &f.offline {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td colspan=\"6\" class=\"bad\">offline: {}</td></tr>",
            escape_html(&o.topic),
            o.partition,
            escape_html(&o.reason)
        );
    }
    out.push_str("</table></div>\n");
}

fn groups(out: &mut String, f: &StatusFigures) {
    out.push_str("<h2>Consumer groups</h2>\n");
    if f.groups.is_empty() {
        out.push_str("<p class=\"muted\">No committed offsets.</p>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table id=\"groups\"><tr><th>group</th><th>topic</th><th>partition</th>\
<th>lag</th><th>committed</th><th>log end</th></tr>\n",
    );
    for g in &f.groups {
        let _ = writeln!(
            out,
            "<tr><th colspan=\"3\">{}</th><th class=\"num\">{}</th><th colspan=\"2\"></th></tr>",
            escape_html(&g.group),
            g.total_lag()
        );
        for p in &g.partitions {
            let (end, lag) = match (p.log_end_offset, p.lag()) {
                (Some(end), Some(lag)) => (end.to_string(), lag.to_string()),
                _ => ("—".to_string(), "—".to_string()),
            };
            let _ = writeln!(
                out,
                "<tr><td></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{lag}</td><td class=\"num\">{}</td><td class=\"num\">{end}</td></tr>",
                escape_html(&p.topic),
                p.partition,
                p.committed,
            );
        }
    }
    out.push_str("</table></div>\n");
}

fn cleaning(out: &mut String, f: &StatusFigures) {
    let compacted: Vec<_> = f
        .partitions
        .iter()
        .filter_map(|p| p.cleaning.as_ref().map(|c| (p, c)))
        .collect();
    if compacted.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Compacted partitions</h2>\n<div class=\"scroll\"><table id=\"cleaning\"><tr><th>topic</th>\
<th>partition</th><th>dirty ratio</th><th></th><th>first dirty offset</th><th>last cleaned</th></tr>\n",
    );
    for (p, c) in compacted {
        let ratio = if c.dirty_ratio.is_finite() {
            c.dirty_ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let last = if c.last_clean_ms < 0 {
            "never".to_string()
        } else {
            age(f.now_ms, c.last_clean_ms)
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td><div class=\"bar\"><div class=\"dirty\" style=\"width:{:.1}%\"></div></div></td>\
<td class=\"num\">{:.0}%</td><td class=\"num\">{}</td><td>{last}</td></tr>",
            escape_html(&p.topic),
            p.partition,
            ratio * 100.0,
            ratio * 100.0,
            c.first_dirty_offset,
        );
    }
    out.push_str("</table></div>\n");
}

fn events(out: &mut String, f: &StatusFigures) {
    out.push_str("<h2>Recent errors</h2>\n");
    if f.events.is_empty() {
        out.push_str("<p class=\"muted\">None since start.</p>\n");
        return;
    }
    out.push_str("<div class=\"scroll\"><table id=\"events\"><tr><th>when</th><th>level</th><th>what</th></tr>\n");
    for e in &f.events {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"bad\">{}</td><td style=\"white-space:normal\">{}</td></tr>",
            age(f.now_ms, e.at_ms),
            e.level.as_str(),
            escape_html(&e.message)
        );
    }
    out.push_str("</table></div>\n");
    let dropped = f.events_total.saturating_sub(f.events.len() as u64);
    if dropped > 0 {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{dropped} older events are in the log only.</p>"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CleaningFigures, EventLevel};

    fn partition(topic: &str, local: u64, remote: u64) -> PartitionFigures {
        PartitionFigures {
            topic: topic.into(),
            partition: 0,
            log_start_offset: 0,
            local_log_start_offset: 40,
            log_end_offset: 100,
            last_tiered_offset: 39,
            local_bytes: local,
            remote_bytes: remote,
            remote_storage: true,
            cleaning: None,
        }
    }

    #[test]
    fn the_page_escapes_names_and_draws_bars_lag_and_events() {
        let hostile = "<script>alert('x')</script>&\"";
        let mut compacted = partition("table", 10, 0);
        compacted.remote_storage = false;
        compacted.cleaning = Some(CleaningFigures {
            dirty_ratio: 0.25,
            first_dirty_offset: 7,
            last_clean_ms: -1,
        });
        let f = StatusFigures {
            now_ms: 100_000,
            not_ready: None,
            partitions: vec![partition(hostile, 300, 700), compacted],
            offline: vec![OfflinePartition {
                topic: "broken".into(),
                partition: 2,
                reason: "fsync <failed>".into(),
            }],
            groups: vec![GroupLag {
                group: "g<1>".into(),
                partitions: vec![GroupPartitionLag {
                    topic: "table".into(),
                    partition: 0,
                    committed: 60,
                    log_end_offset: Some(100),
                }],
            }],
            events: vec![Event {
                at_ms: 58_000,
                level: EventLevel::Error,
                message: "tiering failed: <boom>".into(),
            }],
            events_total: 3,
        };
        let html = render_status_page(&f);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"),
            "{html}"
        );
        // Bars scale to the largest partition: 300 + 700 bytes is 100%.
        assert!(html.contains("width:30.0%"), "{html}");
        assert!(html.contains("width:70.0%"), "{html}");
        assert!(html.contains("60 records"), "tiering lag: {html}");
        assert!(html.contains("not tiered"), "{html}");
        assert!(html.contains("offline: fsync &lt;failed&gt;"), "{html}");
        assert!(html.contains("g&lt;1&gt;"), "{html}");
        assert!(
            html.contains("<td class=\"num\">0</td><td class=\"num\">40</td><td class=\"num\">60</td><td class=\"num\">100</td></tr>"),
            "lag 40: {html}"
        );
        assert!(html.contains("25%"), "dirty ratio: {html}");
        assert!(html.contains("42 s ago"), "{html}");
        assert!(html.contains("tiering failed: &lt;boom&gt;"), "{html}");
        assert!(html.contains("2 older events"), "{html}");
        assert!(html.contains("http-equiv=\"refresh\""), "{html}");
        assert!(html.contains("name=\"viewport\""), "{html}");
        // No external asset, no script.
        for banned in ["<script", "src=", "<link", "http://", "https://"] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
    }
}
