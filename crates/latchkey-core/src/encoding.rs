//! The textual encodings of the token wire format (docs/API.md, "Tokens"): fixed-width
//! base62 (`0-9A-Za-z`, most significant digit first, left-padded with `0`) and the IEEE
//! CRC32 that ends every secret so that typos and truncations are caught before any
//! store lookup.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes a big-endian unsigned integer as exactly `width` base62 digits.
///
/// Returns `None` when the value does not fit in `width` digits.
pub fn base62_encode(bytes: &[u8], width: usize) -> Option<String> {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let accumulator = (remainder << 8) | u32::from(*byte);
            *byte = (accumulator / 62) as u8;
            remainder = accumulator % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    if number.iter().any(|&b| b != 0) {
        return None;
    }
    String::from_utf8(digits).ok()
}

/// Decodes base62 digits into a big-endian unsigned integer of `len` bytes.
///
/// Returns `None` on a character outside the alphabet or a value wider than `len` bytes.
pub fn base62_decode(text: &str, len: usize) -> Option<Vec<u8>> {
    // The number in 32-bit limbs, least significant first: a digit costs one
    // multiply-add per four bytes rather than per byte (a secret is parsed on every
    // request that presents one).
    let mut limbs = vec![0u32; len.div_ceil(4)];
    for character in text.bytes() {
        let mut carry = u64::from(digit_value(character)?);
        for limb in &mut limbs {
            let accumulator = u64::from(*limb) * 62 + carry;
            *limb = accumulator as u32;
            carry = accumulator >> 32;
        }
        if carry != 0 {
            return None;
        }
    }
    let bytes: Vec<u8> = limbs
        .iter()
        .rev()
        .flat_map(|limb| limb.to_be_bytes())
        .collect();
    // The limbs may hold up to three bytes more than `len`; they must be zero.
    let (high, number) = bytes.split_at(bytes.len() - len);
    if high.iter().any(|&b| b != 0) {
        return None;
    }
    Some(number.to_vec())
}

/// Decodes base62 digits into an unsigned integer of at most 128 bits: what
/// [`base62_decode`] gives for 16 bytes, read as big-endian, in `u128` arithmetic, one
/// multiply-add a digit. A secret's id is decoded this way on every request that
/// presents one.
///
/// Returns `None` on a character outside the alphabet or a value of more than 128 bits.
pub fn base62_decode_u128(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |value, character| {
        value
            .checked_mul(62)?
            .checked_add(u128::from(digit_value(character)?))
    })
}

fn digit_value(character: u8) -> Option<u8> {
    match character {
        b'0'..=b'9' => Some(character - b'0'),
        b'A'..=b'Z' => Some(character - b'A' + 10),
        b'a'..=b'z' => Some(character - b'a' + 36),
        _ => None,
    }
}

/// True when every character is a base62 digit.
pub fn is_base62(text: &str) -> bool {
    text.bytes().all(|c| digit_value(c).is_some())
}

/// The IEEE CRC32 (zlib's) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc32_table();
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut value = i as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                0xEDB8_8320 ^ (value >> 1)
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[i] = value;
        i += 1;
    }
    table
}

/// Whether `sum` is [`checksum`]`(body)`: the six digits read as a number and compared
/// with the CRC, which a six-digit encoding determines, rather than the CRC encoded.
pub fn checksum_matches(body: &str, sum: &str) -> bool {
    sum.len() == CHECKSUM_CHARS
        && base62_decode_u128(sum) == Some(u128::from(crc32(body.as_bytes())))
}

/// The checksum's width in base62 digits, at the end of every secret.
pub const CHECKSUM_CHARS: usize = 6;

/// The six base62 checksum characters that end a secret whose other characters are `body`.
pub fn checksum(body: &str) -> String {
    // 62^6 > 2^32, so six digits always hold the CRC; the encode cannot fail.
    base62_encode(&crc32(body.as_bytes()).to_be_bytes(), CHECKSUM_CHARS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_zlib_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_round_trips_and_pads() {
        assert_eq!(base62_encode(&[0], 3).as_deref(), Some("000"));
        assert_eq!(base62_encode(&[61], 2).as_deref(), Some("0z"));
        assert_eq!(base62_encode(&[0, 62], 2).as_deref(), Some("10"));
        let max = [0xffu8; 32];
        let text = base62_encode(&max, 43).unwrap();
        assert_eq!(text.len(), 43);
        assert_eq!(base62_decode(&text, 32).unwrap(), max.to_vec());
    }

    /// Base62 decoded a byte at a time: the definition the limbs must agree with.
    fn base62_decode_bytewise(text: &str, len: usize) -> Option<Vec<u8>> {
        let mut number = vec![0u8; len];
        for character in text.bytes() {
            let mut carry = u32::from(digit_value(character)?);
            for byte in number.iter_mut().rev() {
                let accumulator = u32::from(*byte) * 62 + carry;
                *byte = (accumulator & 0xff) as u8;
                carry = accumulator >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(number)
    }

    proptest::proptest! {
        #[test]
        fn base62_decodes_as_the_bytewise_definition(
            text in "[0-9A-Za-z]{0,48}|[0-9A-Za-z_-]{0,8}",
            len in 0usize..40,
        ) {
            proptest::prop_assert_eq!(base62_decode(&text, len), base62_decode_bytewise(&text, len));
        }

        #[test]
        fn base62_decodes_what_it_encodes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let text = base62_encode(&bytes, 60).unwrap();
            proptest::prop_assert_eq!(base62_decode(&text, bytes.len()), Some(bytes));
        }
    }

    #[test]
    fn base62_rejects_overflow_and_foreign_characters() {
        assert_eq!(base62_encode(&[1, 0], 1), None);
        assert_eq!(base62_decode("zz", 1), None);
        assert_eq!(base62_decode("a-b", 4), None);
    }

    #[test]
    fn checksum_is_six_characters() {
        assert_eq!(checksum("lk_sk_abc").len(), 6);
        assert_eq!(checksum("").as_str(), "000000");
    }

    proptest::proptest! {
        #[test]
        fn a_u128_decodes_as_sixteen_bytes_do(text in "[0-9A-Za-z]{0,24}") {
            let bytes = base62_decode(&text, 16);
            let number = bytes.map(|b| u128::from_be_bytes(b.try_into().unwrap()));
            proptest::prop_assert_eq!(base62_decode_u128(&text), number);
        }

        #[test]
        fn a_checksum_matches_exactly_when_it_is_the_encoded_one(
            body in "[ -~]{0,40}",
            other in "[0-9A-Za-z]{0,8}",
        ) {
            let sum = checksum(&body);
            proptest::prop_assert!(checksum_matches(&body, &sum));
            proptest::prop_assert_eq!(checksum_matches(&body, &other), other == sum);
        }
    }
}
