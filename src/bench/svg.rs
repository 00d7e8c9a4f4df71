//! `--svg FILE`: the report drawn with plotters' SVG backend (no bitmap or
//! font-rendering backends: plotters writes text as SVG `<text>`).
//!
//! Panels, top to bottom: the launch-time distributions (every timed
//! launch as a dot, the mean as a bar, min to max as a whisker; fixed and
//! supermin side by side for each command), the parallel scaling (time
//! until all simultaneous launches are up, and launches per minute on a
//! second axis) when `--parallel` ran, and the boot stages of both
//! appliances as stacked bars when `--stages` ran. Writing the file is the
//! command's business; this returns the document.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{BenchReport, Comparison};
use super::stages::StageReport;

/// Width of the drawing, and height of each panel, in pixels.
const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 380;

/// Colours: fixed (blue) and supermin (orange), and the stage palette.
const FIXED: RGBColor = RGBColor(31, 119, 180);
const SUPERMIN: RGBColor = RGBColor(255, 127, 14);
const STAGE_COLOURS: [RGBColor; 8] = [
    RGBColor(158, 218, 229),
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(214, 39, 40),
    RGBColor(255, 152, 150),
    RGBColor(148, 103, 189),
];

/// The drawing could not be made.
#[derive(Debug, thiserror::Error)]
#[error("drawing the SVG: {0}")]
pub(crate) struct SvgError(String);

fn err<E: std::fmt::Display>(e: E) -> SvgError {
    SvgError(e.to_string())
}

/// The report as an SVG document.
///
/// Errors: [`SvgError`] if plotters fails (it does not for finite numbers).
pub(crate) fn render(report: &BenchReport) -> Result<String, SvgError> {
    let panels = 1 + usize::from(!report.parallel.is_empty()) + usize::from(report.stages.is_some());
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * panels as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((panels, 1));
        let mut areas = areas.iter();
        let mut comparisons: Vec<(&str, &Comparison)> = vec![("launch", &report.launch)];
        if let Some(i) = &report.inspect {
            comparisons.push(("inspect", i));
        }
        distributions(areas.next().expect("one panel per section"), &comparisons)?;
        if !report.parallel.is_empty() {
            parallel(areas.next().expect("one panel per section"), report)?;
        }
        if let Some(s) = &report.stages {
            stages(
                areas.next().expect("one panel per section"),
                &[("fixed", &s.fixed), ("supermin", &s.supermin)],
            )?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Launch times: dots, mean bars, min-max whiskers, per command and
/// appliance.
fn distributions(
    area: &DrawingArea<SVGBackend, Shift>,
    comparisons: &[(&str, &Comparison)],
) -> Result<(), SvgError> {
    let mut columns = Vec::new();
    for (name, c) in comparisons {
        columns.push((format!("{name}: fixed"), &c.fixed, FIXED));
        columns.push((format!("{name}: supermin"), &c.supermin, SUPERMIN));
    }
    let top = columns.iter().map(|c| c.1.max_s).fold(0.0f64, f64::max) * 1.15 + 0.5;
    let labels: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("Launch time per appliance (each dot one launch)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(columns.len() as f64 - 0.5), 0f64..top)
        .map_err(err)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(columns.len() * 2 + 1)
        .x_label_formatter(&label_of)
        .y_desc("seconds")
        .draw()
        .map_err(err)?;
    for (i, (_, summary, colour)) in columns.iter().enumerate() {
        let x = i as f64;
        let n = summary.samples_s.len();
        // Spread the dots a little so equal times stay visible.
        let dots = summary.samples_s.iter().enumerate().map(|(k, y)| {
            let offset = if n > 1 { (k as f64 / (n - 1) as f64 - 0.5) * 0.3 } else { 0.0 };
            Circle::new((x + offset, *y), 4, colour.mix(0.8).filled())
        });
        let series = chart.draw_series(dots).map_err(err)?;
        if i < 2 {
            let c = *colour;
            series
                .label(if i == 0 { "fixed" } else { "supermin" })
                .legend(move |(lx, ly)| Circle::new((lx + 8, ly), 4, c.filled()));
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, summary.min_s), (x, summary.max_s)],
                colour.stroke_width(1),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x - 0.25, summary.mean_s), (x + 0.25, summary.mean_s)],
                colour.stroke_width(3),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Parallel scaling: time to all ready, and launches per minute.
fn parallel(area: &DrawingArea<SVGBackend, Shift>, report: &BenchReport) -> Result<(), SvgError> {
    let batches = &report.parallel;
    let max_p = batches.iter().map(|b| b.launches).max().unwrap_or(1) as f64;
    let top_s = batches.iter().map(|b| b.all_exited_s.max(b.all_ready_s)).fold(0.0f64, f64::max) * 1.15 + 0.5;
    let top_rate = batches.iter().map(|b| b.launches_per_minute).fold(0.0f64, f64::max) * 1.15 + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption("Simultaneous launches of the fixed appliance", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0.5f64..(max_p + 0.5), 0f64..top_s)
        .map_err(err)?
        .set_secondary_coord(0.5f64..(max_p + 0.5), 0f64..top_rate);
    chart
        .configure_mesh()
        .x_desc("launches started together")
        .y_desc("seconds until all are up")
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() })
        .draw()
        .map_err(err)?;
    chart.configure_secondary_axes().y_desc("launches per minute").draw().map_err(err)?;
    let ready: Vec<(f64, f64)> = batches.iter().map(|b| (b.launches as f64, b.all_ready_s)).collect();
    let rate: Vec<(f64, f64)> = batches.iter().map(|b| (b.launches as f64, b.launches_per_minute)).collect();
    chart
        .draw_series(LineSeries::new(ready.clone(), FIXED.stroke_width(2)))
        .map_err(err)?
        .label("time until all are up (s)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], FIXED.stroke_width(2)));
    chart.draw_series(ready.iter().map(|p| Circle::new(*p, 4, FIXED.filled()))).map_err(err)?;
    chart
        .draw_secondary_series(LineSeries::new(rate.clone(), SUPERMIN.stroke_width(2)))
        .map_err(err)?
        .label("launches per minute")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], SUPERMIN.stroke_width(2)));
    chart.draw_secondary_series(rate.iter().map(|p| Circle::new(*p, 4, SUPERMIN.filled()))).map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Boot stages as one stacked horizontal bar per appliance.
fn stages(area: &DrawingArea<SVGBackend, Shift>, runs: &[(&str, &StageReport)]) -> Result<(), SvgError> {
    let right = runs.iter().filter_map(|(_, r)| r.total_s).fold(0.0f64, f64::max) * 1.05 + 0.5;
    let names: Vec<&str> = runs.iter().map(|r| r.0).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("Boot stages of one verbose launch (LIBGUESTFS_DEBUG=1)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..right, -0.5f64..(runs.len() as f64 + 1.5))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(runs.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).map(|s| s.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("seconds since launch")
        .draw()
        .map_err(err)?;
    let main: Vec<usize> =
        runs[0].1.stages.iter().enumerate().filter(|(_, s)| !s.detail).map(|(i, _)| i).collect();
    for (n, &stage) in main.iter().enumerate() {
        let colour = STAGE_COLOURS[n % STAGE_COLOURS.len()];
        let mut bars = Vec::new();
        for (row, (_, report)) in runs.iter().enumerate() {
            let s = &report.stages[stage];
            let start = report.events.iter().find(|e| e.event == s.from).and_then(|e| e.at_s);
            if let (Some(start), Some(len)) = (start, s.seconds) {
                let y = row as f64;
                bars.push(Rectangle::new([(start, y - 0.3), (start + len, y + 0.3)], colour.filled()));
            }
        }
        let label = runs[0].1.stages[stage].label;
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::sample;

    fn texts(doc: &roxmltree::Document) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(|t| t.trim().to_string())
            .collect()
    }

    #[test]
    fn svg_is_xml_with_every_series() {
        let report = sample();
        let svg = render(&report).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        assert_eq!(root.attribute("width"), Some("960"));
        assert_eq!(root.attribute("height"), Some("1140"));
        let texts = texts(&doc);
        for want in [
            "launch: fixed",
            "launch: supermin",
            "inspect: fixed",
            "inspect: supermin",
            "fixed",
            "supermin",
            "launches per minute",
            "time until all are up (s)",
            "libguestfs setup",
            "/init until udev settled",
        ] {
            assert!(texts.iter().any(|t| t == want || t.starts_with(want)), "no text {want:?} in {texts:?}");
        }
        // Every timed launch is a dot; plus the legend dots and the
        // parallel points.
        let circles = doc.descendants().filter(|n| n.has_tag_name("circle")).count();
        let samples: usize = [&report.launch, report.inspect.as_ref().unwrap()]
            .iter()
            .map(|c| c.fixed.samples_s.len() + c.supermin.samples_s.len())
            .sum();
        assert_eq!(circles, samples + 2 + 2 * report.parallel.len(), "{svg}");
        // The two parallel series are lines.
        assert!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count() >= 2);
        // Stage bars: one per main stage and appliance, plus legend boxes.
        let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert!(rects >= 2 * 8, "{rects} rects");
    }

    #[test]
    fn svg_without_parallel_or_stages_has_one_panel() {
        let mut report = sample();
        report.parallel.clear();
        report.stages = None;
        report.inspect = None;
        let svg = render(&report).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.root_element().attribute("height"), Some("380"));
        let texts = texts(&doc);
        assert!(texts.iter().any(|t| t == "launch: supermin"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.contains("launches per minute")));
    }
}
