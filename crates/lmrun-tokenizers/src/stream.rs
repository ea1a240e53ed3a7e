//! Streaming detokenization. Tokens split characters (byte fallback, byte-level BPE), so a
//! runner that prints each token as it comes would print broken UTF-8; this module holds the
//! incomplete tail back until the character is whole.

use crate::{Result, TokenId, Tokenizer};

/// Turns a stream of token ids into text chunks that are always whole UTF-8.
///
/// Bytes that can never become valid UTF-8 are replaced with U+FFFD as soon as that is certain;
/// an incomplete character at the end is held until the next token or [`StreamDecoder::finish`].
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    strip_space: bool,
    seen_text: bool,
}

impl StreamDecoder {
    /// A new decoder. `strip_leading_space` drops one space at the start of the first text
    /// token (see [`Tokenizer::strips_leading_space`]).
    pub fn new(strip_leading_space: bool) -> Self {
        StreamDecoder {
            pending: Vec::new(),
            strip_space: strip_leading_space,
            seen_text: false,
        }
    }

    /// A decoder set up for `tok`.
    pub fn for_tokenizer<T: Tokenizer + ?Sized>(tok: &T) -> Self {
        Self::new(tok.strips_leading_space())
    }

    /// Feed one token; returns the text that is now complete (possibly empty).
    pub fn push<T: Tokenizer + ?Sized>(
        &mut self,
        tok: &T,
        id: TokenId,
        render_special: bool,
    ) -> Result<String> {
        let bytes = tok.token_bytes(id, render_special)?;
        let mut bytes: &[u8] = &bytes;
        if !self.seen_text && !bytes.is_empty() && !tok.is_special(id) {
            if self.strip_space && bytes.first() == Some(&b' ') {
                bytes = &bytes[1..];
            }
            self.seen_text = true;
        }
        Ok(self.push_bytes(bytes))
    }

    /// Feed raw bytes; returns the text that is now complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // from_utf8 guarantees the prefix is valid.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..good]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                        None => {
                            // Incomplete character at the end: keep it for later.
                            self.pending.drain(..good);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// End of stream: whatever is still held back, with U+FFFD for an unfinished character.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Whether bytes of an unfinished character are being held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_chars() {
        let mut d = StreamDecoder::new(false);
        let e = "é😀".as_bytes();
        assert_eq!(d.push_bytes(&e[..1]), "");
        assert_eq!(d.push_bytes(&e[1..3]), "é");
        assert_eq!(d.push_bytes(&e[3..5]), "");
        assert_eq!(d.push_bytes(&e[5..]), "😀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn replaces_invalid_bytes() {
        let mut d = StreamDecoder::new(false);
        assert_eq!(d.push_bytes(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push_bytes(b"\xe2\x82"), "");
        assert_eq!(d.push_bytes(b"x"), "\u{FFFD}x");
        assert_eq!(d.push_bytes(b"\xe2"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
