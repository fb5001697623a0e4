//! Container output arrives in frames that follow the writes, not the lines: this cuts it
//! back into lines per stream, each at most [`MAX_LOG_LINE`] bytes (a longer line leaves in
//! pieces split at a UTF-8 boundary where there is one, as the process forwarder does).

use super::{LogStream, MAX_LOG_LINE};

/// A partial line per stream, waiting for its newline.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub(crate) fn new() -> LineSplitter {
        LineSplitter::with_max(MAX_LOG_LINE)
    }

    pub(crate) fn with_max(max: usize) -> LineSplitter {
        LineSplitter {
            max: max.max(4),
            ..LineSplitter::default()
        }
    }

    /// Takes one frame of `stream`; the lines (and over-long pieces) it completes.
    pub(crate) fn push(&mut self, stream: LogStream, bytes: &[u8]) -> Vec<(LogStream, Vec<u8>)> {
        let max = self.max;
        let buf = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push((stream, std::mem::take(buf)));
                continue;
            }
            buf.push(b);
            if buf.len() >= max {
                let cut = utf8_cut(buf);
                let rest = buf.split_off(cut);
                out.push((stream, std::mem::replace(buf, rest)));
            }
        }
        out
    }

    /// The partial lines left when the stream ends.
    pub(crate) fn finish(&mut self) -> Vec<(LogStream, Vec<u8>)> {
        let mut out = Vec::new();
        for (stream, buf) in [
            (LogStream::Stdout, &mut self.stdout),
            (LogStream::Stderr, &mut self.stderr),
        ] {
            if !buf.is_empty() {
                out.push((stream, std::mem::take(buf)));
            }
        }
        out
    }
}

/// Where to cut a full buffer: before a UTF-8 character that is not complete yet, or at
/// its end when the bytes are not UTF-8 there anyway.
fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    // A character is at most 4 bytes: look back up to 3 for the lead byte of an incomplete one.
    for back in 1..=3.min(len) {
        let b = buf[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: keep looking for the lead
        }
        let needs = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return len,
        };
        return if needs > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: Vec<(LogStream, Vec<u8>)>) -> Vec<(LogStream, String)> {
        v.into_iter()
            .map(|(s, b)| (s, String::from_utf8(b).unwrap()))
            .collect()
    }

    #[test]
    fn frames_are_cut_into_lines_per_stream() {
        let mut s = LineSplitter::new();
        assert!(s.push(LogStream::Stdout, b"hel").is_empty());
        assert_eq!(
            texts(s.push(LogStream::Stderr, b"oops\nhalf")),
            vec![(LogStream::Stderr, "oops".into())]
        );
        assert_eq!(
            texts(s.push(LogStream::Stdout, b"lo\n\nnext")),
            vec![
                (LogStream::Stdout, "hello".into()),
                (LogStream::Stdout, String::new())
            ]
        );
        assert_eq!(
            texts(s.finish()),
            vec![
                (LogStream::Stdout, "next".into()),
                (LogStream::Stderr, "half".into())
            ]
        );
        assert!(s.finish().is_empty());
    }

    #[test]
    fn a_long_line_leaves_in_bounded_pieces_at_character_boundaries() {
        let mut s = LineSplitter::with_max(8);
        // "aaaaaaa" + "é" (2 bytes) would straddle the 8-byte limit.
        let out = s.push(LogStream::Stdout, "aaaaaaaé€bc\n".as_bytes());
        let pieces = texts(out);
        assert!(pieces.iter().all(|(_, p)| p.len() <= 8), "{pieces:?}");
        let joined: String = pieces.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(joined, "aaaaaaaé€bc");
        assert_eq!(pieces[0].1, "aaaaaaa");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_at_the_limit() {
        let mut s = LineSplitter::with_max(4);
        let out = s.push(LogStream::Stdout, &[0xff; 9]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(_, p)| p.len() == 4));
        assert_eq!(s.finish()[0].1.len(), 1);
    }
}
