//! Fuzz chat-template rendering (`lmrun::chat::ChatTemplate`): the input is a Jinja template
//! (as a GGUF's `tokenizer.chat_template` would carry it); rendering a short conversation, with
//! and without the generation prompt, must give text or an error, never a panic, a hang or a
//! memory blow-up. The first byte picks the architecture (for the built-in fallback when the
//! template is blank) and a piece of the input becomes one message's content.
//!
//!     cargo +nightly fuzz run chat_template -- -max_len=4096
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrun::chat::{ChatTemplate, Message};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let arch = match data.first().map(|b| b % 3) {
        Some(0) => "gemma3",
        Some(1) => "qwen2",
        _ => "llama",
    };
    let tail: String = text.chars().rev().take(64).collect();
    let t = ChatTemplate::for_model(Some(&text), arch, "<s>", "</s>");
    let _ = t.is_model_template();
    let messages = [
        Message::new("system", "You are a helpful assistant."),
        Message::new("user", "Hello! <|im_start|> {{ x }} {% if %}"),
        Message::new("assistant", "Hi there."),
        Message::new("user", &tail),
    ];
    for gen in [true, false] {
        let _ = t.render(&messages, gen);
    }
    let _ = t.render(&messages[..1], true);
    let _ = t.render(&[], true);
});
