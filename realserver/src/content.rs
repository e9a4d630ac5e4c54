//! What the server answers with: the paper's tiny page, content types, and
//! safe resolution of request paths below `--root` (pure, no I/O).

use std::path::PathBuf;

use hyper::body::Bytes;

/// Size of the paper's test page: the real servers answered with a 75-byte body.
pub const DEFAULT_BODY_BYTES: usize = 75;

const PAGE_HEAD: &str = "<html><head><title>test</title></head><body>";
const PAGE_TAIL: &str = "</body></html>\n";
const FILLER: &str = "This is a test. ";

/// Builds an HTML page of exactly `n` bytes, so experiments can vary the reply
/// size while still serving a well-formed page (below 59 bytes the framing no
/// longer fits and the page is plain filler text).
pub fn page(n: usize) -> Bytes {
    let mut out = String::with_capacity(n);
    let frame = PAGE_HEAD.len() + PAGE_TAIL.len();
    if n >= frame {
        out.push_str(PAGE_HEAD);
        out.extend(FILLER.chars().cycle().take(n - frame));
        out.push_str(PAGE_TAIL);
    } else {
        out.extend(FILLER.chars().cycle().take(n));
    }
    Bytes::from(out)
}

/// Content type for a file name, by its extension (case-insensitive); unknown
/// extensions are served as `application/octet-stream`, like nginx's default.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = match path.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

/// Why a request path cannot be mapped below the document root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not begin with `/` (for example `*` or an absolute URI form).
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("bad percent-encoding at byte {0} of the request path")]
    BadPercent(usize),
    /// A segment is `..` (after decoding): it could climb out of the root.
    #[error("request path contains a '..' segment")]
    Traversal,
    /// The decoded path holds a byte that has no business in a file name
    /// (NUL, or a `/` or `\` that was percent-encoded inside a segment).
    #[error("request path contains a forbidden byte after decoding")]
    ForbiddenByte,
    /// The decoded path is not valid UTF-8.
    #[error("request path is not valid UTF-8 after decoding")]
    NotUtf8,
}

/// A request path checked and mapped to a relative file path below the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Relative path (no `..`, no leading `/`); empty means the root itself.
    pub rel: PathBuf,
    /// The request named a directory (trailing `/` or empty path): serve its `index.html`.
    pub wants_dir: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment (`+` stays `+`: it is not a space in paths).
fn decode_segment(seg: &str, offset: usize) -> Result<String, PathError> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadPercent(offset + i)),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.iter().any(|&b| b == 0 || b == b'/' || b == b'\\') {
        return Err(PathError::ForbiddenByte);
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

/// Maps a request path (without query) to a file below the root: splits on
/// `/` first, then percent-decodes each segment, so `%2F` cannot forge a
/// separator and `%2e%2e` is caught as `..`. Empty and `.` segments are
/// skipped; any `..` segment is refused rather than normalised away.
pub fn resolve_path(path: &str) -> Result<Resolved, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut rel = PathBuf::new();
    let mut offset = 1;
    for seg in rest.split('/') {
        let decoded = decode_segment(seg, offset)?;
        offset += seg.len() + 1;
        match decoded.as_str() {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            s => rel.push(s),
        }
    }
    let wants_dir = rest.is_empty() || rest.ends_with('/');
    Ok(Resolved { rel, wants_dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_page_is_75_bytes_of_html() {
        let p = page(DEFAULT_BODY_BYTES);
        assert_eq!(p.len(), 75);
        let s = std::str::from_utf8(&p).unwrap();
        assert_eq!(
            s,
            "<html><head><title>test</title></head><body>This is a test. </body></html>\n"
        );
        assert!(s.ends_with("</body></html>\n"), "{s}");
    }

    #[test]
    fn page_has_exact_size_for_any_n() {
        for n in [0, 1, 10, 59, 60, 61, 75, 1000, 10_000] {
            assert_eq!(page(n).len(), n, "n={n}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type_for("x.PNG"), "image/png");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
        assert_eq!(content_type_for("dir.d/noext"), "application/octet-stream");
        assert_eq!(content_type_for("f.unknown"), "application/octet-stream");
    }

    #[test]
    fn resolves_plain_paths() {
        let r = resolve_path("/a/b.html").unwrap();
        assert_eq!(r.rel, PathBuf::from("a/b.html"));
        assert!(!r.wants_dir);
        let r = resolve_path("/").unwrap();
        assert_eq!(r.rel, PathBuf::new());
        assert!(r.wants_dir);
        let r = resolve_path("/sub/").unwrap();
        assert_eq!(r.rel, PathBuf::from("sub"));
        assert!(r.wants_dir);
        let r = resolve_path("//a/./b").unwrap();
        assert_eq!(r.rel, PathBuf::from("a/b"));
    }

    #[test]
    fn decodes_percent_escapes() {
        let r = resolve_path("/hello%20world.txt").unwrap();
        assert_eq!(r.rel, PathBuf::from("hello world.txt"));
        let r = resolve_path("/caf%C3%A9").unwrap();
        assert_eq!(r.rel, PathBuf::from("café"));
    }

    #[test]
    fn rejects_traversal_in_all_spellings() {
        for p in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E",
            "/.%2e/x",
            "/a/..",
        ] {
            assert_eq!(resolve_path(p), Err(PathError::Traversal), "{p}");
        }
    }

    #[test]
    fn rejects_encoded_separators_and_nul() {
        assert_eq!(
            resolve_path("/..%2fetc"),
            Err(PathError::ForbiddenByte),
            "encoded slash"
        );
        assert_eq!(resolve_path("/a%5c..%5cb"), Err(PathError::ForbiddenByte));
        assert_eq!(resolve_path("/a%00b"), Err(PathError::ForbiddenByte));
    }

    #[test]
    fn rejects_bad_percent_and_relative() {
        assert_eq!(resolve_path("/ab%4"), Err(PathError::BadPercent(3)));
        assert_eq!(resolve_path("/x/%zz"), Err(PathError::BadPercent(3)));
        assert_eq!(resolve_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(resolve_path("/%ff"), Err(PathError::NotUtf8));
    }
}
