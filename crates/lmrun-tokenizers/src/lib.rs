//! Tokenizers behind one trait: GGUF vocabularies (SentencePiece-style and byte-level BPE),
//! Hugging Face `tokenizer.json`, tiktoken, SentencePiece `.model` and llama2c `tokenizer.bin`.
//! (Placeholder: lands with issue 5.)
#![forbid(unsafe_code)]
