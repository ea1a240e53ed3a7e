//! Pre-tokenizers: the splits a byte-level BPE vocabulary expects before merging, chosen by
//! GGUF `tokenizer.ggml.pre`. Each one reproduces the regex list llama.cpp uses for that name
//! (including how its `std::regex` fallback sees Unicode categories), hand-written as matchers
//! so encoding stays fast and needs no regex engine. An unknown name is an error, not a guess.

use crate::unicode::{flags, LETTER, MARK, NUMBER, PUNCT, SYMBOL, WS};
use crate::TokenizerError;

/// Every `tokenizer.ggml.pre` value this crate understands.
pub const KNOWN_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "jina-v2-es",
    "jina-v2-de",
    "gigachat",
    "mpt",
    "olmo",
    "jais",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "hunyuan",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
    "deepseek-llm",
    "deepseek-v3",
    "deepseek-coder",
    "falcon",
    "qwen35",
    "gpt-4o",
    "llama4",
    "tekken",
];

/// One split stage; a pre-tokenizer is a list of stages applied in order, each refining the
/// pieces the previous one produced (llama.cpp's `regex_exprs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// The Llama 3 pattern; `max_digits` is 3 (`\p{N}{1,3}`) or 1 (Qwen2's `\p{N}`); with
    /// `marks`, letter runs also take combining marks (`[\p{L}\p{M}]+`, Qwen3.5).
    Llama3 { max_digits: usize, marks: bool },
    /// The GPT-4o / Tekken pattern as llama.cpp rewrites it (case classes by lookahead, so
    /// every non-ASCII letter counts as both cases): optional contractions, numbers in groups
    /// of up to `max_digits`.
    Gpt4o {
        contractions: bool,
        max_digits: usize,
    },
    /// Every character of the class alone (`\p{N}`, `[\r\n]`).
    Each(Class),
    /// Runs of the class (`X+`).
    Runs(Class),
    /// An optional whitespace then a run of the class (`\s?X+`).
    OptWsRuns(Class),
    /// Trailing whitespace of the piece (`\s+$`).
    TrailingWs,
    /// Groups of 1 to 3 numbers (`\p{N}{1,3}`).
    NumberGroups3,
    /// Exactly three ASCII digits (`[0-9][0-9][0-9]`).
    AsciiDigits3,
    /// DeepSeek-V3's main pattern.
    DeepseekV3,
}

/// Character classes used by the regex-derived stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Number,
    CrLf,
    /// `[\p{P}\$\+<=>\^~\|]` (the `default` pre-tokenizer's first pattern).
    DefaultPunct,
    /// `[\p{P}\$\+<=>\^~\|`]` (Falcon's first pattern: the default one plus the backtick).
    FalconPunct,
    /// `\p{L}` as llama.cpp's collapsed `std::regex` sees it.
    Letter,
    /// `\p{P}` as llama.cpp's collapsed `std::regex` sees it.
    Punct,
    DeepseekLetters,
    DeepseekPunct,
    DeepseekCjk,
    DeepseekV3Cjk,
}

/// Llama 3's stage (`\p{N}{1,3}`, letters without marks).
const LLAMA3: Stage = Stage::Llama3 {
    max_digits: 3,
    marks: false,
};

/// A pre-tokenizer for byte-level BPE, selected by GGUF `tokenizer.ggml.pre`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    name: String,
    stages: Vec<Stage>,
    /// Whether a word that is already a whole token skips merging (llama.cpp `ignore_merges`).
    pub(crate) ignore_merges: bool,
    /// Whether the model adds BOS by default when the GGUF does not say.
    pub(crate) default_add_bos: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value; `None` means the key is absent,
    /// which llama.cpp treats as `default`.
    pub fn from_gguf_pre(pre: Option<&str>) -> Result<Self, TokenizerError> {
        let name = pre.unwrap_or("default");
        let (stages, ignore_merges, default_add_bos) = match name {
            "default" => (
                vec![
                    Stage::Runs(Class::DefaultPunct),
                    Stage::Gpt2,
                    Stage::Runs(Class::Number),
                    Stage::AsciiDigits3,
                ],
                false,
                false,
            ),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de"
            | "gigachat" | "mpt" | "olmo" | "jais" => (vec![Stage::Gpt2], false, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (vec![LLAMA3], true, true),
            "dbrx" | "smaug-bpe" => (vec![LLAMA3], false, false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => (
                vec![Stage::Llama3 {
                    max_digits: 1,
                    marks: false,
                }],
                false,
                false,
            ),
            "qwen35" => (
                vec![Stage::Llama3 {
                    max_digits: 1,
                    marks: true,
                }],
                false,
                false,
            ),
            "gpt-4o" | "llama4" => (
                vec![Stage::Gpt4o {
                    contractions: true,
                    max_digits: 3,
                }],
                false,
                false,
            ),
            "tekken" => (
                vec![Stage::Gpt4o {
                    contractions: false,
                    max_digits: 1,
                }],
                true,
                true,
            ),
            "falcon" => (
                vec![
                    Stage::Runs(Class::FalconPunct),
                    Stage::Gpt2,
                    Stage::AsciiDigits3,
                ],
                false,
                false,
            ),
            "deepseek-coder" => (
                vec![
                    Stage::Each(Class::CrLf),
                    Stage::OptWsRuns(Class::Letter),
                    Stage::OptWsRuns(Class::Punct),
                    Stage::Runs(Class::DeepseekCjk),
                    Stage::Each(Class::Number),
                ],
                false,
                false,
            ),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (vec![Stage::Each(Class::Number), Stage::Gpt2], false, false),
            "deepseek-llm" => (
                vec![
                    Stage::Each(Class::CrLf),
                    Stage::OptWsRuns(Class::DeepseekLetters),
                    Stage::OptWsRuns(Class::DeepseekPunct),
                    Stage::TrailingWs,
                    Stage::Runs(Class::DeepseekCjk),
                    Stage::Runs(Class::Number),
                ],
                false,
                false,
            ),
            "deepseek-v3" => (
                vec![
                    Stage::NumberGroups3,
                    Stage::Runs(Class::DeepseekV3Cjk),
                    Stage::DeepseekV3,
                ],
                false,
                false,
            ),
            other => {
                return Err(TokenizerError::UnknownPre {
                    pre: other.to_string(),
                    known: KNOWN_PRE,
                })
            }
        };
        Ok(PreTokenizer {
            name: name.to_string(),
            stages,
            ignore_merges,
            default_add_bos,
        })
    }

    /// The `tokenizer.ggml.pre` name this was built from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Split `text` into pieces; returns byte ranges covering the whole text, in order.
    pub fn split(&self, text: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = text.chars().collect();
        let fl: Vec<u8> = chars.iter().map(|&c| flags(c)).collect();
        let ctx = Ctx {
            ch: &chars,
            fl: &fl,
        };
        // Piece ends in char indices.
        let mut ends: Vec<usize> = if chars.is_empty() {
            Vec::new()
        } else {
            vec![chars.len()]
        };
        for stage in &self.stages {
            let mut next = Vec::with_capacity(ends.len() * 2 + 8);
            let mut start = 0;
            for &end in &ends {
                split_piece(&ctx, *stage, start, end, &mut next);
                start = end;
            }
            ends = next;
        }
        // Char indices to byte offsets.
        let mut out = Vec::with_capacity(ends.len());
        let mut byte = 0usize;
        let mut ci = 0usize;
        let mut iter = text.char_indices();
        for end in ends {
            let start_byte = byte;
            while ci < end {
                if let Some((_, c)) = iter.next() {
                    byte += c.len_utf8();
                }
                ci += 1;
            }
            out.push((start_byte, byte));
        }
        out
    }
}

struct Ctx<'a> {
    ch: &'a [char],
    fl: &'a [u8],
}

impl Ctx<'_> {
    #[inline]
    fn f(&self, i: usize, end: usize) -> u8 {
        if i < end {
            self.fl[i]
        } else {
            0
        }
    }
    /// Whitespace count from `p` and the end of the last CR/LF inside it (0 if none).
    fn ws_run(&self, p: usize, end: usize) -> (usize, usize) {
        let mut n = 0;
        let mut last_rn = 0;
        while p + n < end && self.fl[p + n] & WS != 0 {
            let c = self.ch[p + n];
            if c == '\r' || c == '\n' {
                last_rn = p + n + 1;
            }
            n += 1;
        }
        (n, last_rn)
    }
}

fn split_piece(ctx: &Ctx<'_>, stage: Stage, start: usize, end: usize, out: &mut Vec<usize>) {
    let mut p = start;
    let mut gap = start;
    while p < end {
        match match_at(ctx, stage, p, end) {
            Some(m) if m > p => {
                if gap < p {
                    out.push(p);
                }
                out.push(m);
                p = m;
                gap = m;
            }
            _ => p += 1,
        }
    }
    if gap < end {
        out.push(end);
    }
}

fn in_class(ctx: &Ctx<'_>, class: Class, i: usize, end: usize) -> bool {
    if i >= end {
        return false;
    }
    let c = ctx.ch[i];
    let f = ctx.fl[i];
    // llama.cpp's std::regex path sees every non-ASCII whitespace as U+000B.
    if f & WS != 0 && !c.is_ascii() {
        return false;
    }
    let u = c as u32;
    match class {
        Class::Number => f & NUMBER != 0,
        Class::CrLf => c == '\r' || c == '\n',
        Class::DefaultPunct => {
            if c.is_ascii() {
                c.is_ascii_punctuation()
                    && !"`".contains(c)
                    && (is_ascii_p(c) || "$+<=>^~|".contains(c))
            } else {
                f & PUNCT != 0
            }
        }
        Class::FalconPunct => {
            if c.is_ascii() {
                is_ascii_p(c) || "$+<=>^~|`".contains(c)
            } else {
                f & PUNCT != 0
            }
        }
        Class::Letter => f & LETTER != 0,
        Class::Punct => {
            if c.is_ascii() {
                is_ascii_p(c)
            } else {
                f & PUNCT != 0
            }
        }
        Class::DeepseekLetters => in_ranges(u, deepseek_letters()),
        Class::DeepseekPunct => {
            (0x21..=0x2F).contains(&u)
                || (0x3A..=0x7E).contains(&u)
                || (0xFF01..=0xFF0F).contains(&u)
                || (0xFF1A..=0xFF5E).contains(&u)
                || (0x2018..=0x201F).contains(&u)
                || (0x3000..=0x3002).contains(&u)
        }
        Class::DeepseekCjk => {
            (0x4E00..=0x9FA5).contains(&u)
                || (0x0800..=0x4E00).contains(&u)
                || (0xAC00..=0xD7FF).contains(&u)
        }
        Class::DeepseekV3Cjk => {
            (0x4E00..=0x9FA5).contains(&u)
                || (0x3040..=0x309F).contains(&u)
                || (0x30A0..=0x30FF).contains(&u)
        }
    }
}

/// ASCII characters in Unicode category P (what llama.cpp's collapsed `\p{P}` matches).
fn is_ascii_p(c: char) -> bool {
    "!\"#%&'()*,-./:;?@[\\]_{}".contains(c)
}

/// ASCII characters llama.cpp's collapsed `\p{S}` matches (note: `~` is missing there).
fn is_ascii_s(c: char) -> bool {
    "$+<=>^`|".contains(c)
}

fn in_ranges(u: u32, ranges: &[(u32, u32)]) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < u {
                std::cmp::Ordering::Less
            } else if lo > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn deepseek_letters() -> &'static [(u32, u32)] {
    static R: std::sync::OnceLock<Vec<(u32, u32)>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        // Escaped so that no editor or tool can normalize the letterlike symbols (U+212A is
        // the Kelvin sign, not `K`).
        const SPEC: &str = "A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}";
        let cs: Vec<char> = SPEC.chars().collect();
        let mut v = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            if i + 2 < cs.len() && cs[i + 1] == '-' {
                v.push((cs[i] as u32, cs[i + 2] as u32));
                i += 3;
            } else {
                v.push((cs[i] as u32, cs[i] as u32));
                i += 1;
            }
        }
        v.sort_unstable();
        // Merge overlaps so the binary search sees disjoint ranges.
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    })
}

fn contraction(ctx: &Ctx<'_>, p: usize, end: usize, fold_case: bool) -> Option<usize> {
    if p + 1 >= end || ctx.ch[p] != '\'' {
        return None;
    }
    let lower = |c: char| if fold_case { c.to_ascii_lowercase() } else { c };
    let n = lower(ctx.ch[p + 1]);
    if matches!(n, 's' | 't' | 'm' | 'd') {
        return Some(p + 2);
    }
    if p + 2 < end {
        let nn = lower(ctx.ch[p + 2]);
        if matches!((n, nn), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return Some(p + 3);
        }
    }
    None
}

fn ws_tail(ctx: &Ctx<'_>, p: usize, end: usize, crlf: bool) -> Option<usize> {
    let (n, last_rn) = ctx.ws_run(p, end);
    if crlf && last_rn > 0 {
        return Some(last_rn);
    }
    if n > 1 && p + n < end {
        return Some(p + n - 1);
    }
    if n > 0 {
        return Some(p + n);
    }
    None
}

fn run_while(mut q: usize, end: usize, pred: impl Fn(usize) -> bool) -> usize {
    while q < end && pred(q) {
        q += 1;
    }
    q
}

/// The end of the match starting exactly at `p`, if the stage's pattern matches there.
fn match_at(ctx: &Ctx<'_>, stage: Stage, p: usize, end: usize) -> Option<usize> {
    let c = ctx.ch[p];
    let f = ctx.fl[p];
    match stage {
        Stage::Gpt2 => {
            if let Some(m) = contraction(ctx, p, end, false) {
                return Some(m);
            }
            let f2 = if c == ' ' { ctx.f(p + 1, end) } else { f };
            let s = p + usize::from(c == ' ');
            if f2 & LETTER != 0 {
                return Some(run_while(s, end, |q| ctx.fl[q] & LETTER != 0));
            }
            if f2 & NUMBER != 0 {
                return Some(run_while(s, end, |q| ctx.fl[q] & NUMBER != 0));
            }
            if f2 & (WS | LETTER | NUMBER) == 0 && s < end {
                return Some(run_while(s, end, |q| {
                    ctx.fl[q] & (WS | LETTER | NUMBER) == 0
                }));
            }
            Some(ws_tail(ctx, p, end, false).unwrap_or(p + 1))
        }
        Stage::Llama3 { max_digits, marks } => {
            if let Some(m) = contraction(ctx, p, end, true) {
                return Some(m);
            }
            // The letter-run class: `\p{L}`, or `[\p{L}\p{M}]` with marks.
            let lm = if marks { LETTER | MARK } else { LETTER };
            if !(c == '\r' || c == '\n' || f & NUMBER != 0)
                && (f & lm != 0 || ctx.f(p + 1, end) & lm != 0)
            {
                return Some(run_while(p + 1, end, |q| ctx.fl[q] & lm != 0));
            }
            if f & NUMBER != 0 {
                let m = run_while(p, end, |q| ctx.fl[q] & NUMBER != 0);
                return Some(m.min(p + max_digits));
            }
            let f2 = if c == ' ' { ctx.f(p + 1, end) } else { f };
            if f2 & (WS | lm | NUMBER) == 0 {
                let s = p + usize::from(c == ' ');
                let q = run_while(s, end, |q| ctx.fl[q] & (WS | lm | NUMBER) == 0);
                return Some(run_while(q, end, |q| {
                    ctx.ch[q] == '\r' || ctx.ch[q] == '\n'
                }));
            }
            Some(ws_tail(ctx, p, end, true).unwrap_or(p + 1))
        }
        Stage::Gpt4o {
            contractions,
            max_digits,
        } => gpt4o(ctx, p, end, contractions, max_digits),
        Stage::Each(class) => in_class(ctx, class, p, end).then_some(p + 1),
        Stage::Runs(class) => {
            let m = run_while(p, end, |q| in_class(ctx, class, q, end));
            (m > p).then_some(m)
        }
        Stage::OptWsRuns(class) => {
            if f & WS != 0 && in_class(ctx, class, p + 1, end) {
                return Some(run_while(p + 1, end, |q| in_class(ctx, class, q, end)));
            }
            let m = run_while(p, end, |q| in_class(ctx, class, q, end));
            (m > p).then_some(m)
        }
        Stage::TrailingWs => {
            let m = run_while(p, end, |q| ctx.fl[q] & WS != 0);
            (m == end && m > p).then_some(m)
        }
        Stage::NumberGroups3 => {
            let m = run_while(p, end, |q| ctx.fl[q] & NUMBER != 0);
            (m > p).then_some(m.min(p + 3))
        }
        Stage::AsciiDigits3 => {
            (p + 3 <= end && ctx.ch[p..p + 3].iter().all(|c| c.is_ascii_digit())).then_some(p + 3)
        }
        Stage::DeepseekV3 => deepseek_v3(ctx, p, end),
    }
}

/// llama.cpp's GPT-4o pattern (Tekken's without contractions, `\p{N}` for `\p{N}{1,3}`):
///
/// ```text
/// [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?
/// |[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:...same...)?
/// |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
/// ```
///
/// "Upper" is a letter other than `a-z`, "lower" a letter other than `A-Z`, so a non-ASCII
/// letter is both. The first alternative takes the longest run of uppers that a lower follows
/// (backtracking into the run when the next character is not `a-z`), the second a run of
/// uppers alone; combining marks are not letters here.
fn gpt4o(
    ctx: &Ctx<'_>,
    p: usize,
    end: usize,
    contractions: bool,
    max_digits: usize,
) -> Option<usize> {
    let c = ctx.ch[p];
    let f = ctx.fl[p];
    let letter = |i: usize| ctx.f(i, end) & LETTER != 0;
    let upper = |i: usize| letter(i) && !ctx.ch[i].is_ascii_lowercase();
    // Where the letters start: after one optional non-letter, non-digit, non-CR/LF prefix.
    let s = if letter(p) {
        Some(p)
    } else if !(c == '\r' || c == '\n' || f & NUMBER != 0) && letter(p + 1) {
        Some(p + 1)
    } else {
        None
    };
    if let Some(s) = s {
        let u = run_while(s, end, upper);
        let m = if u < end && ctx.ch[u].is_ascii_lowercase() {
            // uppers, then lowers (a non-ASCII letter is a lower too)
            run_while(u, end, |q| letter(q) && !ctx.ch[q].is_ascii_uppercase())
        } else if let Some(k) = (s..u).rev().find(|&k| !ctx.ch[k].is_ascii()) {
            // the last non-ASCII letter of the run is the one lower the first form needs
            k + 1
        } else {
            // the second form: uppers alone
            u
        };
        if contractions {
            if let Some(e) = contraction(ctx, m, end, true) {
                return Some(e);
            }
        }
        return Some(m);
    }
    if f & NUMBER != 0 {
        let m = run_while(p, end, |q| ctx.fl[q] & NUMBER != 0);
        return Some(m.min(p + max_digits));
    }
    let other = |i: usize| i < end && ctx.fl[i] & (WS | LETTER | NUMBER) == 0;
    let s0 = if c == ' ' && other(p + 1) { p + 1 } else { p };
    if other(s0) {
        let q = run_while(s0, end, other);
        return Some(run_while(q, end, |q| {
            matches!(ctx.ch[q], '\r' | '\n' | '/')
        }));
    }
    ws_tail(ctx, p, end, true)
}

/// `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
/// ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` with llama.cpp's collapsed categories.
fn deepseek_v3(ctx: &Ctx<'_>, p: usize, end: usize) -> Option<usize> {
    let cls = |i: usize| -> (bool, bool, bool, bool) {
        // (L, P, S, M) as the collapsed std::regex sees them
        let c = ctx.ch[i];
        let f = ctx.fl[i];
        if c.is_ascii() {
            (c.is_ascii_alphabetic(), is_ascii_p(c), is_ascii_s(c), false)
        } else if f & WS != 0 {
            (false, false, false, false)
        } else {
            (
                f & LETTER != 0,
                f & PUNCT != 0,
                f & SYMBOL != 0,
                f & MARK != 0,
            )
        }
    };
    let lm = |i: usize| {
        i < end && {
            let (l, _, _, m) = cls(i);
            l || m
        }
    };
    let ps = |i: usize| {
        i < end && {
            let (_, pu, s, _) = cls(i);
            pu || s
        }
    };
    let c = ctx.ch[p];
    if c.is_ascii_punctuation() && p + 1 < end && ctx.ch[p + 1].is_ascii_alphabetic() {
        return Some(run_while(p + 1, end, |q| ctx.ch[q].is_ascii_alphabetic()));
    }
    let (l, pu, s, _) = cls(p);
    if !(c == '\r' || c == '\n' || l || pu || s) && lm(p + 1) {
        return Some(run_while(p + 1, end, lm));
    }
    if lm(p) {
        return Some(run_while(p, end, lm));
    }
    let s0 = if c == ' ' && ps(p + 1) { p + 1 } else { p };
    if ps(s0) {
        let q = run_while(s0, end, ps);
        return Some(run_while(q, end, |q| {
            ctx.ch[q] == '\r' || ctx.ch[q] == '\n'
        }));
    }
    ws_tail(ctx, p, end, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::from_gguf_pre(Some(pre)).unwrap();
        p.split(text)
            .into_iter()
            .map(|(a, b)| text[a..b].to_string())
            .collect()
    }

    #[test]
    fn qwen2_splits() {
        assert_eq!(
            pieces("qwen2", "Hello world's 1234!!\n\n  x  "),
            ["Hello", " world", "'s", " ", "1", "2", "3", "4", "!!\n\n", " ", " x", "  "]
        );
    }

    #[test]
    fn llama3_digits() {
        assert_eq!(pieces("llama-bpe", "12345 ab"), ["123", "45", " ab"]);
    }

    #[test]
    fn gpt2_splits() {
        assert_eq!(
            pieces("gpt-2", "Hi  there\tyou'll"),
            ["Hi", " ", " there", "\t", "you", "'ll"]
        );
    }

    #[test]
    fn default_splits() {
        assert_eq!(pieces("default", "a+=12345"), ["a", "+=", "123", "45"]);
    }

    #[test]
    fn smollm_digits() {
        assert_eq!(pieces("smollm", "x 42"), ["x", " ", "4", "2"]);
    }

    #[test]
    fn deepseek() {
        assert_eq!(
            pieces("deepseek-v3", "abc 12345 中文!x"),
            ["abc", " ", "123", "45", " ", "中文", "!x"]
        );
        assert_eq!(
            pieces("deepseek-llm", "Hello, 世界\n42"),
            ["Hello", ",", " ", "世界", "\n", "42"]
        );
    }

    #[test]
    fn deepseek_llm_classes() {
        assert_eq!(
            pieces("deepseek-llm", "vec![1];C:\\Us{x}"),
            ["vec", "![", "1", "];", "C", ":\\", "Us", "{", "x", "}"]
        );
    }

    /// Expected pieces from Python's `regex` module running llama.cpp's GPT-4o and Tekken
    /// patterns (the `regex_exprs` of llama-vocab.cpp) over the same texts.
    #[test]
    fn gpt4o_and_tekken_split_like_the_regex() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "Hello World's HTTPServer isn't OK'S",
                &["Hello", " World's", " HTTPServer", " isn't", " OK'S"],
                &[
                    "Hello",
                    " World",
                    "'s",
                    " HTTPServer",
                    " isn",
                    "'t",
                    " OK",
                    "'S",
                ],
            ),
            (
                "URLs 12345 ÉCOLE été ÀB naïve",
                &[
                    "URLs", " ", "123", "45", " É", "COLE", " été", " À", "B", " naïve",
                ],
                &[
                    "URLs", " ", "1", "2", "3", "4", "5", " É", "COLE", " été", " À", "B", " naïve",
                ],
            ),
            (
                "path/to//x\n\n  y \t\r\nz  ",
                &[
                    "path", "/to", "//", "x", "\n\n", " ", " y", " \t\r\n", "z", "  ",
                ],
                &[
                    "path", "/to", "//", "x", "\n\n", " ", " y", " \t\r\n", "z", "  ",
                ],
            ),
            (
                "camelCaseID XMLHttpRequest ÜberCool",
                &[
                    "camel", "Case", "ID", " XMLHttp", "Request", " Über", "Cool",
                ],
                &[
                    "camel", "Case", "ID", " XMLHttp", "Request", " Über", "Cool",
                ],
            ),
            (
                "We'LL x'd 'tis  !!?/\n",
                &["We'LL", " x'd", " '", "tis", " ", " !!?/\n"],
                &["We", "'LL", " x", "'d", " '", "tis", " ", " !!?/\n"],
            ),
            (
                "中文ABC 1,000,000 a\u{301}b",
                &[
                    "中文", "ABC", " ", "1", ",", "000", ",", "000", " a", "\u{301}b",
                ],
                &[
                    "中文", "ABC", " ", "1", ",", "0", "0", "0", ",", "0", "0", "0", " a",
                    "\u{301}b",
                ],
            ),
        ];
        for (text, gpt4o, tekken) in cases {
            assert_eq!(pieces("gpt-4o", text), *gpt4o, "gpt-4o {text:?}");
            assert_eq!(pieces("tekken", text), *tekken, "tekken {text:?}");
        }
        let t = PreTokenizer::from_gguf_pre(Some("tekken")).unwrap();
        assert!(t.ignore_merges && t.default_add_bos);
    }

    #[test]
    fn falcon_qwen35_deepseek_coder() {
        assert_eq!(
            pieces("falcon", "a`+b 12345"),
            ["a", "`+", "b", " ", "123", "45"]
        );
        // qwen35 keeps a combining mark in the letter run; qwen2 does not
        assert_eq!(pieces("qwen35", "cafe\u{301}!"), ["cafe\u{301}", "!"]);
        assert_eq!(pieces("qwen2", "cafe\u{301}!"), ["cafe", "\u{301}!"]);
        assert_eq!(
            pieces("deepseek-coder", "fn x() {\n42"),
            ["fn", " x", "()", " {", "\n", "4", "2"]
        );
    }

    #[test]
    fn unknown_pre_is_error() {
        assert!(PreTokenizer::from_gguf_pre(Some("nope")).is_err());
        assert_eq!(PreTokenizer::from_gguf_pre(None).unwrap().name(), "default");
    }

    #[test]
    fn covers_text() {
        for pre in KNOWN_PRE {
            let p = PreTokenizer::from_gguf_pre(Some(pre)).unwrap();
            let text = "  Héllo\u{301}, wörld!\r\n\t12 345 ¹²³ 😀👨‍👩‍👧 中文 ～～ 　x\u{85}y  ";
            let mut pos = 0;
            for (a, b) in p.split(text) {
                assert_eq!(a, pos, "{pre}");
                assert!(b > a, "{pre}");
                pos = b;
            }
            assert_eq!(pos, text.len(), "{pre}");
        }
    }
}
