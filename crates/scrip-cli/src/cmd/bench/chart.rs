//! Draws the growth curves as one PNG, a panel per curve, logarithmic axes.

use std::path::Path;

use plotters::prelude::*;

use super::curves::Curve;

/// Where the chart's text font may be; `SCRIP_CHART_FONT` comes first.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Draws `curves` side by side into the PNG file `path`.
pub fn draw(curves: &[Curve], path: &Path) -> Result<(), String> {
    register_font()?;
    let root = BitMapBackend::new(path, (600 * curves.len() as u32, 480)).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let colours = [BLUE, RED, GREEN];
    for (area, curve) in root.split_evenly((1, curves.len())).iter().zip(curves) {
        // Only the series that are rates share a panel; sizes per id stay in the table.
        let series: Vec<usize> = (0..curve.series.len())
            .filter(|&i| curve.series[i].ends_with("/s"))
            .collect();
        let values = || {
            curve
                .points
                .iter()
                .flat_map(|p| series.iter().map(|&i| p.values[i]))
        };
        let (low, high) = (
            values().fold(f64::MAX, f64::min).max(1.0) / 2.0,
            values().fold(1.0, f64::max) * 2.0,
        );
        let (first, last) = (
            curve.points.first().map_or(1, |p| p.x) as f64,
            curve.points.last().map_or(10, |p| p.x) as f64,
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption(curve.title), ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (first / 1.5..last * 1.5).log_scale(),
                (low..high).log_scale(),
            )
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .x_desc(curve.x)
            .x_labels(6)
            .y_desc("per second")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| failed(&e))?;
        for (&i, colour) in series.iter().zip(colours) {
            let line: Vec<(f64, f64)> = curve
                .points
                .iter()
                .map(|p| (p.x as f64, p.values[i]))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| failed(&e))?
                .label(curve.series[i])
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| failed(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| failed(&e))?;
    }
    root.present().map_err(|e| failed(&e))
}

/// A panel's caption: the curve's title up to "against", which the x axis says.
fn caption(title: &str) -> &str {
    title.split(" against ").next().unwrap_or(title)
}

/// Plotters draws text with a font it is given: DejaVu Sans, where the system has it.
fn register_font() -> Result<(), String> {
    let path = std::env::var("SCRIP_CHART_FONT")
        .ok()
        .into_iter()
        .chain(FONTS.iter().map(|p| (*p).to_owned()))
        .find(|p| Path::new(p).is_file())
        .ok_or("no font to draw the chart's text: set SCRIP_CHART_FONT to a .ttf file")?;
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read the font {path}: {e}"))?;
    // Plotters keeps fonts for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| format!("{path} is not a font plotters can use"))
}
