/// A DIMSE status code (PS3.7 Annex C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

/// What a status means for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Warning,
    /// Worth retrying later: the peer lacked resources or was busy.
    Transient,
    /// The peer will never accept this instance as sent.
    Permanent,
    Pending,
    Cancel,
}

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    /// Refused: out of resources (our disk past the high watermark, or an IO failure).
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// Error: data set does not match SOP class.
    pub const DATASET_DOES_NOT_MATCH: Status = Status(0xA900);
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// Warning: coercion of data elements.
    pub const COERCION: Status = Status(0xB000);
    /// Failure: processing failure.
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    /// Failure: duplicate SOP instance.
    pub const DUPLICATE_INSTANCE: Status = Status(0x0111);
    /// Failure: no such SOP class.
    pub const NO_SUCH_SOP_CLASS: Status = Status(0x0118);
    /// Failure: unrecognised operation.
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);

    pub fn class(self) -> StatusClass {
        match self.0 {
            0x0000 => StatusClass::Success,
            0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => StatusClass::Warning,
            0xFF00 | 0xFF01 => StatusClass::Pending,
            0xFE00 => StatusClass::Cancel,
            // Out of resources, and the processing failure / busy family.
            0xA700..=0xA7FF | 0x0110 | 0x0213 | 0x0212 => StatusClass::Transient,
            _ => StatusClass::Permanent,
        }
    }

    pub fn is_ok(self) -> bool {
        matches!(self.class(), StatusClass::Success | StatusClass::Warning)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_per_part_7() {
        let table = [
            (0x0000, StatusClass::Success),
            (0xB000, StatusClass::Warning),
            (0xB007, StatusClass::Warning),
            (0x0001, StatusClass::Warning),
            (0xA700, StatusClass::Transient),
            (0xA7FF, StatusClass::Transient),
            (0x0110, StatusClass::Transient),
            (0xA900, StatusClass::Permanent),
            (0xC000, StatusClass::Permanent),
            (0xCFFF, StatusClass::Permanent),
            (0x0122, StatusClass::Permanent),
            (0x0211, StatusClass::Permanent),
            (0xFF00, StatusClass::Pending),
            (0xFE00, StatusClass::Cancel),
        ];
        for (code, class) in table {
            assert_eq!(Status(code).class(), class, "status {code:04X}");
        }
    }
}
