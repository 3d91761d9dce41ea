//! Latency against offered rate as an SVG picture (plotters' SVG backend: text is left to the
//! viewer's fonts, so nothing here needs a font installed).

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

/// One offered rate's latency quantiles, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct RatePoint {
    /// Requests a second, offered.
    pub rate: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// Ticks at 1, 2 and 5 times each power of ten between `low` and `high`: plotters' own for a
/// log axis leave a narrow range (10 to 100 ms, say) with one label.
fn ticks(low: f64, high: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(low.log10().floor());
    while decade <= high {
        for step in [1.0, 2.0, 5.0] {
            let tick = decade * step;
            if (low..=high).contains(&tick) {
                ticks.push(tick);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// Which quantile of a [`RatePoint`] a line draws.
type Quantile = fn(&RatePoint) -> f64;

/// Draws p50, p99 and p999 against the offered rate (log latency axis) with the `limit_ms`
/// goal as a line across, into `path`.
pub fn latency_svg(
    path: &Path,
    title: &str,
    points: &[RatePoint],
    limit_ms: f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(!points.is_empty(), "no rate to plot");
    let plot_error = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("plot {}: {e}", path.display());
    let top = points
        .iter()
        .map(|p| p.p999)
        .fold(limit_ms, f64::max)
        .max(1.0);
    let bottom = points.iter().map(|p| p.p50).fold(limit_ms, f64::min);
    let x_max = points.iter().map(|p| p.rate).fold(0.0, f64::max) * 1.05;
    let (low, high) = ((bottom / 2.0).max(0.1), top * 2.0);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            0f64..x_max,
            (low..high).log_scale().with_key_points(ticks(low, high)),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("offered requests/s")
        .y_desc("POST → visible, ms (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y < 1.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.0}")
            }
        })
        .draw()
        .map_err(plot_error)?;
    let series: [(&str, RGBColor, Quantile); 3] = [
        ("p50", BLUE, |p| p.p50),
        ("p99", RGBColor(230, 120, 0), |p| p.p99),
        ("p999", RED, |p| p.p999),
    ];
    for (name, color, value) in series {
        let line: Vec<(f64, f64)> = points.iter().map(|p| (p.rate, value(p))).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                line.into_iter()
                    .map(|xy| Circle::new(xy, 3, color.filled())),
            )
            .map_err(plot_error)?;
    }
    let goal = format!("goal: p99 < {limit_ms} ms");
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, limit_ms), (x_max, limit_ms)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label(goal)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_three_lines_and_the_goal() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("latency.svg");
        let point = |rate, p50| RatePoint {
            rate,
            p50,
            p99: p50 * 2.0,
            p999: p50 * 3.0,
        };
        let points = [point(100.0, 10.0), point(200.0, 12.0), point(400.0, 40.0)];
        latency_svg(&path, "test", &points, 50.0).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for label in ["p50", "p99", "p999", "goal: p99 &lt; 50 ms"] {
            assert!(svg.contains(label), "no {label} in the plot");
        }
        assert!(svg.matches("<polyline").count() >= 3, "three lines");
    }

    #[test]
    fn a_narrow_log_axis_still_gets_several_ticks() {
        assert_eq!(ticks(15.0, 190.0), vec![20.0, 50.0, 100.0]);
        assert_eq!(ticks(0.5, 3.0), vec![0.5, 1.0, 2.0]);
    }
}
