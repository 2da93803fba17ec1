//! RFC 5424 syslog lines carrying audit messages, and RFC 5425's framing of
//! them on a TLS connection.

use super::Outcome;

/// RFC 5424 facility 10: security/authorization messages.
const FACILITY_AUTHPRIV: u8 = 10;
pub const APP_NAME: &str = "firstlookd";
/// The MSGID IHE ATNA gives syslog messages that carry audit XML.
pub const MSGID: &str = "IHE+RFC-3881";

/// Severity by outcome: notice for success, warning for a minor failure,
/// error for a serious one.
fn severity(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Success => 5,
        Outcome::MinorFailure(_) => 4,
        Outcome::SeriousFailure(_) => 3,
    }
}

/// One syslog message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
pub fn line(outcome: &Outcome, timestamp: &str, hostname: &str, pid: u32, xml: &str) -> String {
    let pri = FACILITY_AUTHPRIV * 8 + severity(outcome);
    format!(
        "<{pri}>1 {timestamp} {} {APP_NAME} {pid} {MSGID} - <?xml version=\"1.0\" encoding=\"UTF-8\"?>{xml}",
        header_field(hostname, 255)
    )
}

/// A header field: printable US-ASCII only, bounded, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

/// RFC 5425 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(line: &str) -> Vec<u8> {
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

/// `ms` since the epoch as an RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = firstlook_kernels::dates::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Standard base64 with padding (xs:base64Binary).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_786_123_004), "2000-02-29T01:02:03.004Z");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn lines_have_the_rfc5424_header_and_frames_count_octets() {
        let l = line(
            &Outcome::MinorFailure("x".into()),
            "2000-02-29T01:02:03.004Z",
            "box one\u{e9}",
            42,
            "<AuditMessage/>",
        );
        assert_eq!(
            l,
            "<84>1 2000-02-29T01:02:03.004Z boxone firstlookd 42 IHE+RFC-3881 - \
             <?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage/>"
        );
        assert!(line(&Outcome::Success, "t", "", 1, "").starts_with("<85>1 t - "));
        let f = frame("é");
        assert_eq!(f, b"2 \xc3\xa9");
    }
}
