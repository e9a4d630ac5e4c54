//! `reports`: the pure side of `harness reproduce`: what a result directory holds and what is
//! derived from it. `harness` uses it after every point; the `reports` binary re-renders a
//! directory and compares two of them for CI.
//!
//! Module map:
//! - [`model`]: the `results.json` schema (`harness-reproduce/1`), read and written atomically.
//! - [`stats`]: median/min/max over repetitions per (configuration, rate).
//! - [`gains`]: the paper's claims measured the same way (bi-active vs plain NAT).
//! - [`csv`]: `points.csv` and `summary.csv`.
//! - [`figures`]: Figures 4-7 as SVG and PNG (embedded font, no system font needed).
//! - [`glyphs`]: correct glyph placement for the PNG figures' text.
//! - [`report`]: the Markdown report, `REPORT.md`.
//! - [`render`]: writes all of the above into a result directory, atomically (I/O).
//! - [`compare`]: the noise-aware regression rule of `reports compare`.
//! - [`time`]: UTC dates and durations for the report.
//! - [`timeline`]: the timeline figure of a `harness run` with faults (SVG and PNG).

pub mod compare;
pub mod csv;
pub mod figures;
pub mod gains;
pub mod glyphs;
pub mod model;
pub mod render;
pub mod report;
pub mod stats;
pub mod time;
pub mod timeline;

pub use render::{render, render_into};
