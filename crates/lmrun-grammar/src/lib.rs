//! Constrained decoding for lmrun: grammars that decide which tokens may come next.
//!
//! This crate exists so that a sampler can force a model's output into a formal language —
//! llama.cpp's GBNF grammars, or JSON that follows a JSON schema — without knowing anything
//! about grammars. It depends on nothing else in lmrun:
//! - [`Grammar::parse`] reads GBNF text (errors carry line and column);
//! - [`Matcher`] is the incremental recognizer over Unicode code points (bytes may split a
//!   code point across calls);
//! - [`Vocab`] holds a model's token texts as a byte trie, built once per model;
//! - [`Constraint`] computes the allowed-token mask for the next step ([`Constraint::allowed`])
//!   by walking that trie and the grammar's automaton together, with a cache keyed by automaton
//!   state, and follows the tokens chosen ([`Constraint::accept_token`]);
//! - [`json_schema_to_gbnf`] turns a JSON schema into GBNF.
//!
//! ```
//! use std::sync::Arc;
//! use lmrun_grammar::{Constraint, Grammar, TokenSet, Vocab};
//!
//! let grammar = Arc::new(Grammar::parse(r#"root ::= "yes" | "no""#).unwrap());
//! let tokens = ["y", "yes", "no", "n", "o", "es", "maybe", "</s>"];
//! let vocab = Arc::new(Vocab::new(tokens.iter().map(|t| t.as_bytes().to_vec()).collect(), &[7]));
//! let mut c = Constraint::new(grammar, vocab).unwrap();
//! let mut mask = TokenSet::new(8);
//! c.allowed(&mut mask).unwrap();
//! assert_eq!(mask.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
//! c.accept_token(1).unwrap(); // "yes"
//! c.allowed(&mut mask).unwrap();
//! assert_eq!(mask.iter().collect::<Vec<_>>(), vec![7]); // only the end of generation
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod grammar;
mod mask;
mod matcher;
mod parse;
mod schema;
mod vocab;

pub use grammar::{Grammar, MAX_ELEMENTS};
pub use mask::{Constraint, ConstraintError, MaskStats, CONTEXT_FRAMES};
pub use matcher::{MatchError, Matcher, MAX_STACKS};
pub use parse::{GrammarError, Location, MAX_NESTING, MAX_REPETITION};
pub use schema::{json_schema_str_to_gbnf, json_schema_to_gbnf, SchemaError};
pub use vocab::{TokenSet, Vocab, MAX_TOKEN_BYTES};
