//! `reports`: the pure side of `harness reproduce` — what a result directory holds and what is
//! derived from it.
//!
//! Module map:
//! - [`model`]: the `results.json` schema (`harness-reproduce/1`), read and written atomically.

pub mod model;
