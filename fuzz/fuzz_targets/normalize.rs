//! Coverage-guided fuzzing of every normaliser: `cargo +nightly fuzz run normalize`.
//! The first byte picks the provider; the rest is the message body. Any panic is a bug.

#![no_main]

use eviction_router::event::Provider;
use eviction_router::providers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let provider = Provider::ALL[usize::from(*first) % Provider::ALL.len()];
    if let Ok(parsed) = providers::normalize(provider, body) {
        for event in parsed.events {
            let line = event.to_json_line();
            assert!(serde_json::from_str::<eviction_router::event::Event>(&line).is_ok());
        }
    }
});
