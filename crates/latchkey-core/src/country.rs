//! Country codes for the network rules of a tenant policy: ISO 3166-1 alpha-2, as a
//! GeoIP database reports where an address is.
//!
//! Policy:
//! - **Only assigned codes.** A code outside [`ASSIGNED`] (a typo, a reserved or
//!   user-assigned code such as `XK` or `EU`) is refused, so a rule can never name a
//!   country no database will report.
//! - **Uppercase only.** `de` is refused with an error that shows `DE`: codes are
//!   written one way everywhere, in policies, audit events and logs.
//! - **Two bytes.** A [`CountryCode`] is `Copy` and compares as its bytes, so a policy's
//!   country lists are cheap to hold and to search.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::ids::FieldError;

/// An assigned ISO 3166-1 alpha-2 country code, uppercase, e.g. `DE`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Accepts exactly the assigned codes in [`ASSIGNED`], in uppercase.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let bytes: [u8; 2] = match text.as_bytes().try_into() {
            Ok(bytes) => bytes,
            Err(_) => return Err(not_a_code(text)),
        };
        if ASSIGNED.binary_search(&bytes).is_ok() {
            return Ok(Self(bytes));
        }
        let upper = bytes.map(|b| b.to_ascii_uppercase());
        if upper != bytes && ASSIGNED.binary_search(&upper).is_ok() {
            let upper = String::from_utf8_lossy(&upper);
            return Err(FieldError(format!(
                "`{text}` must be written in uppercase: `{upper}`"
            )));
        }
        Err(not_a_code(text))
    }

    /// The code as text, e.g. `DE`.
    pub fn as_str(&self) -> &str {
        // Every stored code comes from `ASSIGNED`, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

fn not_a_code(text: &str) -> FieldError {
    FieldError(format!(
        "`{text}` is not an assigned ISO 3166-1 alpha-2 country code (two uppercase letters, e.g. `DE`)"
    ))
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(e.0))
    }
}

/// The 249 codes ISO 3166-1 assigns today, sorted (for a binary search).
pub const ASSIGNED: [[u8; 2]; 249] = [
    *b"AD", *b"AE", *b"AF", *b"AG", *b"AI", *b"AL", *b"AM", *b"AO", *b"AQ", *b"AR", *b"AS", *b"AT",
    *b"AU", *b"AW", *b"AX", *b"AZ", *b"BA", *b"BB", *b"BD", *b"BE", *b"BF", *b"BG", *b"BH", *b"BI",
    *b"BJ", *b"BL", *b"BM", *b"BN", *b"BO", *b"BQ", *b"BR", *b"BS", *b"BT", *b"BV", *b"BW", *b"BY",
    *b"BZ", *b"CA", *b"CC", *b"CD", *b"CF", *b"CG", *b"CH", *b"CI", *b"CK", *b"CL", *b"CM", *b"CN",
    *b"CO", *b"CR", *b"CU", *b"CV", *b"CW", *b"CX", *b"CY", *b"CZ", *b"DE", *b"DJ", *b"DK", *b"DM",
    *b"DO", *b"DZ", *b"EC", *b"EE", *b"EG", *b"EH", *b"ER", *b"ES", *b"ET", *b"FI", *b"FJ", *b"FK",
    *b"FM", *b"FO", *b"FR", *b"GA", *b"GB", *b"GD", *b"GE", *b"GF", *b"GG", *b"GH", *b"GI", *b"GL",
    *b"GM", *b"GN", *b"GP", *b"GQ", *b"GR", *b"GS", *b"GT", *b"GU", *b"GW", *b"GY", *b"HK", *b"HM",
    *b"HN", *b"HR", *b"HT", *b"HU", *b"ID", *b"IE", *b"IL", *b"IM", *b"IN", *b"IO", *b"IQ", *b"IR",
    *b"IS", *b"IT", *b"JE", *b"JM", *b"JO", *b"JP", *b"KE", *b"KG", *b"KH", *b"KI", *b"KM", *b"KN",
    *b"KP", *b"KR", *b"KW", *b"KY", *b"KZ", *b"LA", *b"LB", *b"LC", *b"LI", *b"LK", *b"LR", *b"LS",
    *b"LT", *b"LU", *b"LV", *b"LY", *b"MA", *b"MC", *b"MD", *b"ME", *b"MF", *b"MG", *b"MH", *b"MK",
    *b"ML", *b"MM", *b"MN", *b"MO", *b"MP", *b"MQ", *b"MR", *b"MS", *b"MT", *b"MU", *b"MV", *b"MW",
    *b"MX", *b"MY", *b"MZ", *b"NA", *b"NC", *b"NE", *b"NF", *b"NG", *b"NI", *b"NL", *b"NO", *b"NP",
    *b"NR", *b"NU", *b"NZ", *b"OM", *b"PA", *b"PE", *b"PF", *b"PG", *b"PH", *b"PK", *b"PL", *b"PM",
    *b"PN", *b"PR", *b"PS", *b"PT", *b"PW", *b"PY", *b"QA", *b"RE", *b"RO", *b"RS", *b"RU", *b"RW",
    *b"SA", *b"SB", *b"SC", *b"SD", *b"SE", *b"SG", *b"SH", *b"SI", *b"SJ", *b"SK", *b"SL", *b"SM",
    *b"SN", *b"SO", *b"SR", *b"SS", *b"ST", *b"SV", *b"SX", *b"SY", *b"SZ", *b"TC", *b"TD", *b"TF",
    *b"TG", *b"TH", *b"TJ", *b"TK", *b"TL", *b"TM", *b"TN", *b"TO", *b"TR", *b"TT", *b"TV", *b"TW",
    *b"TZ", *b"UA", *b"UG", *b"UM", *b"US", *b"UY", *b"UZ", *b"VA", *b"VC", *b"VE", *b"VG", *b"VI",
    *b"VN", *b"VU", *b"WF", *b"WS", *b"YE", *b"YT", *b"ZA", *b"ZM", *b"ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_duplicates_and_uppercase() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert!(ASSIGNED.iter().flatten().all(u8::is_ascii_uppercase));
    }

    #[test]
    fn every_assigned_code_parses_and_prints_back() {
        for bytes in ASSIGNED {
            let text = std::str::from_utf8(&bytes).unwrap_or_default();
            let code = CountryCode::parse(text).map_err(|e| e.0);
            assert_eq!(code.map(|c| c.to_string()), Ok(text.to_owned()));
        }
    }

    #[test]
    fn common_codes_parse() {
        for text in ["DE", "US", "GB", "FR", "JP", "SS", "BQ", "AX", "ZW"] {
            assert_eq!(
                CountryCode::parse(text).map(|c| c.as_str().to_owned()),
                Ok(text.into())
            );
        }
    }

    #[test]
    fn unassigned_reserved_and_malformed_codes_are_refused() {
        for text in [
            "", "D", "DEU", "XK", "EU", "UK", "ZZ", "AA", "QQ", "AN", "YU", "D1", "1D", "DE ",
            " DE", "ÄÖ", "D\u{0}",
        ] {
            let error = CountryCode::parse(text).map(|c| c.to_string());
            assert_eq!(
                error,
                Err(FieldError(format!(
                    "`{text}` is not an assigned ISO 3166-1 alpha-2 country code (two uppercase letters, e.g. `DE`)"
                ))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn lowercase_is_refused_with_the_uppercase_spelling() {
        assert_eq!(
            CountryCode::parse("de"),
            Err(FieldError("`de` must be written in uppercase: `DE`".into()))
        );
        assert_eq!(
            CountryCode::parse("Us"),
            Err(FieldError("`Us` must be written in uppercase: `US`".into()))
        );
        // Lowercase of a code that is not assigned says only that.
        assert!(CountryCode::parse("xk").is_err_and(|e| e.0.contains("not an assigned")));
    }

    #[test]
    fn serde_round_trips_as_the_string_and_refuses_unknown_codes() {
        let code = CountryCode::parse("NL").map_err(|e| e.0);
        assert_eq!(
            code.map(|c| serde_json::to_string(&c).map_err(|e| e.to_string())),
            Ok(Ok("\"NL\"".to_owned()))
        );
        let back: Result<Vec<CountryCode>, _> = serde_json::from_str(r#"["NL","DE"]"#);
        assert_eq!(
            back.map(|v| v.iter().map(CountryCode::to_string).collect::<Vec<_>>())
                .map_err(|e| e.to_string()),
            Ok(vec!["NL".to_owned(), "DE".to_owned()])
        );
        let bad = serde_json::from_str::<CountryCode>("\"XX\"").map_err(|e| e.to_string());
        assert!(
            bad.as_ref().is_err_and(
                |e| e.starts_with("`XX` is not an assigned ISO 3166-1 alpha-2 country code")
            ),
            "{bad:?}"
        );
        let lower = serde_json::from_str::<CountryCode>("\"fr\"").map_err(|e| e.to_string());
        assert!(
            lower
                .as_ref()
                .is_err_and(|e| e.starts_with("`fr` must be written in uppercase: `FR`")),
            "{lower:?}"
        );
        assert!(serde_json::from_str::<CountryCode>("42").is_err());
    }

    #[test]
    fn codes_order_and_hash_as_their_text() {
        let mut codes: Vec<CountryCode> = ["US", "DE", "AT"]
            .iter()
            .filter_map(|t| CountryCode::parse(t).ok())
            .collect();
        codes.sort();
        let texts: Vec<&str> = codes.iter().map(CountryCode::as_str).collect();
        assert_eq!(texts, ["AT", "DE", "US"]);
        let set: std::collections::HashSet<CountryCode> = codes.iter().copied().collect();
        assert!(CountryCode::parse("DE").is_ok_and(|de| set.contains(&de)));
        assert_eq!(std::mem::size_of::<CountryCode>(), 2);
    }
}
