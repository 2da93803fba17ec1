//! Turns P-DATA values into DIMSE messages: a command set is gathered whole
//! (it is small), a data set is passed on fragment by fragment so that it can
//! be streamed to disk while it is still arriving.

use super::command::{Command, CommandError};

/// Command sets larger than this are refused; real ones are a few hundred bytes.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// What one P-DATA value contributed.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment<'a> {
    /// A command set is complete. Data fragments follow if `command.has_dataset`.
    Command { context_id: u8, command: Command },
    /// Part of the data set of the current message.
    Data {
        context_id: u8,
        bytes: &'a [u8],
        last: bool,
    },
    /// A command fragment that is not the last one: nothing to act on yet.
    Pending,
}

/// A protocol violation in the P-DATA stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A data fragment came without a command announcing a data set.
    #[error("data set fragment on context {0} without a command announcing it")]
    UnexpectedData(u8),
    /// A command fragment arrived while a data set was still incomplete.
    #[error("command fragment on context {0} while a data set is incomplete")]
    CommandInsideData(u8),
    /// The fragments of one message switched presentation context.
    #[error("fragment on context {got} inside a message on context {expected}")]
    ContextChanged { expected: u8, got: u8 },
    /// The command set grew past the limit.
    #[error("command set larger than {MAX_COMMAND_BYTES} bytes")]
    CommandTooLarge,
    /// The command set could not be decoded.
    #[error("malformed command set: {0}")]
    Command(#[from] CommandError),
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    Command {
        context_id: u8,
        bytes: Vec<u8>,
    },
    Data {
        context_id: u8,
    },
}

/// Per-association reassembly state.
#[derive(Debug, Default)]
pub struct Reassembler {
    state: State,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between messages: no command or data set partly received.
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// True while a data set is partly received.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data { .. })
    }

    /// Feeds one P-DATA value (context id, message control header bits, value).
    pub fn push<'a>(
        &mut self,
        context_id: u8,
        is_command: bool,
        is_last: bool,
        bytes: &'a [u8],
    ) -> Result<Fragment<'a>, ReassemblyError> {
        match (&mut self.state, is_command) {
            (State::Idle, true) => {
                if bytes.len() > MAX_COMMAND_BYTES {
                    return Err(ReassemblyError::CommandTooLarge);
                }
                self.state = State::Command {
                    context_id,
                    bytes: bytes.to_vec(),
                };
            }
            (
                State::Command {
                    context_id: id,
                    bytes: buf,
                },
                true,
            ) => {
                if *id != context_id {
                    return Err(ReassemblyError::ContextChanged {
                        expected: *id,
                        got: context_id,
                    });
                }
                if buf.len() + bytes.len() > MAX_COMMAND_BYTES {
                    return Err(ReassemblyError::CommandTooLarge);
                }
                buf.extend_from_slice(bytes);
            }
            (State::Idle, false) | (State::Command { .. }, false) => {
                return Err(ReassemblyError::UnexpectedData(context_id));
            }
            (State::Data { context_id: id }, false) => {
                if *id != context_id {
                    return Err(ReassemblyError::ContextChanged {
                        expected: *id,
                        got: context_id,
                    });
                }
                if is_last {
                    self.state = State::Idle;
                }
                return Ok(Fragment::Data {
                    context_id,
                    bytes,
                    last: is_last,
                });
            }
            (State::Data { .. }, true) => {
                return Err(ReassemblyError::CommandInsideData(context_id));
            }
        }
        if !is_last {
            return Ok(Fragment::Pending);
        }
        let State::Command { context_id, bytes } = std::mem::take(&mut self.state) else {
            unreachable!("a command fragment was just stored");
        };
        let command = Command::decode(&bytes)?;
        if command.has_dataset {
            self.state = State::Data { context_id };
        }
        Ok(Fragment::Command {
            context_id,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::{CommandField, Priority};

    #[test]
    fn command_split_over_many_fragments_is_reassembled() {
        let rq = Command::c_store_rq(
            5,
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4.5",
            Priority::Medium,
        );
        let bytes = rq.encode();
        for chunk in [1, 2, 3, 7, 16, bytes.len()] {
            let mut r = Reassembler::new();
            let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
            for (i, p) in pieces.iter().enumerate() {
                let out = r.push(3, true, i + 1 == pieces.len(), p).unwrap();
                if i + 1 < pieces.len() {
                    assert_eq!(out, Fragment::Pending);
                } else {
                    assert_eq!(
                        out,
                        Fragment::Command {
                            context_id: 3,
                            command: rq.clone()
                        }
                    );
                }
            }
            assert!(r.in_data());
            let data = r.push(3, false, false, b"ab").unwrap();
            assert_eq!(
                data,
                Fragment::Data {
                    context_id: 3,
                    bytes: b"ab",
                    last: false
                }
            );
            r.push(3, false, true, b"cd").unwrap();
            assert!(!r.in_data());
        }
    }

    #[test]
    fn echo_has_no_data_phase() {
        let mut r = Reassembler::new();
        let echo = Command::c_echo_rq(1).encode();
        let out = r.push(1, true, true, &echo).unwrap();
        assert!(
            matches!(out, Fragment::Command { command, .. } if command.field == CommandField::CEchoRq)
        );
        assert!(!r.in_data());
        assert_eq!(
            r.push(1, false, true, b"x"),
            Err(ReassemblyError::UnexpectedData(1))
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        let rq = Command::c_store_rq(5, "1.2", "1.3", Priority::Medium).encode();
        let mut r = Reassembler::new();
        r.push(1, true, false, &rq[..10]).unwrap();
        assert_eq!(
            r.push(3, true, true, &rq[10..]),
            Err(ReassemblyError::ContextChanged {
                expected: 1,
                got: 3
            })
        );

        let mut r = Reassembler::new();
        r.push(1, true, true, &rq).unwrap();
        assert_eq!(
            r.push(1, true, true, &rq),
            Err(ReassemblyError::CommandInsideData(1))
        );

        let mut r = Reassembler::new();
        let big = vec![0u8; MAX_COMMAND_BYTES + 1];
        assert_eq!(
            r.push(1, true, false, &big),
            Err(ReassemblyError::CommandTooLarge)
        );
    }
}
