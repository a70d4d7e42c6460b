//! Small bar charts as inline SVG, drawn on the server: no script, no
//! library, nothing for the CSP to allow. Colours come from classes in the
//! console stylesheet; every chart has a text summary for screen readers,
//! and the pages print the numbers beside it.

use maud::{html, Markup};

/// One series of bars, drawn side by side with the others at each x.
pub struct Series<'a> {
    pub name: &'a str,
    /// A class of the stylesheet (`s1`, `s2`): the bar colour.
    pub class: &'a str,
    pub values: Vec<f64>,
}

const W: f64 = 640.0;
const H: f64 = 180.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// A grouped bar chart: one group per x label, one bar per series.
/// `unit` follows the axis numbers (e.g. " rows", " ms").
pub fn bars(summary: &str, labels: &[String], series: &[Series<'_>], unit: &str) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let n = labels.len().max(1) as f64;
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - TOP;
    let group = plot_w / n;
    let bar = (group * 0.8 / series.len().max(1) as f64).min(28.0);
    let y = |v: f64| TOP + plot_h - if top > 0.0 { v / top * plot_h } else { 0.0 };
    // At most ~8 x labels, evenly spread, always the last.
    let every = (labels.len() / 8).max(1);
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(summary) preserveAspectRatio="xMinYMin meet" {
            title { (summary) }
            @for frac in [0.0, 0.5, 1.0] {
                line.grid x1=(LEFT) x2=(W - 8.0) y1=(y(top * frac)) y2=(y(top * frac)) {}
                text.axis x=(LEFT - 6.0) y=(y(top * frac) + 4.0) text-anchor="end" { (compact(top * frac)) (unit) }
            }
            @for (i, label) in labels.iter().enumerate() {
                @let x0 = LEFT + group * i as f64 + (group - bar * series.len() as f64) / 2.0;
                @for (j, s) in series.iter().enumerate() {
                    @let v = s.values.get(i).copied().unwrap_or(0.0);
                    rect class=(s.class) x=(x0 + bar * j as f64) y=(y(v)) width=(bar.max(1.0) - 1.0) height=((y(0.0) - y(v)).max(0.0)) {
                        title { (label) ": " (compact(v)) (unit) " " (s.name) }
                    }
                }
                @if i % every == 0 || i + 1 == labels.len() {
                    text.axis x=(LEFT + group * (i as f64 + 0.5)) y=(H - 8.0) text-anchor="middle" { (label) }
                }
            }
        }
        p.legend {
            @for s in series {
                span.key { span class={ "swatch " (s.class) } {} (s.name) }
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at or above `v`: round axis tops.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// 1234 → "1.2k", 1_500_000 → "1.5M".
pub fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The `p`-th percentile (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(44.0), 50.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
        assert_eq!(compact(1234.0), "1.2k");
        assert_eq!(compact(44.0), "44");
    }

    #[test]
    fn a_chart_has_one_bar_per_value_and_a_summary() {
        let labels = vec!["11-22".to_string(), "11-23".to_string()];
        let svg = bars(
            "rows per file",
            &labels,
            &[
                Series {
                    name: "rows",
                    class: "s1",
                    values: vec![48.0, 50.0],
                },
                Series {
                    name: "deltas",
                    class: "s2",
                    values: vec![44.0, 3.0],
                },
            ],
            "",
        )
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("aria-label=\"rows per file\""));
        assert!(!svg.contains("style="), "no inline styles: the CSP forbids them");
    }
}
