//! Hexadecimal text: the one encoder and decoder for everything DOL writes
//! as hex (key material, digests, ids, sealed credentials) and the one digit
//! reader for `%XX` escapes.

/// The lowercase digits, by value.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hexadecimal, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    encode_into(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` as lowercase hexadecimal, two digits a byte.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// The value of one hexadecimal digit (either case); `None` for any other byte.
pub fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte two hexadecimal digits (either case) spell; `None` unless both are digits.
pub fn byte(high: u8, low: u8) -> Option<u8> {
    Some((digit(high)? << 4) | digit(low)?)
}

/// Decodes hexadecimal text (either case, two digits a byte); `None` for an
/// odd length or any character that is not a hexadecimal digit (no sign, no
/// spaces, no `0x`).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| byte(pair[0], pair[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_lowercase_two_digits_a_byte() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let mut out = String::from("id_");
        encode_into(&mut out, &[0xde, 0xad]);
        assert_eq!(out, "id_dead");
    }

    #[test]
    fn decodes_either_case() {
        assert_eq!(decode("000fA5fF"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
    }

    #[test]
    fn refuses_what_is_not_hex() {
        for bad in ["0", "abc", "0g", "+f", "-1", " 1", "0x00", "é1", "ü"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(digit(b'g'), None);
        assert_eq!(byte(b'f', b'+'), None);
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), bytes.len() * 2);
            prop_assert_eq!(decode(&text), Some(bytes.clone()));
            prop_assert_eq!(decode(&text.to_uppercase()), Some(bytes));
        }

        #[test]
        fn decode_never_panics_and_accepts_only_hex(text in "\\PC{0,16}") {
            let all_hex = text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit());
            prop_assert_eq!(decode(&text).is_some(), all_hex);
        }
    }
}
