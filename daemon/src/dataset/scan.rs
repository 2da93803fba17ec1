//! A push parser that walks a data set as its bytes arrive, without keeping
//! it: it checks that every element header and length is coherent and picks
//! out the few identifying attributes ingest indexes. Memory use is bounded
//! whatever lengths the data set claims.

use super::Encoding;

/// Identifying attributes of a data set (top level only). No patient data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub instance_number: Option<i64>,
}

/// Why a data set is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The data set ends inside an element, item or sequence.
    #[error("data set truncated at byte {0}")]
    Truncated(u64),
    /// An explicit VR is not one of the standard two-letter codes.
    #[error("invalid VR {vr:?} for ({group:04X},{element:04X}) at byte {offset}")]
    InvalidVr {
        group: u16,
        element: u16,
        vr: [u8; 2],
        offset: u64,
    },
    /// An undefined length where the standard does not allow one.
    #[error("undefined length not allowed for ({group:04X},{element:04X}) at byte {offset}")]
    UndefinedLength {
        group: u16,
        element: u16,
        offset: u64,
    },
    /// An item or delimiter tag out of place.
    #[error("unexpected ({group:04X},{element:04X}) at byte {offset}")]
    UnexpectedDelimiter {
        group: u16,
        element: u16,
        offset: u64,
    },
    /// Sequences nested deeper than any real object.
    #[error("sequences nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The deflate stream is corrupt.
    #[error("deflated data set is corrupt: {0}")]
    Inflate(String),
    /// Pixel Data is not laid out as the transfer syntax says: the file
    /// would be stored and forwarded under a syntax that misdescribes it.
    #[error("{} Pixel Data, {} syntax", if *.encapsulated { "encapsulated" } else { "native" }, if *.encapsulated { "native" } else { "encapsulated" })]
    PixelDataLayout { encapsulated: bool },
}

const MAX_DEPTH: usize = 64;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const CAPTURE_MAX: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Inside an undefined-length sequence: items or the sequence delimiter follow.
    Sequence { explicit: bool },
    /// Inside encapsulated pixel data: fragments or the sequence delimiter follow.
    Fragments,
    /// Inside an undefined-length item: elements or the item delimiter follow.
    Item { explicit: bool },
}

#[derive(Debug, Clone, Copy)]
enum Field {
    SopClass,
    SopInstance,
    Study,
    Series,
    Modality,
    InstanceNumber,
}

#[derive(Debug)]
enum State {
    Header,
    Skip(u64),
    Capture { field: Field, remaining: u32 },
}

/// Feed it the data set's bytes in order; `finish` says whether it was whole.
pub struct DatasetScanner {
    parser: Parser,
    inflater: Option<flate2::Decompress>,
    inflate_buf: Vec<u8>,
    /// The deflate stream's final block has been read.
    inflated_all: bool,
}

struct Parser {
    explicit: bool,
    big_endian: bool,
    encapsulated: bool,
    header: Vec<u8>,
    value: Vec<u8>,
    state: State,
    stack: Vec<Level>,
    offset: u64,
    summary: Summary,
}

impl DatasetScanner {
    pub fn new(encoding: Encoding) -> Self {
        DatasetScanner {
            parser: Parser {
                explicit: encoding.explicit_vr,
                big_endian: encoding.big_endian,
                encapsulated: encoding.encapsulated,
                header: Vec::with_capacity(12),
                value: Vec::with_capacity(CAPTURE_MAX as usize),
                state: State::Header,
                stack: Vec::new(),
                offset: 0,
                summary: Summary::default(),
            },
            inflater: encoding.deflated.then(|| flate2::Decompress::new(false)),
            inflate_buf: Vec::new(),
            inflated_all: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.inflater.is_none() {
            return self.parser.push(bytes);
        }
        self.inflate(bytes, flate2::FlushDecompress::None)
    }

    /// Inflates `bytes` into the parser. The inflater may take in all of its
    /// input while it still holds output that did not fit the buffer, so it
    /// is drained until it gives no more, not only until the input is used.
    fn inflate(
        &mut self,
        mut bytes: &[u8],
        flush: flate2::FlushDecompress,
    ) -> Result<(), ScanError> {
        let Some(inflater) = self.inflater.as_mut() else {
            return Ok(());
        };
        self.inflate_buf.resize(64 * 1024, 0);
        loop {
            if self.inflated_all {
                if bytes.iter().any(|&b| b != 0) {
                    return Err(ScanError::Inflate(
                        "bytes after the end of the deflate stream".into(),
                    ));
                }
                return Ok(());
            }
            let in_before = inflater.total_in();
            let out_before = inflater.total_out();
            let status = inflater
                .decompress(bytes, &mut self.inflate_buf, flush)
                .map_err(|e| ScanError::Inflate(e.to_string()))?;
            let used = (inflater.total_in() - in_before) as usize;
            let produced = (inflater.total_out() - out_before) as usize;
            bytes = &bytes[used..];
            self.parser.push(&self.inflate_buf[..produced])?;
            self.inflated_all = status == flate2::Status::StreamEnd;
            let buffer_filled = produced == self.inflate_buf.len();
            if !self.inflated_all && bytes.is_empty() && !buffer_filled {
                return Ok(());
            }
            if used == 0 && produced == 0 && !self.inflated_all {
                return Ok(());
            }
        }
    }

    /// Ends the data set; errors if it stopped inside anything, or if a
    /// deflate stream stopped before its final block.
    pub fn finish(mut self) -> Result<Summary, ScanError> {
        if self.inflater.is_some() {
            self.inflate(&[], flate2::FlushDecompress::Finish)?;
            if !self.inflated_all {
                return Err(ScanError::Inflate(
                    "the deflate stream ends before its final block".into(),
                ));
            }
        }
        let p = self.parser;
        let clean = matches!(p.state, State::Header) && p.header.is_empty() && p.stack.is_empty();
        if clean {
            Ok(p.summary)
        } else {
            Err(ScanError::Truncated(p.offset))
        }
    }
}

impl Parser {
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), ScanError> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Skip(remaining) => {
                    let n = (*remaining).min(bytes.len() as u64) as usize;
                    *remaining -= n as u64;
                    bytes = &bytes[n..];
                    self.offset += n as u64;
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                }
                State::Capture { field, remaining } => {
                    let n = (*remaining as usize).min(bytes.len());
                    self.value.extend_from_slice(&bytes[..n]);
                    *remaining -= n as u32;
                    bytes = &bytes[n..];
                    self.offset += n as u64;
                    if *remaining == 0 {
                        let field = *field;
                        self.store(field);
                        self.state = State::Header;
                    }
                }
                State::Header => {
                    let need = self.header_len();
                    let n = need.saturating_sub(self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.header.len() == self.header_len() {
                        self.element()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn explicit_here(&self) -> bool {
        match self.stack.last() {
            Some(Level::Sequence { explicit }) | Some(Level::Item { explicit }) => *explicit,
            _ => self.explicit,
        }
    }

    fn u16_at(&self, i: usize) -> u16 {
        let b = [self.header[i], self.header[i + 1]];
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32_at(&self, i: usize) -> u32 {
        let b = [
            self.header[i],
            self.header[i + 1],
            self.header[i + 2],
            self.header[i + 3],
        ];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Bytes needed for the header being read, as far as known so far.
    fn header_len(&self) -> usize {
        if self.header.len() < 6 {
            return if self.header.len() < 4 { 4 } else { 6 };
        }
        let group = self.u16_at(0);
        if group == 0xFFFE || !self.explicit_here() {
            return 8;
        }
        if has_long_length(&[self.header[4], self.header[5]]) {
            12
        } else {
            8
        }
    }

    fn element(&mut self) -> Result<(), ScanError> {
        let start = self.offset;
        self.offset += self.header.len() as u64;
        let group = self.u16_at(0);
        let element = self.u16_at(2);
        let explicit = self.explicit_here();
        let (vr, len) = if group == 0xFFFE || !explicit {
            (None, self.u32_at(4))
        } else {
            let vr = [self.header[4], self.header[5]];
            if !is_valid_vr(&vr) {
                return Err(ScanError::InvalidVr {
                    group,
                    element,
                    vr,
                    offset: start,
                });
            }
            let len = if has_long_length(&vr) {
                self.u32_at(8)
            } else {
                u32::from(self.u16_at(6))
            };
            (Some(vr), len)
        };
        self.header.clear();
        let unexpected = ScanError::UnexpectedDelimiter {
            group,
            element,
            offset: start,
        };
        let top = self.stack.last().copied();
        match (top, group, element) {
            (Some(Level::Sequence { explicit }), 0xFFFE, 0xE000) => {
                if len == UNDEFINED {
                    self.enter(Level::Item { explicit })?;
                } else {
                    self.skip(len);
                }
            }
            (Some(Level::Fragments), 0xFFFE, 0xE000) if len != UNDEFINED => self.skip(len),
            (Some(Level::Sequence { .. }) | Some(Level::Fragments), 0xFFFE, 0xE0DD) => {
                self.stack.pop();
                self.skip(len);
            }
            (Some(Level::Item { .. }), 0xFFFE, 0xE00D) => {
                self.stack.pop();
                self.skip(len);
            }
            (Some(Level::Sequence { .. }) | Some(Level::Fragments), _, _) | (_, 0xFFFE, _) => {
                return Err(unexpected);
            }
            _ if len == UNDEFINED => match vr {
                Some(vr) if &vr == b"SQ" => self.enter(Level::Sequence { explicit })?,
                // PS3.5 §6.2.2: an undefined-length UN holds implicit VR LE.
                Some(vr) if &vr == b"UN" => self.enter(Level::Sequence { explicit: false })?,
                Some(vr)
                    if (group, element) == (0x7FE0, 0x0010) && (&vr == b"OB" || &vr == b"OW") =>
                {
                    if self.stack.is_empty() && !self.encapsulated {
                        return Err(ScanError::PixelDataLayout { encapsulated: true });
                    }
                    self.enter(Level::Fragments)?
                }
                None if self.stack.is_empty() && (group, element) == (0x7FE0, 0x0010) => {
                    return Err(ScanError::PixelDataLayout { encapsulated: true })
                }
                None => self.enter(Level::Sequence { explicit })?,
                Some(_) => {
                    return Err(ScanError::UndefinedLength {
                        group,
                        element,
                        offset: start,
                    })
                }
            },
            _ if self.encapsulated
                && self.stack.is_empty()
                && (group, element) == (0x7FE0, 0x0010)
                && len > 0 =>
            {
                return Err(ScanError::PixelDataLayout {
                    encapsulated: false,
                })
            }
            _ => match (self.stack.is_empty(), field_of(group, element)) {
                (true, Some(field)) if len <= CAPTURE_MAX && len > 0 => {
                    self.value.clear();
                    self.state = State::Capture {
                        field,
                        remaining: len,
                    };
                }
                _ => self.skip(len),
            },
        }
        Ok(())
    }

    fn enter(&mut self, level: Level) -> Result<(), ScanError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        self.stack.push(level);
        Ok(())
    }

    fn skip(&mut self, len: u32) {
        if len > 0 {
            self.state = State::Skip(u64::from(len));
        }
    }

    fn store(&mut self, field: Field) {
        let text = String::from_utf8_lossy(&self.value)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string();
        let s = &mut self.summary;
        match field {
            Field::SopClass => s.sop_class_uid = Some(text),
            Field::SopInstance => s.sop_instance_uid = Some(text),
            Field::Study => s.study_instance_uid = Some(text),
            Field::Series => s.series_instance_uid = Some(text),
            Field::Modality => s.modality = Some(text),
            Field::InstanceNumber => s.instance_number = text.parse().ok(),
        }
    }
}

fn field_of(group: u16, element: u16) -> Option<Field> {
    Some(match (group, element) {
        (0x0008, 0x0016) => Field::SopClass,
        (0x0008, 0x0018) => Field::SopInstance,
        (0x0008, 0x0060) => Field::Modality,
        (0x0020, 0x000D) => Field::Study,
        (0x0020, 0x000E) => Field::Series,
        (0x0020, 0x0013) => Field::InstanceNumber,
        _ => return None,
    })
}

fn has_long_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

fn is_valid_vr(vr: &[u8; 2]) -> bool {
    has_long_length(vr)
        || matches!(
            vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        )
}

#[cfg(test)]
mod tests;
