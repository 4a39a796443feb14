//! The page's pictures as inline SVG: stacked bars over bins (time, or latency buckets), with
//! an optional line of a share (0–100 %) on a right-hand axis. No script: each bar carries a
//! `<title>`, which browsers show on hover.
//!
//! Drawn by hand: three bar charts need axes, ticks and rectangles, not a plotting library.

use maud::{Markup, html};

use super::summary::nice_step;

/// The drawing's size, in SVG units (it scales to the page's width).
const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 250.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 50.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// One stacked series.
pub(super) struct Series<'a> {
    /// Shown in tooltips.
    pub(super) name: &'a str,
    /// Fill colour.
    pub(super) color: &'a str,
    /// One value per bin.
    pub(super) values: &'a [u64],
}

/// A stacked bar chart.
pub(super) struct Bars<'a> {
    /// Bottom to top.
    pub(super) series: Vec<Series<'a>>,
    /// Each bin's name, for tooltips.
    pub(super) bin_names: Vec<String>,
    /// The labels under the axis: (bin, text).
    pub(super) x_labels: Vec<(usize, String)>,
    /// Values are multiplied by this before drawing (counts per bin to counts per second).
    pub(super) scale: f64,
    /// The left axis' unit, after each tick.
    pub(super) unit: &'a str,
    /// A share per bin (0.0–1.0; `None` where undefined), drawn as a line on a 0–100 % axis.
    pub(super) share: Option<(&'a str, &'a str, Vec<Option<f64>>)>,
    /// The picture's accessible description.
    pub(super) title: &'a str,
}

/// A round step of about `max / 4`, and the axis top it gives.
fn ticks(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 1.0);
    }
    let step = nice_step(max / 4.0);
    (step, (max / step).ceil() * step)
}

/// A tick value without noise (`2.5`, `40`, `1200`).
fn tick_label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// SVG numbers with one decimal: enough at this size, and a small page.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// Draws `bars`.
pub(super) fn bars(bars: &Bars) -> Markup {
    let bins = bars.bin_names.len().max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / bins as f64;
    let gap = if slot > 4.0 { slot * 0.15 } else { 0.0 };
    let totals: Vec<f64> = (0..bins)
        .map(|i| {
            bars.series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0) as f64)
                .sum::<f64>()
                * bars.scale
        })
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max);
    let (step, top) = ticks(max);
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let tick_values: Vec<f64> = (0..)
        .map(|k| k as f64 * step)
        .take_while(|v| *v <= top + step / 2.0)
        .collect();
    // Each bar's segments: (x, y, height, colour, tooltip).
    let mut rects = Vec::new();
    for i in 0..bins {
        let mut base = 0.0;
        for s in &bars.series {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let value = v as f64 * bars.scale;
            let (y0, y1) = (y(base), y(base + value));
            base += value;
            rects.push((
                LEFT + i as f64 * slot + gap / 2.0,
                y1,
                (y0 - y1).max(0.5),
                s.color,
                format!("{}: {} {v}", bars.bin_names[i], s.name),
            ));
        }
    }
    let share_points = bars.share.as_ref().map(|(_, _, shares)| {
        shares
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.map(|s| {
                    format!(
                        "{},{}",
                        n(LEFT + (i as f64 + 0.5) * slot),
                        n(TOP + plot_h - s * plot_h)
                    )
                })
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    html! {
        svg class="chart" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(bars.title) {
            g class="grid" {
                @for v in &tick_values {
                    line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(y(*v))) y2=(n(y(*v))) {}
                    text x=(n(LEFT - 6.0)) y=(n(y(*v) + 4.0)) text-anchor="end" {
                        (tick_label(*v)) (bars.unit)
                    }
                }
            }
            g shape-rendering="crispEdges" {
                @for (x, ry, h, color, tip) in &rects {
                    rect x=(n(*x)) y=(n(*ry)) width=(n((slot - gap).max(0.5))) height=(n(*h)) fill=(color) {
                        title { (tip) }
                    }
                }
            }
            @if let (Some((name, color, _)), Some(points)) = (&bars.share, &share_points) {
                g class="share" {
                    @for pct in [0.0, 0.5, 1.0] {
                        text x=(n(WIDTH - RIGHT + 6.0)) y=(n(TOP + plot_h - pct * plot_h + 4.0)) {
                            (format!("{:.0} %", pct * 100.0))
                        }
                    }
                    polyline points=(points) fill="none" stroke=(color) stroke-width="2" {
                        title { (name) }
                    }
                }
            }
            g class="axis" {
                line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(TOP + plot_h)) y2=(n(TOP + plot_h)) {}
                @for (i, label) in &bars.x_labels {
                    text x=(n(LEFT + (*i as f64 + 0.5) * slot)) y=(n(HEIGHT - 12.0)) text-anchor="middle" {
                        (label)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(0.0), (1.0, 1.0));
        assert_eq!(ticks(7.0), (2.0, 8.0));
        assert_eq!(ticks(47.3), (20.0, 60.0));
        assert_eq!(ticks(100.0), (25.0, 100.0));
    }

    #[test]
    fn every_non_zero_segment_is_a_bar_with_its_tooltip() {
        let sent = [3, 0, 5];
        let failed = [1, 0, 0];
        let svg = bars(&Bars {
            series: vec![
                Series {
                    name: "sent",
                    color: "#2a9d8f",
                    values: &sent,
                },
                Series {
                    name: "failed",
                    color: "#d62828",
                    values: &failed,
                },
            ],
            bin_names: vec!["a".into(), "b".into(), "c <x>".into()],
            x_labels: vec![(0, "a".into())],
            scale: 1.0,
            unit: "",
            share: Some(("share", "#000", vec![Some(0.25), None, Some(0.0)])),
            title: "t",
        })
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("<title>c &lt;x&gt;: sent 5</title>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
