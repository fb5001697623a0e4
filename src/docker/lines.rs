//! Container output arrives in frames that follow the writes, not the lines: this cuts it
//! back into lines per stream with the process forwarder's own rule
//! ([`take_pieces`](crate::launch::forward::take_pieces)): at most
//! [`MAX_LINE`](crate::launch::forward::MAX_LINE) bytes a piece, split at a UTF-8 boundary,
//! each piece of a longer line but the last marked as continued.

use super::{LogStream, Piece};
use crate::launch::forward::{MAX_LINE, take_pieces};

/// A partial line per stream, waiting for its newline.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub(crate) fn new() -> LineSplitter {
        LineSplitter::with_max(MAX_LINE)
    }

    pub(crate) fn with_max(max: usize) -> LineSplitter {
        LineSplitter {
            max: max.max(4),
            ..LineSplitter::default()
        }
    }

    /// Takes one frame of `stream`; the lines (and over-long pieces) it completes.
    pub(crate) fn push(&mut self, stream: LogStream, bytes: &[u8]) -> Vec<(LogStream, Piece)> {
        let buf = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(bytes);
        take_pieces(buf, self.max, false)
            .into_iter()
            .map(|p| (stream, p))
            .collect()
    }

    /// The partial lines left when the stream ends.
    pub(crate) fn finish(&mut self) -> Vec<(LogStream, Piece)> {
        let max = self.max;
        let mut out = Vec::new();
        for (stream, buf) in [
            (LogStream::Stdout, &mut self.stdout),
            (LogStream::Stderr, &mut self.stderr),
        ] {
            out.extend(take_pieces(buf, max, true).into_iter().map(|p| (stream, p)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: Vec<(LogStream, Piece)>) -> Vec<(LogStream, String)> {
        v.into_iter()
            .map(|(s, p)| (s, String::from_utf8(p.bytes).unwrap()))
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
        // Every piece but the last is marked: the line goes on.
        let marks: Vec<bool> = out.iter().map(|(_, p)| p.continued).collect();
        assert_eq!(marks.last(), Some(&false), "{marks:?}");
        assert!(marks[..marks.len() - 1].iter().all(|c| *c), "{marks:?}");
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
        assert!(out.iter().all(|(_, p)| p.bytes.len() == 4));
        assert_eq!(s.finish()[0].1.bytes.len(), 1);
    }
}
