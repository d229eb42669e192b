//! The soak's timeline and its plot: three panels sharing the time axis
//! (scenarios/s, server RSS, recordings and playbook entries), with the
//! moment writes stop marked. Plain SVG, no plotting library.

use std::fmt::Write;

use serde::Serialize;

/// One point of the soak's timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the measured run started.
    pub at_secs: f64,
    /// Scenarios finished so far.
    pub runs: u64,
    /// Scenarios per second since the previous point.
    pub scenarios_per_second: f64,
    /// Failed scenarios so far.
    pub failures: u64,
    pub rss_mb: f64,
    /// Recordings the server acknowledged so far.
    pub recordings: u64,
    /// Items in `playbook_memory` (one per distinct query and role).
    pub playbook_entries: u64,
}

const WIDTH: f64 = 900.0;
const PANEL: f64 = 170.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 45.0;

/// The timeline as an SVG document; `quiet_from` (seconds) marks where
/// writes stopped.
pub fn soak_svg(points: &[TimelinePoint], quiet_from: Option<f64>, clients: usize) -> String {
    let height = TOP + 3.0 * PANEL + 2.0 * GAP + 40.0;
    let end = points.last().map_or(1.0, |p| p.at_secs).max(1.0);
    let failures = points.last().map_or(0, |p| p.failures);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="15">Soak: the scenario mix at {clients} clients, then searches only ({failures} failed scenarios)</text>
"#
    );
    type Series<'a> = (&'a str, &'a str, Box<dyn Fn(&TimelinePoint) -> f64>);
    let panels: [(&str, Vec<Series>); 3] = [
        (
            "scenarios/s",
            vec![(
                "scenarios/s",
                "#1f77b4",
                Box::new(|p| p.scenarios_per_second),
            )],
        ),
        (
            "server RSS, MB",
            vec![("RSS", "#d62728", Box::new(|p| p.rss_mb))],
        ),
        (
            "count",
            vec![
                (
                    "recordings acknowledged",
                    "#2ca02c",
                    Box::new(|p| p.recordings as f64),
                ),
                (
                    "playbook entries",
                    "#9467bd",
                    Box::new(|p| p.playbook_entries as f64),
                ),
            ],
        ),
    ];
    for (i, (label, series)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let max = series
            .iter()
            .flat_map(|(_, _, value)| points.iter().map(value))
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        panel(&mut svg, top, label, max, end, quiet_from);
        for (j, (name, colour, value)) in series.iter().enumerate() {
            let path: Vec<String> = points
                .iter()
                .map(|p| {
                    let (x, y) = (x_of(p.at_secs, end), top + PANEL - value(p) / max * PANEL);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.0}" y="{:.0}" fill="{colour}">{name}</text>"#,
                WIDTH - RIGHT - 190.0,
                top + 14.0 + j as f64 * 15.0
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">minutes</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn x_of(at_secs: f64, end: f64) -> f64 {
    LEFT + at_secs / end * (WIDTH - LEFT - RIGHT)
}

/// Frame, y ticks, minute ticks and the writes-stop line of one panel.
fn panel(svg: &mut String, top: f64, label: &str, max: f64, end: f64, quiet_from: Option<f64>) {
    let inner = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{inner}" height="{PANEL}" fill="none" stroke="#999"/>
<text x="{LEFT}" y="{:.0}">{label}</text>"##,
        top - 6.0
    );
    for step in 0..=4 {
        let value = max * step as f64 / 4.0;
        let y = top + PANEL - PANEL * step as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.0}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.0}" y="{:.1}" text-anchor="end">{value:.0}</text>"##,
            LEFT + inner,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let minutes = (end / 60.0).ceil() as u64;
    let every = (minutes / 10).max(1);
    for minute in (0..=minutes).step_by(every as usize) {
        let x = x_of(minute as f64 * 60.0, end);
        if x > LEFT + inner + 0.5 {
            break;
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{minute}</text>"##,
            top + PANEL,
            top + PANEL + 4.0,
            top + PANEL + 16.0
        );
    }
    if let Some(quiet) = quiet_from {
        let x = x_of(quiet, end);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#555">writes stop</text>"##,
            top + PANEL,
            x + 4.0,
            top + PANEL - 6.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_has_one_line_per_series_and_marks_the_quiet_phase() {
        let points: Vec<TimelinePoint> = (1..=6)
            .map(|i| TimelinePoint {
                at_secs: i as f64 * 10.0,
                scenarios_per_second: 900.0,
                rss_mb: 500.0 + i as f64,
                recordings: i * 100,
                playbook_entries: 40,
                ..Default::default()
            })
            .collect();
        let svg = soak_svg(&points, Some(40.0), 50);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("writes stop"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
