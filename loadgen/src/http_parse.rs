//! Sans-I/O HTTP/1.x response parser.
//!
//! The engine owns the socket and a read buffer; it hands the unread part of the buffer to
//! [`ResponseParser::advance`], which says how many bytes it consumed and whether a reply is
//! complete. Body bytes are counted, never copied or kept. Only an incomplete header block (or an
//! incomplete chunk-size / trailer line) is left unconsumed, so the engine must keep those bytes
//! and append new ones after them.
//!
//! Framing follows RFC 9112 §6.3: replies to HEAD and 1xx/204/304 replies have no body;
//! `Transfer-Encoding: chunked` wins over `Content-Length`; otherwise `Content-Length`; otherwise
//! the body runs until the server closes the connection ([`ResponseParser::eof`]). Interim `1xx`
//! replies (except `101`) are skipped: their bytes are added to the final reply's header bytes,
//! but they are not a reply of their own.
//!
//! Limits (a misbehaving server must not make the client hang or grow without bound): the header
//! block, a chunk-size line and each trailer line are capped at [`MAX_HEADER_BYTES`]; more than
//! [`MAX_HEADERS`] header lines is an error. These are reported as [`ParseError`]s, which the
//! engine counts under httperf's `other` error class.

use thiserror::Error;

/// Largest accepted header block (status line + headers + blank line), also the cap for one
/// chunk-size or trailer line. Beyond that the reply is rejected (error class `other`).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most header lines accepted in one reply.
pub const MAX_HEADERS: usize = 128;

/// Why a byte stream is not an acceptable HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The header block exceeded [`MAX_HEADER_BYTES`] without ending.
    #[error("reply header block exceeds {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("reply has more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// The status line or a header line is not HTTP/1.x syntax (e.g. the server sent garbage).
    #[error("malformed reply header: {0}")]
    Malformed(&'static str),
    /// `Content-Length` is not a decimal number, or several disagree.
    #[error("invalid Content-Length header")]
    BadContentLength,
    /// A chunk-size line is not hexadecimal, or chunk data is not followed by CRLF.
    #[error("invalid chunked encoding: {0}")]
    BadChunk(&'static str),
    /// The connection ended before the reply was complete (httperf counts this as `connreset`).
    #[error("connection closed before the reply was complete")]
    Truncated,
}

/// A complete reply, with the byte counts httperf reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reply {
    /// Final status code (never an interim 1xx other than 101).
    pub status: u16,
    /// Status line + header lines + blank line, including any skipped interim replies.
    pub header_bytes: u64,
    /// Content bytes (decoded length for chunked bodies).
    pub body_bytes: u64,
    /// Chunked framing: chunk-size lines, CRLFs after chunk data, last-chunk, trailer (httperf's
    /// "footer").
    pub footer_bytes: u64,
    /// Whether the connection may carry another request after this reply.
    pub keep_alive: bool,
}

/// What one call to [`ResponseParser::advance`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed; `consumed` bytes of the input were used (the rest must be kept).
    NeedMore {
        /// Bytes of the input that were consumed.
        consumed: usize,
    },
    /// A reply finished after `consumed` bytes of the input; bytes after it belong to the next
    /// reply (pipelining).
    Complete {
        /// Bytes of the input that were consumed.
        consumed: usize,
        /// The finished reply.
        reply: Reply,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a header block.
    Head,
    /// Fixed-length body with this many bytes left.
    Length(u64),
    /// Body delimited by connection close.
    UntilClose,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data with this many bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data; the number is how many of its 2 bytes were seen.
    ChunkDataEnd(u8),
    /// Expecting trailer lines after the last chunk (ends with an empty line).
    Trailer,
    /// Reply complete (call `reset` before parsing the next one).
    Done,
}

/// Incremental parser for one response at a time; reusable across replies with [`reset`].
///
/// [`reset`]: ResponseParser::reset
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    head_request: bool,
    reply: Reply,
}

impl ResponseParser {
    /// A parser for the reply to a request; `head_request` = the request method was HEAD (the
    /// reply then has no body whatever its headers say).
    pub fn new(head_request: bool) -> Self {
        ResponseParser {
            state: State::Head,
            head_request,
            reply: Reply::default(),
        }
    }

    /// Prepare for the next reply on the same connection.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.reply = Reply::default();
    }

    /// True when no byte of the current reply has been consumed yet (an EOF here is an idle
    /// close, not a truncated reply).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.reply.header_bytes == 0
    }

    /// Consume as much of `input` as possible. Errors are final for this connection.
    pub fn advance(&mut self, input: &[u8]) -> Result<Progress, ParseError> {
        let mut pos = 0usize;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => {
                    return Ok(Progress::Complete {
                        consumed: pos,
                        reply: self.reply,
                    })
                }
                State::Head => match self.parse_head(rest)? {
                    Some(n) => pos += n,
                    None => return Ok(Progress::NeedMore { consumed: pos }),
                },
                State::Length(left) => {
                    let take = (rest.len() as u64).min(left);
                    pos += take as usize;
                    self.reply.body_bytes += take;
                    if take == left {
                        self.state = State::Done;
                    } else {
                        self.state = State::Length(left - take);
                        return Ok(Progress::NeedMore { consumed: pos });
                    }
                }
                State::UntilClose => {
                    self.reply.body_bytes += rest.len() as u64;
                    return Ok(Progress::NeedMore {
                        consumed: input.len(),
                    });
                }
                State::ChunkSize => match find_line(rest)? {
                    Some(line_len) => {
                        let size = parse_chunk_size(&rest[..line_len])?;
                        pos += line_len;
                        self.reply.footer_bytes += line_len as u64;
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    None => return Ok(Progress::NeedMore { consumed: pos }),
                },
                State::ChunkData(left) => {
                    let take = (rest.len() as u64).min(left);
                    pos += take as usize;
                    self.reply.body_bytes += take;
                    if take == left {
                        self.state = State::ChunkDataEnd(0);
                    } else {
                        self.state = State::ChunkData(left - take);
                        return Ok(Progress::NeedMore { consumed: pos });
                    }
                }
                State::ChunkDataEnd(seen) => {
                    let Some(&b) = rest.first() else {
                        return Ok(Progress::NeedMore { consumed: pos });
                    };
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if b != expected {
                        return Err(ParseError::BadChunk("chunk data not followed by CRLF"));
                    }
                    pos += 1;
                    self.reply.footer_bytes += 1;
                    self.state = if seen == 0 {
                        State::ChunkDataEnd(1)
                    } else {
                        State::ChunkSize
                    };
                }
                State::Trailer => match find_line(rest)? {
                    Some(line_len) => {
                        pos += line_len;
                        self.reply.footer_bytes += line_len as u64;
                        if line_len <= 2 {
                            self.state = State::Done;
                        }
                    }
                    None => return Ok(Progress::NeedMore { consumed: pos }),
                },
            }
        }
    }

    /// The peer closed the connection (read returned 0). Completes a close-delimited body;
    /// anything else unfinished is [`ParseError::Truncated`].
    pub fn eof(&mut self) -> Result<Reply, ParseError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(self.reply)
            }
            _ => Err(ParseError::Truncated),
        }
    }

    /// Parse a header block at the start of `buf`. `Ok(None)` = incomplete.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEADER_BYTES {
                    return Err(ParseError::HeaderTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
            Err(e) => return Err(ParseError::Malformed(httparse_error_name(e))),
        };
        if n > MAX_HEADER_BYTES {
            return Err(ParseError::HeaderTooLarge);
        }
        let status = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        self.reply.header_bytes += n as u64;
        if (100..200).contains(&status) && status != 101 {
            // Interim reply: skip it, stay in Head for the final one.
            return Ok(Some(n));
        }
        self.reply.status = status;

        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_content_length(h.value)?;
                if content_length.is_some_and(|old| old != v) {
                    return Err(ParseError::BadContentLength);
                }
                content_length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked applies when it is the final coding.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .map(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                    .unwrap_or(false);
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
        }
        let mut keep_alive = if version >= 1 {
            !conn_close
        } else {
            conn_keep_alive && !conn_close
        };
        let no_body = self.head_request || status == 204 || status == 304 || status == 101;
        self.state = if no_body {
            if status == 101 {
                keep_alive = false;
            }
            State::Done
        } else if chunked {
            State::ChunkSize
        } else if let Some(len) = content_length {
            if len == 0 {
                State::Done
            } else {
                State::Length(len)
            }
        } else {
            keep_alive = false;
            State::UntilClose
        };
        self.reply.keep_alive = keep_alive;
        Ok(Some(n))
    }
}

/// Length of the first CRLF-terminated line in `buf` (including the CRLF), `None` if incomplete.
fn find_line(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let limit = buf.len().min(MAX_HEADER_BYTES);
    match buf[..limit].iter().position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i + 1)),
        None if buf.len() >= MAX_HEADER_BYTES => Err(ParseError::HeaderTooLarge),
        None => Ok(None),
    }
}

/// Parse `HEX[;ext]CRLF`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next().unwrap_or(line);
    let digits = digits.trim_ascii();
    if digits.is_empty() {
        return Err(ParseError::BadChunk("empty chunk size"));
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(ParseError::BadChunk("chunk size is not hexadecimal")),
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or(ParseError::BadChunk("chunk size overflows"))?;
    }
    Ok(size)
}

fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::BadContentLength)?;
    }
    Ok(n)
}

fn httparse_error_name(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not an HTTP/1.x status line",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `stream` to a parser as the engine would: in pieces split at `cuts`, keeping
    /// unconsumed bytes. Returns the replies and the final parser.
    fn feed_split(
        stream: &[u8],
        cuts: &[usize],
        head: bool,
    ) -> Result<(Vec<Reply>, ResponseParser), ParseError> {
        let mut p = ResponseParser::new(head);
        let mut buf: Vec<u8> = Vec::new();
        let mut replies = Vec::new();
        let mut last = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(stream.len());
        for &cut in &bounds {
            buf.extend_from_slice(&stream[last..cut]);
            last = cut;
            loop {
                match p.advance(&buf)? {
                    Progress::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                    Progress::Complete { consumed, reply } => {
                        buf.drain(..consumed);
                        replies.push(reply);
                        p.reset();
                        if buf.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        Ok((replies, p))
    }

    /// Parse `stream` split at every single byte boundary, and in one piece, and check all agree.
    fn every_split(stream: &[u8], head: bool) -> Vec<Reply> {
        let (whole, _) = feed_split(stream, &[], head).unwrap();
        for cut in 1..stream.len() {
            let (r, _) = feed_split(stream, &[cut], head).unwrap();
            assert_eq!(r, whole, "split at {cut}");
        }
        let all: Vec<usize> = (1..stream.len()).collect();
        let (r, _) = feed_split(stream, &all, head).unwrap();
        assert_eq!(r, whole, "byte by byte");
        whole
    }

    #[test]
    fn content_length_reply_at_every_split() {
        let body = "x".repeat(75);
        let s = format!("HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 75\r\n\r\n{body}");
        let r = every_split(s.as_bytes(), false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header_bytes, (s.len() - 75) as u64);
        assert_eq!(r[0].body_bytes, 75);
        assert_eq!(r[0].footer_bytes, 0);
        assert!(r[0].keep_alive);
    }

    #[test]
    fn pipelined_replies_at_every_split() {
        let one = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc";
        let s = format!("{one}{one}HTTP/1.1 204 No Content\r\n\r\n");
        let r = every_split(s.as_bytes(), false);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].status, 404);
        assert_eq!(r[1].body_bytes, 3);
        assert_eq!(r[2].status, 204);
        assert_eq!(r[2].body_bytes, 0);
    }

    #[test]
    fn chunked_counts_body_and_footer_at_every_split() {
        let s = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        let r = every_split(s, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].body_bytes, 21);
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".len() as u64;
        assert_eq!(r[0].header_bytes, head);
        assert_eq!(
            r[0].header_bytes + r[0].body_bytes + r[0].footer_bytes,
            s.len() as u64
        );
        assert!(r[0].keep_alive);
    }

    #[test]
    fn interim_replies_are_skipped_at_every_split() {
        let s = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let r = every_split(s, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header_bytes + r[0].body_bytes, s.len() as u64);
    }

    #[test]
    fn close_delimited_body_completes_at_eof() {
        let s = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nsome body bytes";
        for cut in 1..s.len() {
            let (r, mut p) = feed_split(s, &[cut], false).unwrap();
            assert!(r.is_empty());
            let reply = p.eof().unwrap();
            assert_eq!(reply.body_bytes, 15);
            assert!(!reply.keep_alive);
        }
    }

    #[test]
    fn head_reply_has_no_body() {
        let s = b"HTTP/1.1 200 OK\r\nContent-Length: 75\r\n\r\n";
        let r = every_split(s, true);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].body_bytes, 0);
        assert!(r[0].keep_alive);
    }

    #[test]
    fn connection_close_and_http10_keep_alive() {
        let (r, _) = feed_split(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &[],
            false,
        )
        .unwrap();
        assert!(!r[0].keep_alive);
        let (r, _) =
            feed_split(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &[], false).unwrap();
        assert!(!r[0].keep_alive);
        let (r, _) = feed_split(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            &[],
            false,
        )
        .unwrap();
        assert!(r[0].keep_alive);
    }

    #[test]
    fn truncated_body_is_an_error_at_eof() {
        let s = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let (r, mut p) = feed_split(s, &[], false).unwrap();
        assert!(r.is_empty());
        assert!(!p.is_idle());
        assert_eq!(p.eof(), Err(ParseError::Truncated));
        let mut idle = ResponseParser::new(false);
        assert!(idle.is_idle());
        assert_eq!(idle.eof(), Err(ParseError::Truncated));
    }

    #[test]
    fn garbage_is_malformed() {
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.advance(b"\x00\x01garbage\r\n\r\n"),
            Err(ParseError::Malformed(_))
        ));
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.advance(b"SSH-2.0-OpenSSH_9.0\r\n"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn huge_header_block_is_rejected() {
        let mut s = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        s.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES));
        let mut p = ResponseParser::new(false);
        assert_eq!(p.advance(&s), Err(ParseError::HeaderTooLarge));
        // Just under the cap but incomplete: keep waiting.
        let mut p = ResponseParser::new(false);
        assert_eq!(
            p.advance(&s[..MAX_HEADER_BYTES - 1]),
            Ok(Progress::NeedMore { consumed: 0 })
        );
    }

    #[test]
    fn too_many_headers_is_rejected() {
        let mut s = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        let mut p = ResponseParser::new(false);
        assert_eq!(p.advance(s.as_bytes()), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn bad_lengths_and_chunks_are_rejected() {
        let mut p = ResponseParser::new(false);
        assert_eq!(
            p.advance(b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        let mut p = ResponseParser::new(false);
        assert_eq!(
            p.advance(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.advance(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ParseError::BadChunk(_))
        ));
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.advance(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX"),
            Err(ParseError::BadChunk(_))
        ));
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.advance(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"
            ),
            Err(ParseError::BadChunk(_))
        ));
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the parser, whatever the split.
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in 0usize..512,
            head in proptest::prelude::any::<bool>(),
        ) {
            let cut = cut.min(data.len());
            let _ = feed_split(&data, &[cut], head).map(|(_, mut p)| p.eof());
        }

        /// A valid response prefixed to arbitrary status/body sizes parses identically at any split.
        #[test]
        fn valid_responses_parse_at_any_split(
            len in 0usize..300,
            chunk in 1usize..50,
            cut in 0usize..600,
        ) {
            let body = "b".repeat(len);
            let mut chunked = String::new();
            for piece in body.as_bytes().chunks(chunk) {
                chunked.push_str(&format!("{:x}\r\n{}\r\n", piece.len(), std::str::from_utf8(piece).unwrap()));
            }
            chunked.push_str("0\r\n\r\n");
            let stream = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{body}\
                 HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"
            );
            let cut = cut.min(stream.len());
            let (r, _) = feed_split(stream.as_bytes(), &[cut], false).unwrap();
            proptest::prop_assert_eq!(r.len(), 2);
            proptest::prop_assert_eq!(r[0].body_bytes, len as u64);
            proptest::prop_assert_eq!(r[1].body_bytes, len as u64);
        }
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let s =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  1\r\na\r\n0\r\n\r\n";
        let r = every_split(s, false);
        assert_eq!(r[0].body_bytes, 1);
    }
}
