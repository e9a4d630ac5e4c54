//! Result files: [`write_atomic`] writes a [`RunResult`] as pretty JSON so that readers never
//! see a half-written file (temp file in the same directory, fsync, rename, fsync of the
//! directory); [`read`] loads one with errors that name the file and the line/column.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::result::{RunResult, RESULT_SCHEMA};

/// Why a result file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read result file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid JSON, or not a result of the expected shape.
    #[error("{path}:{line}:{column}: not a loadgen result: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 if unknown).
        line: usize,
        /// 1-based column of the problem (0 if unknown).
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The file is a result of another schema version.
    #[error("{path}: result schema {found:?} is not supported (expected {expected:?})")]
    Schema {
        /// The file.
        path: PathBuf,
        /// The schema the file declares.
        found: String,
        /// The schema this build reads.
        expected: &'static str,
    },
}

/// Serialise `r` to pretty JSON bytes (with a trailing newline).
pub fn to_json_bytes(r: &RunResult) -> io::Result<Vec<u8>> {
    let mut buf = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    buf.push(b'\n');
    Ok(buf)
}

/// Write `r` to `path` atomically: a uniquely named temp file in the same directory is written,
/// fsynced and renamed over `path`, then the directory is fsynced. On any error the temp file is
/// removed and `path` is untouched.
pub fn write_atomic(r: &RunResult, path: &Path) -> io::Result<()> {
    let bytes = to_json_bytes(r)?;
    write_bytes_atomic(&bytes, path)
}

/// The atomic write itself (any bytes).
pub fn write_bytes_atomic(bytes: &[u8], path: &Path) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("result path {} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(f);
        w.write_all(bytes)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable. Some filesystems refuse fsync on a directory: the data
        // is already safe then, so that error is not fatal.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot write result file {}: {e}", path.display()),
        )
    })
}

/// Parse a result from JSON text; `path` is used in error messages only.
pub fn from_json_str(text: &str, path: &Path) -> Result<RunResult, ReadError> {
    // Check the schema first so an old/new file gets a clear message rather than a field error.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(found) = v.get("schema").and_then(|s| s.as_str()) {
            if found != RESULT_SCHEMA {
                return Err(ReadError::Schema {
                    path: path.to_path_buf(),
                    found: found.to_string(),
                    expected: RESULT_SCHEMA,
                });
            }
        }
    }
    let mut r: RunResult = serde_json::from_str(text).map_err(|e| ReadError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    // The summary is derived: recompute it so a hand-edited file cannot disagree with itself.
    r.refresh_summary();
    Ok(r)
}

/// Read a result file written by [`write_atomic`].
pub fn read(path: &Path) -> Result<RunResult, ReadError> {
    let text = fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_json_str(&text, path)
}

/// serde_json appends " at line L column C" to its messages; the error carries them separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{facts, feed_conn, golden_run, Lcg};
    use crate::record::Recorder;
    use std::time::{Duration, Instant};

    fn busy_run() -> RunResult {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0);
        let mut rng = Lcg(5);
        for i in 0..1500 {
            feed_conn(&mut rec, t0, &mut rng, i);
        }
        rec.finish(t0 + Duration::from_millis(11_000), facts(0, 1))
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        for r in [golden_run(), busy_run()] {
            let path = dir.path().join("run.json");
            write_atomic(&r, &path).unwrap();
            let back = read(&path).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.histograms, r.histograms);
        }
        // Only the result remains: no temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("run.json")]);
    }

    #[test]
    fn json_has_human_numbers_and_exact_parts() {
        let r = golden_run();
        let v: serde_json::Value = serde_json::from_slice(&to_json_bytes(&r).unwrap()).unwrap();
        assert_eq!(v["schema"], "loadgen-result/1");
        assert_eq!(v["summary"]["error_rate_percent"], 25.0);
        assert_eq!(v["summary"]["error_rate_replies_percent"], 25.0);
        assert_eq!(v["summary"]["latency_ms"]["max"], 8.0);
        assert_eq!(v["summary"]["connect_ms"]["p50"], 2.0); // exact below 2048 us
        assert_eq!(v["summary"]["reply_rate"]["samples"], 2);
        assert_eq!(
            v["summary"]["reply_rate_samples"],
            serde_json::json!([0.6, 0.2])
        );
        assert_eq!(v["errors"]["conn-refused"], 1);
        assert_eq!(v["status"]["2xx"], 3);
        assert_eq!(v["status"]["codes"]["404"], 1);
        assert_eq!(v["series"][0]["offered"], 2);
        assert_eq!(v["cpu"]["user_s"], 1.5);
        assert_eq!(v["config"]["method"], "GET");
        assert!(v["histograms"]["latency"].as_str().unwrap().len() > 10);
        assert_eq!(v["moments"]["lifetime"]["sum_ns"], 35_000_000);
        assert_eq!(v["summary"]["issue_lateness_ms"]["max"], 3.0);
        assert_eq!(v["moments"]["issue_lateness"]["sum_ns"], 6_000_000);
        assert!(v["histograms"]["issue_lateness"].as_str().unwrap().len() > 10);
    }

    #[test]
    fn files_without_issue_lateness_still_read_and_merge() {
        // A result written before the issue-lateness fields existed: same schema, the three
        // fields absent. It reads with empty lateness data and merges exactly.
        let new = golden_run();
        let mut v: serde_json::Value =
            serde_json::from_slice(&to_json_bytes(&new).unwrap()).unwrap();
        for section in ["histograms", "moments", "summary"] {
            let obj = v[section].as_object_mut().unwrap();
            assert!(obj.remove("issue_lateness").is_some() || section == "summary");
            obj.remove("issue_lateness_ms");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let old = read(&path).unwrap();
        assert_eq!(old.schema, "loadgen-result/1");
        assert_eq!(old.moments.issue_lateness, Default::default());
        assert!(old.histograms.issue_lateness.0.is_empty());
        assert_eq!(old.summary.issue_lateness_ms, Default::default());
        assert_eq!(old.histograms.latency, new.histograms.latency);
        let mut second = golden_run();
        second.clients[0].index = 1;
        second.clients[0].count = 2;
        let mut first = old;
        first.clients[0].count = 2;
        let merged = crate::merge::merge(vec![first, second]).unwrap();
        assert_eq!(merged.moments.issue_lateness, new.moments.issue_lateness);
        assert_eq!(
            merged.histograms.issue_lateness,
            new.histograms.issue_lateness
        );
        assert_eq!(merged.summary.issue_lateness_ms.max, 3.0);
    }

    #[test]
    fn read_errors_name_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = read(&missing).unwrap_err();
        assert!(matches!(e, ReadError::Io { .. }));
        assert!(e
            .to_string()
            .starts_with(&format!("cannot read result file {}", missing.display())));

        let bad = dir.path().join("bad.json");
        fs::write(
            &bad,
            "{\n  \"schema\": \"loadgen-result/1\",\n  \"generator\": 5\n}\n",
        )
        .unwrap();
        let e = read(&bad).unwrap_err();
        match &e {
            ReadError::Json {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((*line, *column), (3, 16));
                assert_eq!(message, "invalid type: integer `5`, expected a string");
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3:16: not a loadgen result: invalid type: integer `5`, expected a string",
                bad.display()
            )
        );

        fs::write(&bad, "{\"schema\": \"loadgen-result/1\", ").unwrap();
        assert!(matches!(
            read(&bad).unwrap_err(),
            ReadError::Json { line: 1, .. }
        ));

        let mut text = String::from_utf8(to_json_bytes(&golden_run()).unwrap()).unwrap();
        text = text.replace("loadgen-result/1", "loadgen-result/2");
        fs::write(&bad, text).unwrap();
        let e = read(&bad).unwrap_err();
        assert!(matches!(e, ReadError::Schema { .. }));
        assert!(
            e.to_string()
                .contains("\"loadgen-result/2\" is not supported"),
            "{e}"
        );

        let mut text = String::from_utf8(to_json_bytes(&golden_run()).unwrap()).unwrap();
        let start = text.find("\"connect\": \"").unwrap() + 12;
        text.replace_range(start..start + 4, "!!!!");
        fs::write(&bad, text).unwrap();
        let e = read(&bad).unwrap_err().to_string();
        assert!(e.contains("histogram is not valid base64"), "{e}");
    }

    #[test]
    fn write_errors_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = golden_run();
        // Target is an existing directory: rename fails.
        let target = dir.path().join("sub");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), "keep").unwrap();
        let e = write_atomic(&r, &target).unwrap_err();
        assert!(e.to_string().contains("cannot write result file"), "{e}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sub")]);
        // Missing directory.
        assert!(write_atomic(&r, &dir.path().join("no/such/dir/r.json")).is_err());
        // Overwrite an existing file atomically.
        let p = dir.path().join("r.json");
        fs::write(&p, "old").unwrap();
        write_atomic(&r, &p).unwrap();
        assert_eq!(read(&p).unwrap(), r);
    }
}
