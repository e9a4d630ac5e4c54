//! Figures 4-7 of the paper as SVG and PNG (plotters).
//!
//! Fig. 4 and 5: reply rate against offered request rate with 1 and 2 balancers (bi-active NAT
//! and DR against plain NAT); Fig. 6 and 7: the error rate (errors / connections attempted, %)
//! likewise. Each configuration is a line through the medians over repetitions, with markers,
//! and a shaded min-max band. Configurations missing from the run are left out; a figure with no
//! data at all says so on the figure.
//!
//! Text: plotters' `ttf` feature would look up system fonts (absent on a bare machine), so the
//! crate uses its `ab_glyph` feature with DejaVu Sans compiled into the binary (the `dejavu`
//! crate), registered once as "sans-serif" before anything is drawn; the PNGs' glyphs are placed
//! by [`crate::glyphs`] (plotters 0.3.7 drops their side bearings). The SVGs carry `<text>`
//! elements (font-family sans-serif); the font only sizes their layout.
//!
//! [`figure_data`] is the pure part (which series, which numbers, which labels);
//! [`draw`] puts a [`FigureData`] on any plotters backend; [`svg`] and [`png`] return bytes.

use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

use crate::glyphs::GlyphFix;
use crate::stats::{of_config, RateStats};

/// Width of every figure, pixels.
pub const WIDTH: u32 = 1000;
/// Height of every figure, pixels.
pub const HEIGHT: u32 = 640;

/// What a figure plots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// Reply rate, replies/s.
    ReplyRate,
    /// Error rate, errors / connections attempted, %.
    ErrorRate,
}

/// One of the paper's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FigureSpec {
    /// File stem: "fig4" ... "fig7".
    pub id: &'static str,
    /// The paper's figure number.
    pub number: u32,
    /// Balancers in the configurations shown.
    pub lbs: u32,
    /// Plotted quantity.
    pub quantity: Quantity,
    /// Configurations, bi-active NAT, bi-active DR, plain NAT.
    pub configs: [&'static str; 3],
}

/// The paper's Figures 4-7.
pub const FIGURES: [FigureSpec; 4] = [
    FigureSpec {
        id: "fig4",
        number: 4,
        lbs: 1,
        quantity: Quantity::ReplyRate,
        configs: ["1lb-bi-nat", "1lb-bi-dr", "1lb-nat"],
    },
    FigureSpec {
        id: "fig5",
        number: 5,
        lbs: 2,
        quantity: Quantity::ReplyRate,
        configs: ["2lb-bi-nat", "2lb-bi-dr", "2lb-nat"],
    },
    FigureSpec {
        id: "fig6",
        number: 6,
        lbs: 1,
        quantity: Quantity::ErrorRate,
        configs: ["1lb-bi-nat", "1lb-bi-dr", "1lb-nat"],
    },
    FigureSpec {
        id: "fig7",
        number: 7,
        lbs: 2,
        quantity: Quantity::ErrorRate,
        configs: ["2lb-bi-nat", "2lb-bi-dr", "2lb-nat"],
    },
];

/// One line of a figure: (offered rate, median, min, max) per rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Configuration name (the legend entry).
    pub config: String,
    /// Index into the figure's palette (position in [`FigureSpec::configs`]).
    pub style: usize,
    /// Points in increasing rate order.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Everything needed to draw one figure.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureData {
    /// First title line: the figure and what it shows.
    pub title: String,
    /// Second title line: what was run.
    pub subtitle: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Series with at least one point.
    pub series: Vec<Series>,
    /// Message drawn instead of a chart when there is no series.
    pub empty_note: String,
}

/// What the run was, for the subtitle: "profile paper · generator loadgen · 3 repetitions ...".
pub fn run_description(profile: &str, generator: &str, repeat: u32, duration_s: f64) -> String {
    let reps = if repeat == 1 {
        "1 repetition".to_string()
    } else {
        format!("{repeat} repetitions")
    };
    format!("profile {profile} · generator {generator} · {reps} of {duration_s} s per point")
}

/// The data of figure `spec` from the run's statistics.
pub fn figure_data(spec: &FigureSpec, stats: &[RateStats], run: &str) -> FigureData {
    let (what, y_label) = match spec.quantity {
        Quantity::ReplyRate => ("Reply rate", "Reply rate (replies/s)"),
        Quantity::ErrorRate => (
            "Error rate",
            "Error rate: errors / connections attempted (%)",
        ),
    };
    let lbs = if spec.lbs == 1 {
        "1 load balancer".to_string()
    } else {
        format!("{} load balancers", spec.lbs)
    };
    let series = spec
        .configs
        .iter()
        .enumerate()
        .filter_map(|(style, config)| {
            let points: Vec<(f64, f64, f64, f64)> = of_config(stats, config)
                .into_iter()
                .map(|s| {
                    let v = match spec.quantity {
                        Quantity::ReplyRate => s.reply_rate,
                        Quantity::ErrorRate => s.error_rate_pct,
                    };
                    (s.offered_rate, v.median, v.min, v.max)
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                config: config.to_string(),
                style,
                points,
            })
        })
        .collect();
    FigureData {
        title: format!(
            "Fig. {}: {what} vs request rate, {lbs} (bi-active NAT/DR vs NAT)",
            spec.number
        ),
        subtitle: format!("{run} · lines: median · bands: min-max"),
        x_label: "Offered request rate (req/s)".to_string(),
        y_label: y_label.to_string(),
        series,
        empty_note: format!("No data for {} in this run", spec.configs.join(", ")),
    }
}

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// The embedded font could not be registered.
    #[error("cannot load the embedded DejaVu Sans font")]
    Font,
    /// plotters failed.
    #[error("cannot draw {figure}: {message}")]
    Draw {
        /// The figure's title.
        figure: String,
        /// plotters' message.
        message: String,
    },
    /// PNG encoding failed.
    #[error("cannot encode {figure} as PNG: {message}")]
    Png {
        /// The figure's title.
        figure: String,
        /// The encoder's message.
        message: String,
    },
}

/// Register DejaVu Sans as plotters' "sans-serif" (once per process).
fn ensure_font() -> Result<(), FigureError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if *ok {
        Ok(())
    } else {
        Err(FigureError::Font)
    }
}

/// Colours of the three configurations: bi-active NAT, bi-active DR, plain NAT.
const PALETTE: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// The axis ranges: from 0 to a little above the largest rate and value.
fn ranges(data: &FigureData) -> (f64, f64) {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for s in &data.series {
        for (r, med, _, max) in &s.points {
            x = x.max(*r);
            y = y.max(max.max(*med));
        }
    }
    let pad = |v: f64| if v > 0.0 { v * 1.08 } else { 1.0 };
    (pad(x), pad(y))
}

/// A y tick label: whole numbers on a large scale, one or two decimals on a small one.
fn tick(v: f64, y_max: f64) -> String {
    match y_max {
        m if m >= 50.0 => format!("{v:.0}"),
        m if m >= 5.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// Maps a plotters error to [`FigureError::Draw`] of the figure titled `title`.
pub(crate) fn draw_error(title: &str) -> impl Fn(&dyn std::fmt::Display) -> FigureError + '_ {
    move |e| FigureError::Draw {
        figure: title.to_string(),
        message: e.to_string(),
    }
}

/// Every figure's frame: a white background, the bold title and the
/// subtitle; returns the area left for the chart.
pub(crate) fn titled_body<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, FigureError> {
    let err = draw_error(title);
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let body = root
        .titled(title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
        .map_err(|e| err(&e))?;
    body.titled(subtitle, ("sans-serif", 15))
        .map_err(|e| err(&e))
}

/// Draw `data` on `root` (any plotters backend).
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &FigureData,
) -> Result<(), FigureError> {
    let err = draw_error(&data.title);
    let body = titled_body(root, &data.title, &data.subtitle)?;
    if data.series.is_empty() {
        let (w, h) = body.dim_in_pixel();
        let style = TextStyle::from(("sans-serif", 20)).pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Center,
        ));
        body.draw_text(&data.empty_note, &style, (w as i32 / 2, h as i32 / 2))
            .map_err(|e| err(&e))?;
        return root.present().map_err(|e| err(&e));
    }
    let (x_max, y_max) = ranges(data);
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(&data.x_label)
        .y_desc(&data.y_label)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| tick(*v, y_max))
        .draw()
        .map_err(|e| err(&e))?;
    for s in &data.series {
        draw_series(&mut chart, s).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One configuration: band, line, markers, legend entry.
fn draw_series<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    s: &Series,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let color = PALETTE[s.style % PALETTE.len()];
    let band: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|p| (p.0, p.3))
        .chain(s.points.iter().rev().map(|p| (p.0, p.2)))
        .collect();
    chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18))))?;
    let line = s.points.iter().map(|p| (p.0, p.1));
    chart
        .draw_series(LineSeries::new(line, color.stroke_width(2)))?
        .label(s.config.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
    let style = color.filled();
    let marks = s.points.iter().map(|p| (p.0, p.1));
    match s.style {
        0 => chart.draw_series(marks.map(|c| Circle::new(c, 4, style)))?,
        1 => chart.draw_series(marks.map(|c| TriangleMarker::new(c, 6, style)))?,
        _ => chart.draw_series(marks.map(|c| Cross::new(c, 5, color.stroke_width(2))))?,
    };
    Ok(())
}

/// The figure as an SVG document.
pub fn svg(data: &FigureData) -> Result<String, FigureError> {
    svg_with(|root| draw(root, data))
}

/// The figure as a PNG file's bytes.
pub fn png(data: &FigureData) -> Result<Vec<u8>, FigureError> {
    png_with(&data.title, |root| draw(root, data))
}

/// An SVG document of [`WIDTH`] x [`HEIGHT`] drawn by `paint` (every figure of the crate).
pub(crate) fn svg_with(
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), FigureError>,
) -> Result<String, FigureError> {
    ensure_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        paint(&root)?;
    }
    Ok(out)
}

/// A PNG file's bytes of [`WIDTH`] x [`HEIGHT`] drawn by `paint`; `title` names it in errors.
pub(crate) fn png_with(
    title: &str,
    paint: impl FnOnce(&DrawingArea<GlyphFix<BitMapBackend<'_>>, Shift>) -> Result<(), FigureError>,
) -> Result<Vec<u8>, FigureError> {
    ensure_font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let bitmap = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT));
        let root = GlyphFix::new(bitmap)
            .ok_or(FigureError::Font)?
            .into_drawing_area();
        paint(&root)?;
    }
    let perr = |e: png::EncodingError| FigureError::Png {
        figure: title.to_string(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Mostly flat colour: the best deflate level with adaptive filtering keeps each figure
        // small enough to commit a reference run.
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut w = enc.write_header().map_err(perr)?;
        w.write_image_data(&rgb).map_err(perr)?;
        w.finish().map_err(perr)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize;
    use crate::stats::tests::pt;

    #[test]
    fn data_has_the_configs_present_in_palette_order() {
        let points = vec![
            pt("1lb-nat", 100.0, 0, 90.0, 10, 100, None),
            pt("1lb-nat", 100.0, 1, 80.0, 20, 100, None),
            pt("1lb-bi-nat", 100.0, 0, 95.0, 0, 100, None),
            pt("2lb-nat", 100.0, 0, 99.0, 0, 100, None),
        ];
        let stats = summarize(&points);
        let d = figure_data(&FIGURES[0], &stats, "run");
        assert!(d.title.starts_with("Fig. 4: Reply rate"));
        let names: Vec<(&str, usize)> = d
            .series
            .iter()
            .map(|s| (s.config.as_str(), s.style))
            .collect();
        assert_eq!(names, vec![("1lb-bi-nat", 0), ("1lb-nat", 2)]);
        assert_eq!(d.series[1].points, vec![(100.0, 85.0, 80.0, 90.0)]);
        let e = figure_data(&FIGURES[2], &stats, "run");
        assert!(e.y_label.contains("errors / connections"));
        assert_eq!(e.series[1].points, vec![(100.0, 15.0, 10.0, 20.0)]);
        assert_eq!(ranges(&e), (108.0, 20.0 * 1.08));
    }

    #[test]
    fn empty_figure_says_so() {
        let d = figure_data(&FIGURES[1], &[], "run");
        assert!(d.series.is_empty());
        assert_eq!(ranges(&d), (1.0, 1.0));
        let svg = svg(&d).expect("svg");
        assert!(svg.contains("No data for 2lb-bi-nat, 2lb-bi-dr, 2lb-nat"));
        let png = png(&d).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
