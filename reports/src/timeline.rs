//! The timeline figure of a `harness run` with faults: connections started,
//! replied and failed per 100-ms bin (by connection start) against time,
//! with a vertical marker at each fault and, where known, at the
//! membership change it caused and at the start of the first bin from which
//! on every new connection succeeded. A closed loop's connections all start
//! at 0 ms, so its figure shows replies received and errors per bin by when
//! they happened instead.
//!
//! [`timeline_figure`] is the pure part (checks the input, orders the
//! markers); [`draw_timeline`] puts it on any plotters backend; [`write`]
//! writes `timeline.svg` and `timeline.png` atomically into a directory.
//! The caller (the harness, which owns the run's record) turns its faults
//! and their outcomes into [`Marker`]s, so this crate needs no harness type.

use std::path::{Path, PathBuf};

use loadgen::result::{TimelineBin, TIMELINE_BIN_MS};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::figures::{draw_error, png_with, svg_with, titled_body, FigureError};

/// File stem of the figure (`timeline.svg`, `timeline.png`).
pub const STEM: &str = "timeline";

/// What a vertical marker stands for (its colour and line style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    /// A fault injected (`kill lb2`).
    Fault,
    /// Every other balancer's membership had changed.
    Membership,
    /// From here on every new connection succeeded.
    CleanFrom,
}

/// A vertical line at `at_ms` (from the start of the load) with a label.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Where, ms from the start of the load.
    pub at_ms: u64,
    /// What it stands for.
    pub kind: MarkerKind,
    /// The text drawn beside it.
    pub label: String,
}

/// Everything needed to draw the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineFigure {
    /// First title line.
    pub title: String,
    /// Second title line: what was run.
    pub subtitle: String,
    /// The bins, in time order.
    pub bins: Vec<TimelineBin>,
    /// Markers in time order.
    pub markers: Vec<Marker>,
    /// End of the x axis, ms (the load's duration; at least the last bin).
    pub end_ms: u64,
    /// Closed loop: plot replies and errors by event time, not connections by start.
    pub closed_loop: bool,
}

/// What the load was, for [`timeline_figure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Planned length of the load, ms (`None`: a number of connections).
    pub duration_ms: Option<u64>,
    /// Closed loop (`--concurrency`).
    pub closed_loop: bool,
}

/// Why the timeline figure cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The result has no timeline (a loadgen older than the timeline, or no connection).
    #[error("{what} has no timeline (no 100-ms bins of connections): nothing to draw; results of loadgen versions before the timeline cannot be drawn")]
    NoTimeline {
        /// The result it came from.
        what: String,
    },
    /// Drawing or encoding failed.
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The figure's data: `bins` must hold at least one bin with a connection
/// (`what` names the result in the error); markers are sorted by time.
pub fn timeline_figure(
    what: &str,
    title: String,
    subtitle: String,
    bins: &[TimelineBin],
    mut markers: Vec<Marker>,
    load: Load,
) -> Result<TimelineFigure, TimelineError> {
    if bins.iter().all(|b| b.started == 0) {
        return Err(TimelineError::NoTimeline {
            what: what.to_string(),
        });
    }
    markers.sort_by_key(|m| m.at_ms);
    let last_bin = bins.iter().map(|b| b.t_ms + TIMELINE_BIN_MS).max();
    let last_marker = markers.iter().map(|m| m.at_ms + TIMELINE_BIN_MS).max();
    let end_ms = [last_bin, last_marker, load.duration_ms]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(TIMELINE_BIN_MS);
    Ok(TimelineFigure {
        title,
        subtitle,
        bins: bins.to_vec(),
        markers,
        end_ms,
        closed_loop: load.closed_loop,
    })
}

/// What is plotted: (legend, colour, value of a bin).
type Line = (&'static str, RGBColor, fn(&TimelineBin) -> u64);

/// The lines of the figure and the y axis label.
fn lines(f: &TimelineFigure) -> (Vec<Line>, String) {
    if f.closed_loop {
        (
            vec![
                ("replies received", RGBColor(31, 119, 180), |b| b.replies_at),
                ("errors occurred", RGBColor(214, 39, 40), |b| b.errors_at),
            ],
            format!("Replies and errors per {TIMELINE_BIN_MS} ms, by when they happened"),
        )
    } else {
        (
            vec![
                ("connections started", RGBColor(127, 127, 127), |b| {
                    b.started
                }),
                ("replied", RGBColor(31, 119, 180), |b| b.replied),
                ("errors", RGBColor(214, 39, 40), |b| b.errors),
            ],
            format!("Connections per {TIMELINE_BIN_MS} ms, by their start"),
        )
    }
}

/// x (seconds) and y ranges: the whole load, the largest value plus room for the labels.
fn ranges(f: &TimelineFigure) -> (f64, f64) {
    let (lines, _) = lines(f);
    let y = f
        .bins
        .iter()
        .flat_map(|b| lines.iter().map(move |l| (l.2)(b)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    (f.end_ms as f64 / 1000.0, y * 1.45)
}

fn style_of(kind: MarkerKind) -> (RGBColor, &'static str) {
    match kind {
        MarkerKind::Fault => (RGBColor(0, 0, 0), "fault"),
        MarkerKind::Membership => (RGBColor(148, 103, 189), "membership changed"),
        MarkerKind::CleanFrom => (RGBColor(44, 160, 44), "all new connections succeed"),
    }
}

/// Draw `f` on `root` (any plotters backend).
pub fn draw_timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: &TimelineFigure,
) -> Result<(), FigureError> {
    let err = draw_error(&f.title);
    let body = titled_body(root, &f.title, &f.subtitle)?;
    let (x_max, y_max) = ranges(f);
    let (lines, y_desc) = lines(f);
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("Time from the start of the load (s)")
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    // Each bin is drawn at its middle.
    let mid = |b: &TimelineBin| (b.t_ms as f64 + TIMELINE_BIN_MS as f64 / 2.0) / 1000.0;
    for (k, (name, color, get)) in lines.iter().copied().enumerate() {
        let pts = f.bins.iter().map(|b| (mid(b), get(b) as f64));
        // The first line is drawn wide, so it shows around a line that covers it.
        let width = if k == 0 && lines.len() > 2 { 5 } else { 2 };
        chart
            .draw_series(LineSeries::new(pts, color.mix(0.6).stroke_width(width)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    // Failed bins get a dot, so a single error is visible on a large scale.
    let errors: fn(&TimelineBin) -> u64 = lines.last().map_or(|b| b.errors, |l| l.2);
    let failed = f.bins.iter().filter(|b| errors(b) > 0);
    chart
        .draw_series(failed.map(|b| Circle::new((mid(b), errors(b) as f64), 3, RED.filled())))
        .map_err(|e| err(&e))?;
    for (i, m) in f.markers.iter().enumerate() {
        let (color, _) = style_of(m.kind);
        let x = m.at_ms as f64 / 1000.0;
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, y_max)],
                color.stroke_width(if m.kind == MarkerKind::Fault { 2 } else { 1 }),
            ))
            .map_err(|e| err(&e))?;
        // Labels stacked downwards from the top, left of the line past 60 % of the width.
        let right = x > x_max * 0.6;
        let anchor = Pos::new(if right { HPos::Right } else { HPos::Left }, VPos::Top);
        let style = TextStyle::from(("sans-serif", 14))
            .color(&color)
            .pos(anchor);
        let y = y_max * (0.985 - 0.055 * (i % 6) as f64);
        let dx = if right { -0.004 } else { 0.004 } * x_max;
        chart
            .draw_series(std::iter::once(Text::new(
                m.label.clone(),
                (x + dx, y),
                style,
            )))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// The figure as an SVG document.
pub fn svg(f: &TimelineFigure) -> Result<String, FigureError> {
    svg_with(|root| draw_timeline(root, f))
}

/// The figure as PNG bytes.
pub fn png(f: &TimelineFigure) -> Result<Vec<u8>, FigureError> {
    png_with(&f.title, |root| draw_timeline(root, f))
}

/// Writes `dir/timeline.svg` and `dir/timeline.png`, each atomically; returns their paths.
pub fn write(f: &TimelineFigure, dir: &Path) -> Result<Vec<PathBuf>, TimelineError> {
    let files = [
        (format!("{STEM}.svg"), svg(f)?.into_bytes()),
        (format!("{STEM}.png"), png(f)?),
    ];
    crate::render::write_files(dir, files)
        .map_err(|(path, source)| TimelineError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> Vec<TimelineBin> {
        (0..30)
            .map(|i| {
                let errors = u64::from((12..15).contains(&i));
                TimelineBin {
                    t_ms: i * 100,
                    started: 40,
                    replied: 40 - errors,
                    errors,
                    replies_at: 39,
                    errors_at: errors,
                }
            })
            .collect()
    }

    fn markers() -> Vec<Marker> {
        vec![
            Marker {
                at_ms: 1500,
                kind: MarkerKind::CleanFrom,
                label: "all new connections succeed from 1500 ms".into(),
            },
            Marker {
                at_ms: 1200,
                kind: MarkerKind::Fault,
                label: "kill lb2".into(),
            },
        ]
    }

    #[test]
    fn figure_has_the_fault_marker() {
        let open = Load {
            duration_ms: Some(4000),
            closed_loop: false,
        };
        let f = timeline_figure("run", "t".into(), "s".into(), &bins(), markers(), open).unwrap();
        assert_eq!(f.markers[0].label, "kill lb2", "markers sorted by time");
        assert_eq!(ranges(&f), (4.0, 40.0 * 1.45));
        let svg = svg(&f).unwrap();
        assert!(svg.contains("kill lb2"), "no fault label in the SVG");
        assert!(svg.contains("all new connections succeed from 1500 ms"));
        assert!(svg.contains("connections started") && svg.contains("replied"));
        let closed = Load {
            duration_ms: None,
            closed_loop: true,
        };
        let c = timeline_figure("run", "t".into(), "s".into(), &bins(), markers(), closed).unwrap();
        assert_eq!(ranges(&c), (3.0, 39.0 * 1.45));
        let csvg = super::svg(&c).unwrap();
        assert!(csvg.contains("replies received") && csvg.contains("kill lb2"));
        let png = png(&f).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let d = tempfile::tempdir().unwrap();
        let paths = write(&f, d.path()).unwrap();
        assert_eq!(paths.len(), 2);
        let on_disk = std::fs::read_to_string(d.path().join("timeline.svg")).unwrap();
        assert_eq!(on_disk, svg);
    }

    #[test]
    fn no_timeline_is_a_clear_error() {
        for empty in [vec![], vec![TimelineBin::default()]] {
            let e = timeline_figure(
                "results/run-x/result.json",
                "t".into(),
                "s".into(),
                &empty,
                markers(),
                Load {
                    duration_ms: Some(1000),
                    closed_loop: false,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("results/run-x/result.json has no timeline"),
                "{e}"
            );
        }
    }
}
