//! Hugging Face `tokenizer.json` through the `tokenizers` crate, so every normalizer,
//! pre-tokenizer and model HF defines works without being re-implemented here. This module adds
//! what the runner needs on top: BOS/EOS ids (from `tokenizer_config.json`, else guessed from
//! the special tokens as ExecuTorch does), special parsing on/off, and per-token bytes for
//! streaming decode.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{push_n, EncodeOptions, Result, TokenId, Tokenizer, TokenizerError};

const FORMAT: &str = "tokenizer.json";

/// A tokenizer loaded from a Hugging Face `tokenizer.json`.
pub struct HfTokenizer {
    /// Splits special tokens out of the text.
    with_special: tokenizers::Tokenizer,
    /// Treats special-token text as plain text.
    without_special: tokenizers::Tokenizer,
    bos: Option<TokenId>,
    eos: Option<TokenId>,
    vocab_size: usize,
    byte_level: bool,
    byte_fallback: bool,
    strip_space: bool,
    specials: FxHashMap<String, TokenId>,
    special_ids: FxHashSet<TokenId>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// Whether `decoder` holds (at any depth, e.g. inside a `Sequence`) a `Strip` decoder that cuts
/// characters from the end: tokenizers 0.22's `Strip::decode_chain` underflows on a token with
/// fewer characters than `stop` (or made only of the stripped character) and panics.
fn strips_from_end(decoder: &serde_json::Value) -> bool {
    match decoder {
        serde_json::Value::Object(o) => {
            // The tokenizers crate also takes an untagged `{"content", "start", "stop"}`.
            (o.get("type").is_none_or(|t| t == "Strip")
                && o.get("stop").is_some_and(|s| s.as_u64() != Some(0)))
                || o.values().any(strips_from_end)
        }
        serde_json::Value::Array(a) => a.iter().any(strips_from_end),
        _ => false,
    }
}

fn token_content(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

impl HfTokenizer {
    /// Load `path`: a `tokenizer.json` file, or a directory holding one (and optionally
    /// `tokenizer_config.json`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let (json_path, config_path): (PathBuf, Option<PathBuf>) = if path.is_dir() {
            let j = path.join("tokenizer.json");
            if !j.is_file() {
                return Err(TokenizerError::format(
                    path,
                    FORMAT,
                    "directory has no tokenizer.json",
                ));
            }
            (j, Some(path.join("tokenizer_config.json")))
        } else {
            let cfg = path.parent().map(|p| p.join("tokenizer_config.json"));
            (path.to_path_buf(), cfg)
        };
        let bytes = std::fs::read(&json_path).map_err(|e| TokenizerError::io(&json_path, e))?;
        let config = config_path
            .filter(|p| p.is_file())
            .and_then(|p| std::fs::read(&p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        Self::from_bytes(&bytes, config.as_ref(), &json_path)
    }

    /// Build from the bytes of a `tokenizer.json` (and an optional parsed
    /// `tokenizer_config.json`); `path` is only used in error messages.
    pub fn from_bytes(
        bytes: &[u8],
        config: Option<&serde_json::Value>,
        path: &Path,
    ) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| TokenizerError::format(path, FORMAT, format!("not JSON: {e}")))?;
        if json.get("model").is_none() {
            return Err(TokenizerError::format(path, FORMAT, "no \"model\" key"));
        }
        if json.get("decoder").is_some_and(strips_from_end) {
            return Err(TokenizerError::format(
                path,
                FORMAT,
                "a \"Strip\" decoder with \"stop\" > 0 is not supported (the tokenizers crate \
                 panics decoding a token shorter than it)",
            ));
        }
        let with_special = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| TokenizerError::format(path, FORMAT, e.to_string()))?;
        let mut without_special = with_special.clone();
        without_special.set_encode_special_tokens(true);

        let byte_level = json
            .get("decoder")
            .is_some_and(|d| d.to_string().contains("\"ByteLevel\""))
            || json
                .get("pre_tokenizer")
                .is_some_and(|d| d.to_string().contains("\"ByteLevel\""));
        let byte_fallback = json
            .get("model")
            .and_then(|m| m.get("byte_fallback"))
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        let strip_space = !byte_level
            && (json.get("decoder").is_some_and(|d| {
                let s = d.to_string();
                (s.contains("\"Strip\"") && s.contains("\"start\":1"))
                    || s.contains("\"Metaspace\"")
            }));

        let mut specials = FxHashMap::default();
        let mut special_ids = FxHashSet::default();
        for (id, tok) in with_special.get_added_tokens_decoder() {
            if tok.special {
                specials.insert(tok.content.clone(), id);
                special_ids.insert(id);
            }
        }
        let lookup = |name: &str| -> Option<TokenId> {
            let content = config.and_then(|c| c.get(name)).and_then(token_content)?;
            with_special.token_to_id(&content)
        };
        let mut bos = lookup("bos_token");
        let mut eos = lookup("eos_token");
        if bos.is_none() && eos.is_none() {
            // ExecuTorch's guess: special tokens naming bos/begin and eos/end.
            let guess = |keys: &[&str]| -> Option<TokenId> {
                let mut c: Vec<(&String, &TokenId)> = specials
                    .iter()
                    .filter(|(t, _)| keys.iter().any(|k| t.to_lowercase().contains(k)))
                    .collect();
                if c.len() > 1 {
                    let narrowed: Vec<_> = c
                        .iter()
                        .copied()
                        .filter(|(t, _)| t.to_lowercase().contains("text"))
                        .collect();
                    if !narrowed.is_empty() {
                        c = narrowed;
                    }
                }
                c.sort_by_key(|(_, &id)| id);
                c.first().map(|(_, &id)| id)
            };
            bos = guess(&["bos", "begin"]);
            eos = guess(&["eos", "end"]);
            if bos.is_none() {
                bos = eos;
            }
            if eos.is_none() {
                eos = bos;
            }
        }
        // One past the highest id, not the number of entries: a vocabulary may skip ids
        // (`{"a": 0, "b": 5}`), and every id `encode` gives must be below `vocab_size`.
        let vocab_size = with_special
            .get_vocab(true)
            .into_values()
            .max()
            .map_or(0, |m| m as usize + 1);
        Ok(HfTokenizer {
            with_special,
            without_special,
            bos,
            eos,
            vocab_size,
            byte_level,
            byte_fallback,
            strip_space,
            specials,
            special_ids,
        })
    }
}

impl Tokenizer for HfTokenizer {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        let tk = if opts.parse_special {
            &self.with_special
        } else {
            &self.without_special
        };
        let enc = tk
            .encode(text, false)
            .map_err(|e| TokenizerError::Backend(format!("tokenizer.json encode: {e}")))?;
        let mut out = Vec::with_capacity(enc.get_ids().len() + opts.num_bos + opts.num_eos);
        push_n(&mut out, self.bos, opts.num_bos);
        out.extend_from_slice(enc.get_ids());
        push_n(&mut out, self.eos, opts.num_eos);
        Ok(out)
    }

    /// The tokenizer.json's own rule: BOS only when its post-processor adds one (Llama 3's
    /// does, Qwen's and most byte-level BPE files do not).
    fn default_options(&self, parse_special: bool) -> EncodeOptions {
        let adds_bos = self.bos.is_some_and(|bos| {
            self.with_special
                .encode("a", true)
                .map(|e| e.get_ids().first() == Some(&bos))
                .unwrap_or(false)
        });
        EncodeOptions {
            num_bos: usize::from(adds_bos),
            num_eos: 0,
            parse_special,
        }
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn bos_id(&self) -> Option<TokenId> {
        self.bos
    }

    fn eos_id(&self) -> Option<TokenId> {
        self.eos
    }

    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        self.specials.get(text).copied()
    }

    fn is_special(&self, id: TokenId) -> bool {
        self.special_ids.contains(&id)
    }

    fn piece(&self, id: TokenId) -> Option<String> {
        self.with_special.id_to_token(id)
    }

    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let piece = self
            .with_special
            .id_to_token(id)
            .ok_or(TokenizerError::BadTokenId {
                id,
                vocab_size: self.vocab_size,
            })?;
        if self.special_ids.contains(&id) {
            return Ok(if render_special {
                Cow::Owned(piece.into_bytes())
            } else {
                Cow::Borrowed(&[])
            });
        }
        if self.byte_level {
            if let Some(b) = crate::unicode::bytelevel_to_bytes(&piece) {
                return Ok(Cow::Owned(b));
            }
            return Ok(Cow::Owned(piece.into_bytes()));
        }
        if self.byte_fallback
            && piece.len() == 6
            && piece.starts_with("<0x")
            && piece.ends_with('>')
        {
            if let Ok(b) = u8::from_str_radix(&piece[3..5], 16) {
                return Ok(Cow::Owned(vec![b]));
            }
        }
        Ok(Cow::Owned(piece.replace('▁', " ").into_bytes()))
    }

    fn strips_leading_space(&self) -> bool {
        self.strip_space
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(TokenizerError::BadTokenId {
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.with_special
            .decode(ids, true)
            .map_err(|e| TokenizerError::Backend(format!("tokenizer.json decode: {e}")))
    }

    fn kind(&self) -> &'static str {
        "tokenizer.json"
    }
}
