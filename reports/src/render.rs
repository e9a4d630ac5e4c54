//! `reports render DIR`: (re)write every derived file of a result directory from its
//! `results.json`: `points.csv`, `summary.csv`, `fig4`..`fig7` `.svg` and `.png`, `REPORT.md`.
//! Each file is written atomically (temp file + rename), so a reader (or an interrupted run)
//! never sees half a file. The harness calls [`render_into`] after every completed point.

use std::path::{Path, PathBuf};

use crate::figures::{self, FigureError, FIGURES};
use crate::model::{ModelError, Reproduction};
use crate::{csv, report, stats};

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `results.json` could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A figure could not be drawn.
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// A file could not be written (the I/O error's text names the file).
    #[error("{source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Names of the files [`render_into`] writes, in the order written.
pub fn output_names() -> Vec<String> {
    let mut names = vec!["points.csv".to_string(), "summary.csv".to_string()];
    for f in FIGURES {
        names.push(format!("{}.svg", f.id));
        names.push(format!("{}.png", f.id));
    }
    names.push("REPORT.md".to_string());
    names
}

/// Read `DIR/results.json` and write every derived file into `DIR`; returns their paths.
pub fn render(dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let r = Reproduction::read(&dir.join(crate::model::RESULTS_FILE))?;
    render_into(&r, dir)
}

/// Write every derived file of `r` into `dir` (which must exist); returns their paths.
pub fn render_into(r: &Reproduction, dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let stats = stats::summarize(&r.points);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("points.csv".into(), csv::points_csv(&r.points).into_bytes()),
        ("summary.csv".into(), csv::summary_csv(&stats).into_bytes()),
    ];
    let run = figures::run_description(
        &r.spec.profile,
        &r.spec.generator,
        r.spec.repeat,
        r.spec.duration_s,
    );
    for spec in FIGURES {
        let data = figures::figure_data(&spec, &stats, &run);
        files.push((
            format!("{}.svg", spec.id),
            figures::svg(&data)?.into_bytes(),
        ));
        files.push((format!("{}.png", spec.id), figures::png(&data)?));
    }
    files.push((
        "REPORT.md".into(),
        report::report_md(r, &stats).into_bytes(),
    ));
    write_files(dir, files).map_err(|(path, source)| RenderError::Write { path, source })
}

/// Writes each (name, bytes) into `dir` atomically, in order; returns their
/// paths, or the first file that failed and why.
pub(crate) fn write_files(
    dir: &Path,
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    files
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            match loadgen::json_out::write_bytes_atomic(&bytes, &path) {
                Ok(()) => Ok(path),
                Err(e) => Err((path, e)),
            }
        })
        .collect()
}
