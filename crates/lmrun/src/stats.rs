//! Run statistics: ExecuTorch's `Stats` fields and its `PyTorchObserver {json}` line (same keys,
//! same order), plus what ExecuTorch does not show: the load report (which load mode really took
//! effect), peak RSS, prompt and decode tokens/s and time to first token.

use lmrun_loader::LoadReport;

use crate::decoder::DecoderMemory;

/// Milliseconds since the Unix epoch (ExecuTorch uses wall-clock time for its stats).
pub fn time_in_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What one `generate` call measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// When model loading started (ms since the epoch).
    pub model_load_start_ms: i64,
    /// When model loading ended.
    pub model_load_end_ms: i64,
    /// When inference (encode + prefill + decode) started.
    pub inference_start_ms: i64,
    /// When the prompt was encoded.
    pub token_encode_end_ms: i64,
    /// When the prompt's prefill finished.
    pub prompt_eval_end_ms: i64,
    /// When the first generated token was available.
    pub first_token_ms: i64,
    /// When inference ended.
    pub inference_end_ms: i64,
    /// Time spent in the sampler.
    pub aggregate_sampling_time_ms: i64,
    /// Prompt tokens fed to the model.
    pub num_prompt_tokens: i64,
    /// Tokens generated: the ids produced, the one sampled from the prompt's logits included
    /// (ExecuTorch counts decode steps here, one fewer; that count is `num_decode_steps`).
    pub num_generated_tokens: i64,
    /// Decode steps run (ExecuTorch's `num_generated_tokens`: the token produced by the prefill
    /// is not included). The decode rate is computed from it.
    pub num_decode_steps: i64,
    /// The model's load report (mode asked, bytes mapped/read/locked, mlock outcome, time).
    pub load: LoadReport,
    /// Peak resident set size of the process in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Resident anonymous memory after generation.
    pub rss_anon_bytes: Option<u64>,
    /// Resident file-backed memory after generation.
    pub rss_file_bytes: Option<u64>,
    /// Resident anonymous memory right after the model was built (before any token).
    pub rss_after_load_anon_bytes: Option<u64>,
    /// Resident file-backed memory right after the model was built (before any token).
    pub rss_after_load_file_bytes: Option<u64>,
    /// Threads the model computes with.
    pub threads: usize,
    /// The model's own memory accounting at the end of generation (weights, KV cache, scratch).
    pub memory: DecoderMemory,
    /// Kernel instruction-set level (`scalar`, `avx2`, `avx512-vnni`; empty before a load).
    pub isa: &'static str,
    pub(crate) sampling_start: Option<std::time::Instant>,
    pub(crate) sampling_ns: u128,
}

impl Stats {
    /// Zero everything except the model-load timestamps and report (ExecuTorch's `reset()`).
    pub fn reset(&mut self) {
        let keep = (
            self.model_load_start_ms,
            self.model_load_end_ms,
            self.load.clone(),
            self.threads,
            self.isa,
            self.rss_after_load_anon_bytes,
            self.rss_after_load_file_bytes,
        );
        *self = Stats::default();
        (
            self.model_load_start_ms,
            self.model_load_end_ms,
            self.load,
            self.threads,
            self.isa,
            self.rss_after_load_anon_bytes,
            self.rss_after_load_file_bytes,
        ) = keep;
    }

    /// Start timing one sampling call.
    pub fn on_sampling_begin(&mut self) {
        self.sampling_start = Some(std::time::Instant::now());
    }

    /// Stop timing one sampling call.
    pub fn on_sampling_end(&mut self) {
        if let Some(t) = self.sampling_start.take() {
            self.sampling_ns += t.elapsed().as_nanos();
            self.aggregate_sampling_time_ms = (self.sampling_ns / 1_000_000) as i64;
        }
    }

    /// Prompt tokens per second over the prefill window.
    pub fn prompt_tokens_per_s(&self) -> f64 {
        per_s(
            self.num_prompt_tokens,
            self.prompt_eval_end_ms - self.inference_start_ms,
        )
    }

    /// Decode tokens per second over the decode window.
    pub fn decode_tokens_per_s(&self) -> f64 {
        per_s(
            self.num_decode_steps,
            self.inference_end_ms - self.prompt_eval_end_ms,
        )
    }

    /// Time to first token in ms.
    pub fn time_to_first_token_ms(&self) -> i64 {
        self.first_token_ms - self.inference_start_ms
    }

    /// ExecuTorch's JSON, keys in its order, no spaces.
    pub fn to_executorch_json(&self) -> String {
        format!(
            "{{\"prompt_tokens\":{},\"generated_tokens\":{},\"model_load_start_ms\":{},\
             \"model_load_end_ms\":{},\"inference_start_ms\":{},\"inference_end_ms\":{},\
             \"prompt_eval_end_ms\":{},\"first_token_ms\":{},\"aggregate_sampling_time_ms\":{},\
             \"SCALING_FACTOR_UNITS_PER_SECOND\":1000}}",
            self.num_prompt_tokens,
            self.num_generated_tokens,
            self.model_load_start_ms,
            self.model_load_end_ms,
            self.inference_start_ms,
            self.inference_end_ms,
            self.prompt_eval_end_ms,
            self.first_token_ms,
            self.aggregate_sampling_time_ms,
        )
    }

    /// The `PyTorchObserver {json}` line ExecuTorch prints.
    pub fn observer_line(&self) -> String {
        format!("PyTorchObserver {}", self.to_executorch_json())
    }

    /// Everything as one JSON value: ExecuTorch's keys first, then lmrun's.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&self.to_executorch_json()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("decode_steps".into(), self.num_decode_steps.into());
            o.insert(
                "prompt_tokens_per_s".into(),
                json_f64(self.prompt_tokens_per_s()),
            );
            o.insert(
                "decode_tokens_per_s".into(),
                json_f64(self.decode_tokens_per_s()),
            );
            o.insert(
                "time_to_first_token_ms".into(),
                self.time_to_first_token_ms().into(),
            );
            o.insert("peak_rss_bytes".into(), self.peak_rss_bytes.into());
            o.insert("rss_anon_bytes".into(), self.rss_anon_bytes.into());
            o.insert("rss_file_bytes".into(), self.rss_file_bytes.into());
            o.insert(
                "rss_after_load_anon_bytes".into(),
                self.rss_after_load_anon_bytes.into(),
            );
            o.insert(
                "rss_after_load_file_bytes".into(),
                self.rss_after_load_file_bytes.into(),
            );
            o.insert("threads".into(), self.threads.into());
            o.insert("weight_bytes".into(), self.memory.weight_bytes.into());
            o.insert("kv_cache_bytes".into(), self.memory.kv_cache_bytes.into());
            o.insert(
                "kv_cache_sliding_bytes".into(),
                self.memory.kv_cache_sliding_bytes.into(),
            );
            o.insert("scratch_bytes".into(), self.memory.scratch_bytes.into());
            o.insert("isa".into(), self.isa.into());
            o.insert(
                "load".into(),
                serde_json::to_value(&self.load).unwrap_or_default(),
            );
        }
        v
    }

    /// A human-readable summary (what ExecuTorch logs at info level), several lines.
    pub fn report_text(&self) -> String {
        let load_s = (self.model_load_end_ms - self.model_load_start_ms) as f64 / 1e3;
        let mlock = match self.load.mlock.errno() {
            Some(e) => format!(
                "failed ({}, errno {e}); running unlocked",
                lmrun_loader::strerror(e)
            ),
            None => self.load.mlock.name().to_string(),
        };
        let mib =
            |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        format!(
            "prompt tokens: {}  generated tokens: {}\n\
             load: {:.3} s, mode {}, mapped {} B, read {} B, locked {} B, mlock {}\n\
             prompt eval: {:.1} tokens/s   decode: {:.1} tokens/s   time to first token: {} ms\n\
             threads: {} ({} kernels)   peak RSS: {}   RssAnon: {}   RssFile: {}\n\
             after load: RssAnon {}   RssFile {}   prefetch: {}\n\
             model memory: weights {}, KV cache {}{}, scratch {}",
            self.num_prompt_tokens,
            self.num_generated_tokens,
            load_s,
            self.load.mode.map_or("none", |m| m.cli_name()),
            self.load.bytes_mapped,
            self.load.bytes_read,
            self.load.bytes_locked,
            mlock,
            self.prompt_tokens_per_s(),
            self.decode_tokens_per_s(),
            self.time_to_first_token_ms(),
            self.threads,
            if self.isa.is_empty() { "no" } else { self.isa },
            mib(self.peak_rss_bytes),
            mib(self.rss_anon_bytes),
            mib(self.rss_file_bytes),
            mib(self.rss_after_load_anon_bytes),
            mib(self.rss_after_load_file_bytes),
            self.load.prefetch.summary(),
            mib(Some(self.memory.weight_bytes)),
            mib(Some(self.memory.kv_cache_bytes)),
            if self.memory.kv_cache_sliding_bytes > 0 {
                format!(
                    " (full-context layers {}, sliding-window layers {})",
                    mib(Some(
                        self.memory.kv_cache_bytes - self.memory.kv_cache_sliding_bytes
                    )),
                    mib(Some(self.memory.kv_cache_sliding_bytes))
                )
            } else {
                String::new()
            },
            mib(Some(self.memory.scratch_bytes)),
        )
    }
}

fn per_s(n: i64, ms: i64) -> f64 {
    if ms <= 0 {
        if n > 0 {
            f64::INFINITY
        } else {
            0.0
        }
    } else {
        n as f64 * 1000.0 / ms as f64
    }
}

fn json_f64(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_line_has_executorchs_keys_in_order() {
        let s = Stats {
            num_prompt_tokens: 3,
            num_generated_tokens: 9,
            model_load_start_ms: 1,
            model_load_end_ms: 2,
            inference_start_ms: 3,
            inference_end_ms: 4,
            prompt_eval_end_ms: 5,
            first_token_ms: 6,
            aggregate_sampling_time_ms: 7,
            ..Default::default()
        };
        assert_eq!(
            s.observer_line(),
            "PyTorchObserver {\"prompt_tokens\":3,\"generated_tokens\":9,\"model_load_start_ms\":1,\
             \"model_load_end_ms\":2,\"inference_start_ms\":3,\"inference_end_ms\":4,\
             \"prompt_eval_end_ms\":5,\"first_token_ms\":6,\"aggregate_sampling_time_ms\":7,\
             \"SCALING_FACTOR_UNITS_PER_SECOND\":1000}"
        );
        let j = s.to_json();
        assert_eq!(j["load"]["mlock"], "not-attempted");
        assert_eq!(j["prompt_tokens"], 3);
    }

    #[test]
    fn reset_keeps_load_times() {
        let mut s = Stats {
            model_load_start_ms: 10,
            model_load_end_ms: 20,
            num_prompt_tokens: 5,
            ..Default::default()
        };
        s.reset();
        assert_eq!((s.model_load_start_ms, s.model_load_end_ms), (10, 20));
        assert_eq!(s.num_prompt_tokens, 0);
    }
}
