//! Command sets: group 0000, always Implicit VR Little Endian (PS3.7 §6.3.1).

/// The DIMSE operations firstlook speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandField {
    CStoreRq,
    CStoreRsp,
    CEchoRq,
    CEchoRsp,
    Other(u16),
}

impl CommandField {
    pub fn code(self) -> u16 {
        match self {
            CommandField::CStoreRq => 0x0001,
            CommandField::CStoreRsp => 0x8001,
            CommandField::CEchoRq => 0x0030,
            CommandField::CEchoRsp => 0x8030,
            CommandField::Other(c) => c,
        }
    }

    pub fn from_code(code: u16) -> Self {
        match code {
            0x0001 => CommandField::CStoreRq,
            0x8001 => CommandField::CStoreRsp,
            0x0030 => CommandField::CEchoRq,
            0x8030 => CommandField::CEchoRsp,
            c => CommandField::Other(c),
        }
    }

    /// The response to a request, for answering unknown operations.
    pub fn response_code(self) -> u16 {
        self.code() | 0x8000
    }
}

/// DIMSE priority (0000,0700).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    fn code(self) -> u16 {
        match self {
            Priority::Medium => 0x0000,
            Priority::High => 0x0001,
            Priority::Low => 0x0002,
        }
    }
    fn from_code(code: u16) -> Self {
        match code {
            0x0001 => Priority::High,
            0x0002 => Priority::Low,
            _ => Priority::Medium,
        }
    }
}

/// One command set. Only the elements firstlook uses are kept; others are
/// skipped on decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: CommandField,
    pub message_id: Option<u16>,
    pub responding_to: Option<u16>,
    pub affected_sop_class: Option<String>,
    pub affected_sop_instance: Option<String>,
    pub priority: Option<Priority>,
    pub has_dataset: bool,
    pub status: Option<u16>,
    pub error_comment: Option<String>,
    pub move_originator_ae: Option<String>,
    pub move_originator_id: Option<u16>,
}

/// Why a command set could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command set ends inside an element.
    #[error("command set truncated at byte {0}")]
    Truncated(usize),
    /// An element outside group 0000 appeared in a command set.
    #[error("element ({0:04X},{1:04X}) is not a command element")]
    NotCommandGroup(u16, u16),
    /// A command element has a length its type does not allow.
    #[error("element (0000,{tag:04X}) has invalid length {len}")]
    BadLength { tag: u16, len: u32 },
    /// (0000,0100) Command Field is absent.
    #[error("command set has no Command Field")]
    MissingCommandField,
    /// A UID or AE element is not valid text.
    #[error("element (0000,{0:04X}) is not valid text")]
    BadText(u16),
}

const TAG_GROUP_LENGTH: u16 = 0x0000;
const TAG_AFFECTED_SOP_CLASS: u16 = 0x0002;
const TAG_COMMAND_FIELD: u16 = 0x0100;
const TAG_MESSAGE_ID: u16 = 0x0110;
const TAG_RESPONDING_TO: u16 = 0x0120;
const TAG_MOVE_DESTINATION: u16 = 0x0600;
const TAG_PRIORITY: u16 = 0x0700;
const TAG_DATASET_TYPE: u16 = 0x0800;
const TAG_STATUS: u16 = 0x0900;
const TAG_ERROR_COMMENT: u16 = 0x0902;
const TAG_AFFECTED_SOP_INSTANCE: u16 = 0x1000;
const TAG_MOVE_ORIGINATOR_AE: u16 = 0x1030;
const TAG_MOVE_ORIGINATOR_ID: u16 = 0x1031;

/// (0000,0800) value meaning "no data set follows".
const NO_DATASET: u16 = 0x0101;

impl Command {
    fn bare(field: CommandField) -> Self {
        Command {
            field,
            message_id: None,
            responding_to: None,
            affected_sop_class: None,
            affected_sop_instance: None,
            priority: None,
            has_dataset: false,
            status: None,
            error_comment: None,
            move_originator_ae: None,
            move_originator_id: None,
        }
    }

    pub fn c_store_rq(
        message_id: u16,
        sop_class: &str,
        sop_instance: &str,
        priority: Priority,
    ) -> Self {
        Command {
            message_id: Some(message_id),
            affected_sop_class: Some(sop_class.to_string()),
            affected_sop_instance: Some(sop_instance.to_string()),
            priority: Some(priority),
            has_dataset: true,
            ..Command::bare(CommandField::CStoreRq)
        }
    }

    pub fn c_echo_rq(message_id: u16) -> Self {
        Command {
            message_id: Some(message_id),
            affected_sop_class: Some(super::VERIFICATION_SOP_CLASS.to_string()),
            ..Command::bare(CommandField::CEchoRq)
        }
    }

    /// The response to `self`, with the given status.
    pub fn response(&self, status: u16) -> Self {
        let field = match self.field {
            CommandField::CStoreRq => CommandField::CStoreRsp,
            CommandField::CEchoRq => CommandField::CEchoRsp,
            other => CommandField::Other(other.response_code()),
        };
        Command {
            responding_to: self.message_id,
            affected_sop_class: self.affected_sop_class.clone(),
            affected_sop_instance: self.affected_sop_instance.clone(),
            status: Some(status),
            ..Command::bare(field)
        }
    }

    pub fn with_error_comment(mut self, comment: &str) -> Self {
        // (0000,0902) is LO: at most 64 characters.
        let c: String = comment
            .chars()
            .filter(|c| c.is_ascii() && *c != '\\')
            .take(64)
            .collect();
        self.error_comment = Some(c);
        self
    }

    /// Encodes the command set, group length first.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        if let Some(uid) = &self.affected_sop_class {
            put_text(&mut body, TAG_AFFECTED_SOP_CLASS, uid, 0);
        }
        put_u16(&mut body, TAG_COMMAND_FIELD, self.field.code());
        if let Some(id) = self.message_id {
            put_u16(&mut body, TAG_MESSAGE_ID, id);
        }
        if let Some(id) = self.responding_to {
            put_u16(&mut body, TAG_RESPONDING_TO, id);
        }
        if let Some(p) = self.priority {
            put_u16(&mut body, TAG_PRIORITY, p.code());
        }
        put_u16(
            &mut body,
            TAG_DATASET_TYPE,
            if self.has_dataset { 0x0000 } else { NO_DATASET },
        );
        if let Some(s) = self.status {
            put_u16(&mut body, TAG_STATUS, s);
        }
        if let Some(c) = &self.error_comment {
            put_text(&mut body, TAG_ERROR_COMMENT, c, b' ');
        }
        if let Some(uid) = &self.affected_sop_instance {
            put_text(&mut body, TAG_AFFECTED_SOP_INSTANCE, uid, 0);
        }
        if let Some(ae) = &self.move_originator_ae {
            put_text(&mut body, TAG_MOVE_ORIGINATOR_AE, ae, b' ');
        }
        if let Some(id) = self.move_originator_id {
            put_u16(&mut body, TAG_MOVE_ORIGINATOR_ID, id);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        put_header(&mut out, TAG_GROUP_LENGTH, 4);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a complete command set.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        let mut field = None;
        let mut cmd = Command::bare(CommandField::Other(0));
        cmd.has_dataset = true;
        let mut pos = 0;
        while pos < bytes.len() {
            if bytes.len() - pos < 8 {
                return Err(CommandError::Truncated(pos));
            }
            let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
            let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            let len = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            pos += 8;
            if group != 0x0000 {
                return Err(CommandError::NotCommandGroup(group, elem));
            }
            let end = pos
                .checked_add(len as usize)
                .filter(|&e| e <= bytes.len() && len != u32::MAX)
                .ok_or(CommandError::Truncated(pos))?;
            let value = &bytes[pos..end];
            pos = end;
            match elem {
                TAG_COMMAND_FIELD => field = Some(read_u16(elem, value)?),
                TAG_MESSAGE_ID => cmd.message_id = Some(read_u16(elem, value)?),
                TAG_RESPONDING_TO => cmd.responding_to = Some(read_u16(elem, value)?),
                TAG_PRIORITY => cmd.priority = Some(Priority::from_code(read_u16(elem, value)?)),
                TAG_DATASET_TYPE => cmd.has_dataset = read_u16(elem, value)? != NO_DATASET,
                TAG_STATUS => cmd.status = Some(read_u16(elem, value)?),
                TAG_MOVE_ORIGINATOR_ID => cmd.move_originator_id = Some(read_u16(elem, value)?),
                TAG_AFFECTED_SOP_CLASS => cmd.affected_sop_class = Some(read_text(elem, value)?),
                TAG_AFFECTED_SOP_INSTANCE => {
                    cmd.affected_sop_instance = Some(read_text(elem, value)?)
                }
                TAG_ERROR_COMMENT => cmd.error_comment = Some(read_text(elem, value)?),
                TAG_MOVE_ORIGINATOR_AE => cmd.move_originator_ae = Some(read_text(elem, value)?),
                TAG_GROUP_LENGTH | TAG_MOVE_DESTINATION => {}
                _ => {}
            }
        }
        cmd.field = CommandField::from_code(field.ok_or(CommandError::MissingCommandField)?);
        Ok(cmd)
    }
}

fn put_header(out: &mut Vec<u8>, elem: u16, len: u32) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_u16(out: &mut Vec<u8>, elem: u16, v: u16) {
    put_header(out, elem, 2);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, elem: u16, text: &str, pad: u8) {
    let odd = text.len() % 2 == 1;
    put_header(out, elem, (text.len() + usize::from(odd)) as u32);
    out.extend_from_slice(text.as_bytes());
    if odd {
        out.push(pad);
    }
}

fn read_u16(elem: u16, value: &[u8]) -> Result<u16, CommandError> {
    match value {
        [a, b] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(CommandError::BadLength {
            tag: elem,
            len: value.len() as u32,
        }),
    }
}

fn read_text(elem: u16, value: &[u8]) -> Result<String, CommandError> {
    if value.len() > 1024 {
        return Err(CommandError::BadLength {
            tag: elem,
            len: value.len() as u32,
        });
    }
    let s = std::str::from_utf8(value).map_err(|_| CommandError::BadText(elem))?;
    Ok(s.trim_end_matches(['\0', ' ']).trim_start().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_store_request_round_trips() {
        let rq = Command::c_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", Priority::High);
        let bytes = rq.encode();
        assert_eq!(Command::decode(&bytes).unwrap(), rq);
    }

    #[test]
    fn response_round_trips_with_odd_length_uid_and_comment() {
        let rq = Command::c_store_rq(9, "1.2.840.10008.5.1.4.1.1.1", "1.2.3", Priority::Medium);
        let rsp = rq.response(0xA700).with_error_comment("disk full");
        let back = Command::decode(&rsp.encode()).unwrap();
        assert_eq!(back.field, CommandField::CStoreRsp);
        assert_eq!(back.responding_to, Some(9));
        assert_eq!(back.status, Some(0xA700));
        assert_eq!(back.affected_sop_instance.as_deref(), Some("1.2.3"));
        assert_eq!(back.error_comment.as_deref(), Some("disk full"));
        assert!(!back.has_dataset);
    }

    #[test]
    fn group_length_matches_body() {
        let bytes = Command::c_echo_rq(1).encode();
        let declared = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(declared, bytes.len() - 12);
    }

    #[test]
    fn echo_request_says_no_dataset_follows() {
        // PS3.7 §E.1: (0000,0800) US 0x0101 means "no data set"; it is the last element here.
        let bytes = Command::c_echo_rq(1).encode();
        let expected_tail: &[u8] = &[0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
        assert!(bytes.ends_with(expected_tail), "{bytes:02X?}");
    }

    #[test]
    fn truncated_and_foreign_inputs_are_errors_not_panics() {
        let bytes = Command::c_store_rq(1, "1.2", "1.2.3", Priority::Low).encode();
        for cut in 0..bytes.len() {
            let r = Command::decode(&bytes[..cut]);
            if cut == 0 {
                assert_eq!(r, Err(CommandError::MissingCommandField));
            } else if r.is_ok() {
                // A cut exactly at an element boundary is a shorter, valid set.
                assert!(bytes[..cut].len() >= 8);
            }
        }
        let mut foreign = bytes.clone();
        foreign[0] = 0x08;
        assert!(matches!(
            Command::decode(&foreign),
            Err(CommandError::NotCommandGroup(8, 0))
        ));
        let mut huge = bytes;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Command::decode(&huge).is_err());
    }

    #[test]
    fn missing_command_field_is_reported() {
        let mut body = Vec::new();
        put_u16(&mut body, TAG_MESSAGE_ID, 3);
        assert_eq!(
            Command::decode(&body),
            Err(CommandError::MissingCommandField)
        );
    }
}
