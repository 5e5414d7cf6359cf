//! Loss-curve plot (SVG, no dependencies): our train and eval losses beside the reference's.
//!
//! The reference numbers ship with the project in `trainer/data/reference_pretrain.tsv`
//! (TutorialLLM's Colab log at K = 100 and the seed README's logged steps at K = 50; sources in
//! the file's header), compiled into the binary.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::io::fsx;
use crate::run::metrics::MetricRow;

/// The reference curve file, compiled in.
pub const REFERENCE_TSV: &str = include_str!("../../data/reference_pretrain.tsv");

/// One logged point of a reference run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefPoint {
    pub step: u64,
    pub train_loss: f64,
    pub eval_loss: f64,
}

/// The reference points of one run (`"colab"` or `"seed"`), in file order.
pub fn reference_points(run: &str) -> Vec<RefPoint> {
    REFERENCE_TSV
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 4 || f[0] != run {
                return None;
            }
            Some(RefPoint {
                step: f[1].parse().ok()?,
                train_loss: f[2].parse().ok()?,
                eval_loss: f[3].parse().ok()?,
            })
        })
        .collect()
}

struct Series {
    label: &'static str,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// The SVG attribute of a dashed line (empty for a solid one).
    fn dash_attr(&self) -> &'static str {
        if self.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        }
    }
}

/// `(step, loss)` points to plot.
fn curve(points: impl Iterator<Item = (u64, f64)>) -> Vec<(f64, f64)> {
    points.map(|(step, y)| (step as f64, y)).collect()
}

/// Train-loss points: step 0 has none (0 by convention), so it is left out.
fn train_curve(points: impl Iterator<Item = (u64, f64)>) -> Vec<(f64, f64)> {
    curve(points.filter(|&(step, _)| step > 0))
}

/// Render the SVG. The x range covers our steps (at least 100) and the reference points up to
/// it; step-0 train losses (0 by convention) are left out.
pub fn render_svg(rows: &[MetricRow], title: &str) -> String {
    let max_ours = rows.iter().map(|r| r.step).max().unwrap_or(0);
    let x_max = (max_ours.max(100)) as f64;
    let refs = |run: &str| -> Vec<RefPoint> {
        reference_points(run)
            .into_iter()
            .filter(|p| p.step as f64 <= x_max)
            .collect()
    };
    let colab = refs("colab");
    let seed = refs("seed");
    // Ours solid, the reference's dashed.
    let ours = |label, color, points| Series {
        label,
        color,
        dashed: false,
        points,
    };
    let reference = |label, color, points| Series {
        label,
        color,
        dashed: true,
        points,
    };
    let series = vec![
        ours(
            "ours: eval (deterministic, whole eval split)",
            "#d62728",
            curve(rows.iter().map(|r| (r.step, r.eval_loss))),
        ),
        ours(
            "ours: eval (reference estimator, random batches)",
            "#ff9896",
            curve(rows.iter().map(|r| (r.step, r.eval_loss_reference))),
        ),
        ours(
            "ours: train (mean since previous eval)",
            "#1f77b4",
            train_curve(rows.iter().map(|r| (r.step, r.train_loss))),
        ),
        reference(
            "TutorialLLM Colab (K=100): eval",
            "#555555",
            curve(colab.iter().map(|p| (p.step, p.eval_loss))),
        ),
        reference(
            "TutorialLLM Colab (K=100): train",
            "#aaaaaa",
            train_curve(colab.iter().map(|p| (p.step, p.train_loss))),
        ),
        reference(
            "TutorialLLM seed README (K=50): eval",
            "#2ca02c",
            curve(seed.iter().map(|p| (p.step, p.eval_loss))),
        ),
    ];

    // y range over everything finite, padded a little.
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (mut y_lo, mut y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !y_lo.is_finite() || !y_hi.is_finite() {
        (y_lo, y_hi) = (0.0, 10.0);
    }
    y_lo = (y_lo - 0.1).floor().max(0.0);
    y_hi = (y_hi + 0.1).ceil();
    if y_hi <= y_lo {
        y_hi = y_lo + 1.0;
    }

    let (w, h) = (900.0, 560.0);
    let (ml, mr, mt, mb) = (60.0, 20.0, 40.0, 150.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let sx = |x: f64| ml + pw * x / x_max;
    let sy = |y: f64| mt + ph * (1.0 - (y - y_lo) / (y_hi - y_lo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        xml_escape(title)
    );
    // Grid and ticks.
    let y_step = nice_step(y_hi - y_lo, 8);
    let mut y = (y_lo / y_step).ceil() * y_step;
    while y <= y_hi + 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            "<line x1=\"{ml}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{y:.1}</text>",
            ml + pw,
            ml - 6.0,
            py + 4.0
        );
        y += y_step;
    }
    let x_step = nice_step(x_max, 10);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{mt}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x}</text>",
            mt + ph,
            mt + ph + 16.0
        );
        x += x_step;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step (optimizer updates)</text>"#,
        ml + pw / 2.0,
        mt + ph + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">cross-entropy loss (nats)</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    // Curves.
    for se in &series {
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.clamp(y_lo, y_hi))))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let dash = se.dash_attr();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
            se.color,
            pts.join(" ")
        );
        if pts.len() <= 40 {
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{cx}" cy="{cy}" r="2.2" fill="{}"/>"#,
                    se.color
                );
            }
        }
    }
    // Legend below the plot.
    for (i, se) in series.iter().enumerate() {
        let lx = ml + if i % 2 == 0 { 0.0 } else { pw / 2.0 };
        let ly = mt + ph + 60.0 + 20.0 * (i / 2) as f64;
        let dash = se.dash_attr();
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            se.color,
            lx + 34.0,
            ly + 4.0,
            xml_escape(se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Write the SVG next to the metrics (atomically, so a viewer never sees half a file).
pub fn write_svg(path: &Path, rows: &[MetricRow], title: &str) -> anyhow::Result<()> {
    let svg = render_svg(rows, title);
    fsx::write_atomic(path, svg.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `target` ticks over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = (span / target as f64).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table_is_complete() {
        let colab = reference_points("colab");
        assert_eq!(colab.len(), 200);
        assert_eq!(colab[0].eval_loss, 9.2029);
        assert_eq!(colab[199].step, 19_900);
        assert_eq!(colab[199].eval_loss, 4.5562);
        let seed = reference_points("seed");
        assert_eq!(seed.len(), 8);
        assert!(seed
            .iter()
            .any(|p| p.step == 10_000 && p.eval_loss == 4.6798));
    }

    #[test]
    fn svg_has_our_curve_and_the_reference() {
        let rows: Vec<MetricRow> = (0..5)
            .map(|i| MetricRow {
                step: i * 100,
                train_loss: 6.0 - i as f64 * 0.1,
                eval_loss: 6.1 - i as f64 * 0.1,
                eval_loss_reference: 6.2 - i as f64 * 0.1,
                lr: 1e-3,
                grad_norm: Some(1.0),
                train_time_s: 0.0,
                tokens: 0,
                sample: String::new(),
            })
            .collect();
        let svg = render_svg(&rows, "test <run>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("TutorialLLM Colab"));
        assert!(svg.contains("test &lt;run&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 6);
    }
}
