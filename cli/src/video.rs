//! Recognises a video by its container's magic bytes, so a wrong file is refused
//! before anything is uploaded (no ffprobe needed).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Containers the worker decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// ISO base media (`ftyp` box), what phones record as `.mp4`.
    Mp4,
    /// QuickTime (`ftyp` brand `qt  `, or a classic leading atom), iPhones' `.mov`.
    QuickTime,
    /// Matroska (EBML header).
    Matroska,
    /// WebM (EBML header with DocType `webm`).
    WebM,
}

impl Container {
    /// File extension of the uploaded object.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::QuickTime => "mov",
            Self::Matroska => "mkv",
            Self::WebM => "webm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp4 => "video/mp4",
            Self::QuickTime => "video/quicktime",
            Self::Matroska => "video/x-matroska",
            Self::WebM => "video/webm",
        }
    }
}

/// Bytes read from the start of the file: enough for the `ftyp` box and the EBML DocType.
const SNIFF_LEN: usize = 64;
const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
/// Atoms an old QuickTime file may start with instead of `ftyp`.
const QUICKTIME_ATOMS: [&[u8; 4]; 4] = [b"moov", b"mdat", b"wide", b"free"];

/// The container of a file's first bytes, or a short description of what they are instead.
pub fn sniff(head: &[u8]) -> Result<Container, String> {
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Ok(if &head[8..12] == b"qt  " {
            Container::QuickTime
        } else {
            Container::Mp4
        });
    }
    if head.len() >= 8 && QUICKTIME_ATOMS.iter().any(|atom| &head[4..8] == *atom) {
        return Ok(Container::QuickTime);
    }
    if head.starts_with(&EBML_MAGIC) {
        let is_webm = head.windows(4).any(|w| w == b"webm");
        return Ok(if is_webm {
            Container::WebM
        } else {
            Container::Matroska
        });
    }
    Err(describe_non_video(head))
}

fn describe_non_video(head: &[u8]) -> String {
    let known: [(&[u8], &str); 5] = [
        (b"\x89PNG", "it is a PNG image"),
        (b"\xff\xd8\xff", "it is a JPEG image"),
        (b"%PDF", "it is a PDF document"),
        (b"PK\x03\x04", "it is a ZIP archive"),
        (
            b"RIFF",
            "it is a RIFF file (AVI/WAV), which the worker does not take",
        ),
    ];
    if head.is_empty() {
        return "the file is empty".into();
    }
    known
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, what)| (*what).to_owned())
        .unwrap_or_else(|| "its first bytes match no known video container".into())
}

/// Reads the head of `path` and sniffs it.
pub fn container_of(path: &Path) -> Result<Container> {
    let file_error = |source| Error::File {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut head = Vec::with_capacity(SNIFF_LEN);
    std::fs::File::open(path)
        .map_err(file_error)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(file_error)?;
    sniff(&head).map_err(|found| Error::NotAVideo {
        path: path.to_owned(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
        let mut head = vec![0, 0, 0, 0x20];
        head.extend_from_slice(b"ftyp");
        head.extend_from_slice(brand);
        head.extend_from_slice(&[0; 20]);
        head
    }

    #[test]
    fn iso_media_and_quicktime() {
        assert_eq!(sniff(&ftyp(b"isom")), Ok(Container::Mp4));
        assert_eq!(sniff(&ftyp(b"mp42")), Ok(Container::Mp4));
        assert_eq!(sniff(&ftyp(b"qt  ")), Ok(Container::QuickTime));
        assert_eq!(
            sniff(b"\0\0\0\x08wide\0\0\0\0mdat"),
            Ok(Container::QuickTime)
        );
    }

    #[test]
    fn matroska_and_webm() {
        let mut mkv = EBML_MAGIC.to_vec();
        mkv.extend_from_slice(b"\xa3\x42\x86\x81\x01\x42\x82\x88matroska");
        assert_eq!(sniff(&mkv), Ok(Container::Matroska));
        let mut webm = EBML_MAGIC.to_vec();
        webm.extend_from_slice(b"\x9f\x42\x86\x81\x01\x42\x82\x84webm");
        assert_eq!(sniff(&webm), Ok(Container::WebM));
    }

    #[test]
    fn other_files_are_refused_with_what_they_are() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), Err("it is a PNG image".into()));
        assert_eq!(sniff(b""), Err("the file is empty".into()));
        assert_eq!(
            sniff(b"hello, this is text"),
            Err("its first bytes match no known video container".into())
        );
        // `ftyp` at the wrong offset is not a video either.
        assert!(sniff(b"ftypisom\0\0\0\0").is_err());
    }

    #[test]
    fn container_of_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("swing.bin");
        std::fs::write(&video, ftyp(b"isom")).unwrap();
        assert_eq!(container_of(&video).unwrap(), Container::Mp4);
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "not a video").unwrap();
        let error = container_of(&text).unwrap_err().to_string();
        assert!(error.contains("notes.mp4: not a video"), "{error}");
    }
}
