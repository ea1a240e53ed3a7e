//! Character classes the pre-tokenizers need (letter, number, punctuation, symbol, mark,
//! whitespace, by Unicode general category as llama.cpp's tables define them) and the GPT-2
//! byte-to-character map of byte-level BPE. Kept in one place so every tokenizer agrees.

use std::sync::OnceLock;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// Category bits of one code point.
pub(crate) const LETTER: u8 = 1;
pub(crate) const NUMBER: u8 = 2;
pub(crate) const PUNCT: u8 = 4;
pub(crate) const SYMBOL: u8 = 8;
pub(crate) const MARK: u8 = 16;
pub(crate) const WS: u8 = 32;
/// Categories Cc, Cf, Co and Cs (llama.cpp's `\p{C}` flag; unassigned code points are not).
pub(crate) const CONTROL: u8 = 64;

fn compute(c: char) -> u8 {
    let cat = match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => LETTER,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => NUMBER,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => PUNCT,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => SYMBOL,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => MARK,
        G::Control | G::Format | G::PrivateUse | G::Surrogate => CONTROL,
        _ => 0,
    };
    if c.is_whitespace() {
        cat | WS
    } else {
        cat
    }
}

fn bmp_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0u32..0x10000)
            .map(|u| char::from_u32(u).map_or(0, compute))
            .collect()
    })
}

/// The category bits of `c`.
#[inline]
pub(crate) fn flags(c: char) -> u8 {
    let u = c as u32;
    if u < 0x10000 {
        bmp_table().get(u as usize).copied().unwrap_or(0)
    } else {
        compute(c)
    }
}

#[cfg(test)]
pub(crate) fn is_letter(c: char) -> bool {
    flags(c) & LETTER != 0
}
#[cfg(test)]
pub(crate) fn is_number(c: char) -> bool {
    flags(c) & NUMBER != 0
}
#[cfg(test)]
pub(crate) fn is_ws(c: char) -> bool {
    flags(c) & WS != 0
}

/// GPT-2's map from bytes to printable characters, used by byte-level BPE vocabularies.
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let cp = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            map[b as usize] = char::from_u32(cp).unwrap_or('\u{FFFD}');
        }
        map
    })
}

/// Inverse of [`byte_to_char`]: the byte a byte-level character stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 0x100 {
        let b = u as u8;
        if (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b) {
            return Some(b);
        }
        return None;
    }
    static INV: OnceLock<Vec<(char, u8)>> = OnceLock::new();
    let inv = INV.get_or_init(|| {
        byte_to_char()
            .iter()
            .enumerate()
            .filter(|(_, &c)| c as u32 >= 0x100)
            .map(|(b, &c)| (c, b as u8))
            .collect()
    });
    inv.iter().find(|(ch, _)| *ch == c).map(|&(_, b)| b)
}

/// Map raw bytes to the byte-level alphabet (appending to `out`).
pub(crate) fn bytes_to_bytelevel(bytes: &[u8], out: &mut String) {
    let map = byte_to_char();
    for &b in bytes {
        out.push(map[b as usize]);
    }
}

/// Map a byte-level string back to raw bytes; `None` if a character is outside the alphabet.
pub(crate) fn bytelevel_to_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char()[b as usize]), Some(b));
        }
        assert_eq!(byte_to_char()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_char()[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn classes() {
        assert!(is_letter('a') && is_letter('é') && is_letter('中'));
        assert!(is_number('7') && is_number('²'));
        assert!(is_ws(' ') && is_ws('\u{3000}') && is_ws('\u{a0}'));
        assert!(!is_ws('\u{1c}'));
        assert_eq!(flags('\u{1c}'), CONTROL);
        assert_eq!(flags('\n'), CONTROL | WS);
        assert_eq!(flags('\u{200b}'), CONTROL);
        assert_eq!(flags('~'), SYMBOL);
        assert_eq!(flags('-'), PUNCT);
        assert_eq!(flags('\u{301}'), MARK);
    }
}
