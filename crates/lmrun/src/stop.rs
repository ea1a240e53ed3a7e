//! Stop strings over streamed text. Generated text reaches the caller piece by piece; a stop
//! string may span several tokens, and the caller must never see a prefix of a stop string that
//! is later withheld. [`StopText`] keeps the text, sends what can no longer become part of a
//! stop string, holds back the longest tail that still could, and cuts the text at the first
//! stop string. Used by the runner's decode loop and the server's slots alike.

/// Streamed text checked against stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopText {
    stops: Vec<String>,
    text: String,
    sent: usize,
    stopped: bool,
}

impl StopText {
    /// Checks against `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopText {
        StopText {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    /// Add a decoded piece. Returns the text that may be shown now (possibly empty) and
    /// whether a stop string has been found (the text then ends before it; later pieces are
    /// ignored).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text.push_str(piece);
        // Text before `sent` held no start of a stop string (it would have been held back),
        // so a stop string can only begin at or after it.
        let found = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[self.sent..]
                    .find(s.as_str())
                    .map(|i| i + self.sent)
            })
            .min();
        if let Some(at) = found {
            let out = self.text[self.sent..at].to_string();
            self.text.truncate(at);
            self.sent = at;
            self.stopped = true;
            return (out, true);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| held_tail(&self.text[self.sent..], s))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        (out, false)
    }

    /// The generation ended without a stop string: the held-back tail (after adding `tail`,
    /// the stream decoder's last bytes), and whether `tail` completed a stop string.
    pub fn finish(&mut self, tail: &str) -> (String, bool) {
        let (mut out, stopped) = self.push(tail);
        if !stopped {
            out.push_str(&self.text[self.sent..]);
            self.sent = self.text.len();
        }
        (out, stopped)
    }

    /// The text so far (up to the stop string when one was found).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a stop string was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (held back in case
/// the next tokens complete the stop string), at a character boundary.
pub fn held_tail(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.as_bytes().starts_with(&text.as_bytes()[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut st = StopText::new(&stops);
        let mut shown = Vec::new();
        for p in pieces {
            let (out, stop) = st.push(p);
            shown.push(out);
            if stop {
                return (shown, st.text().to_string(), true);
            }
        }
        let (out, stop) = st.finish("");
        shown.push(out);
        (shown, st.text().to_string(), stop)
    }

    #[test]
    fn a_stop_string_across_pieces_is_never_shown() {
        let (shown, text, stop) = stream(&["</answer>"], &["42 ", "</", "ans", "wer> more"]);
        assert!(stop);
        assert_eq!(text, "42 ");
        assert_eq!(shown.concat(), "42 ");
        // "</" and "ans" were held back, not shown and then taken back
        assert_eq!(shown, vec!["42 ", "", "", ""]);
    }

    #[test]
    fn a_held_prefix_that_does_not_become_a_stop_is_released() {
        let (shown, text, stop) = stream(&["STOP"], &["a S", "TO", "x", "y"]);
        assert!(!stop);
        assert_eq!(text, "a STOxy");
        assert_eq!(shown, vec!["a ", "", "STOx", "y", ""]);
        let (shown, _, _) = stream(&["STOP"], &["a ST"]);
        assert_eq!(shown.concat(), "a ST", "the tail is released at the end");
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_multibyte_text_is_cut_on_boundaries() {
        let (_, text, stop) = stream(&["b", "é"], &["aébc"]);
        assert!(stop);
        assert_eq!(text, "a");
        assert_eq!(held_tail("é", "\u{e9}x"), 2);
        assert_eq!(held_tail("hello wor", "world"), 3);
        assert_eq!(held_tail("hello", "world"), 0);
        assert_eq!(held_tail("", "x"), 0);
        let (shown, text, stop) = stream(&[""], &["abc"]);
        assert!(!stop);
        assert_eq!((shown.concat(), text), ("abc".into(), "abc".into()));
    }
}
