//! The engine: one model, one mapping, N sequence slots, and a synchronous loop on its own
//! thread that serves them all with continuous batching. Each step runs, in one batched pass,
//! the next token of every decoding slot plus chunks of the prompts of newly admitted requests
//! (a long prompt is fed a chunk per step, so the others keep decoding meanwhile). A request's
//! slot is the free one whose cache shares the longest prefix with its prompt (the next turn of
//! the same chat), and only the rest of the prompt is computed. Results go back to the HTTP
//! side through a channel per request; a request whose receiver is gone (the client left) is
//! dropped at the next step and its slot freed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lmrun::grammar::{Constraint, TokenSet};
use lmrun::sampler::{Sampler, SamplerParams, TokenLogprob};
use lmrun::stop::held_tail;
use lmrun_models::{Model, SeqChunk, UBATCH};
use lmrun_tokenizers::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// Why a generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
    /// The server is shutting down.
    Cancelled,
    /// The request's grammar allowed no token.
    Grammar,
}

impl Finish {
    /// The OpenAI name.
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
            Finish::Grammar => "grammar",
        }
    }
}

/// What the engine sends back for one request.
#[derive(Debug)]
pub enum Event {
    /// Generated text (whole UTF-8, never part of a stop string), with the log-probabilities of
    /// the tokens whose text starts in it (when the request asked for them).
    Text(String, Vec<TokenLogprob>),
    /// The end, with the token counts.
    Done {
        /// Why.
        finish: Finish,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Prompt tokens whose KV was reused from the slot's previous request.
        cached_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
    },
    /// The model failed.
    Error(String),
}

/// One generation request, already tokenized and checked by the HTTP side.
#[derive(Debug)]
pub struct Job {
    /// Prompt token ids (fits the context).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling.
    pub params: SamplerParams,
    /// Seed (None: from the clock).
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// OpenAI presence penalty (subtracted once from every token already generated).
    pub presence_penalty: f32,
    /// OpenAI frequency penalty (subtracted per occurrence).
    pub frequency_penalty: f32,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: bool,
    /// The grammar the output must follow (`response_format`), over the model's vocabulary.
    pub constraint: Option<Constraint>,
    /// Report each generated token's log-probability with this many alternatives.
    pub logprobs: Option<usize>,
    /// Where the events go.
    pub events: UnboundedSender<Event>,
}

/// A slot: its cache's contents and, while busy, the request it serves.
struct Slot {
    /// Tokens whose keys and values are in this slot's cache, in order.
    cached: Vec<u32>,
    /// When the slot last finished a request (least recently used goes first among equals).
    last_used: Instant,
    busy: Option<Active>,
}

/// A request being served.
struct Active {
    job: Job,
    /// Prompt tokens not fed yet (from `fed` on).
    fed: usize,
    /// Prompt tokens reused from the cache.
    cached_tokens: usize,
    sampler: Sampler,
    /// Generated ids.
    generated: Vec<u32>,
    /// Counts of generated ids, for the OpenAI penalties.
    counts: std::collections::HashMap<u32, u32>,
    decoder: StreamDecoder,
    /// Generated text so far, and how much of it was sent.
    text: String,
    sent: usize,
    /// The token to feed next (the last sampled), once the prompt is in.
    next: Option<u32>,
    /// The grammar's mask and the masked logits (when the job has a grammar).
    mask: TokenSet,
    masked: Vec<f32>,
    /// Log-probabilities not sent yet, each with the offset in `text` where its token's text
    /// starts (sent with the text chunk that covers that offset; dropped past a stop string).
    pending_lp: VecDeque<(usize, TokenLogprob)>,
}

/// The engine's shared state besides the model.
pub struct Engine {
    model: Model,
    tok: Arc<dyn Tokenizer>,
    eog: Vec<u32>,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    metrics: Arc<Metrics>,
    /// Tokens one step may carry (prompt chunks and decode tokens together).
    batch: usize,
}

impl Engine {
    /// An engine over `model` (already given its slots).
    pub fn new(model: Model, tok: Arc<dyn Tokenizer>, metrics: Arc<Metrics>) -> Engine {
        let eog = tok.eog_ids();
        let slots = (0..model.n_slots())
            .map(|_| Slot {
                cached: Vec::new(),
                last_used: Instant::now(),
                busy: None,
            })
            .collect();
        Engine {
            model,
            tok,
            eog,
            slots,
            queue: VecDeque::new(),
            metrics,
            batch: UBATCH,
        }
    }

    /// Serve jobs from `rx` until it closes (the server stopped) or `cancel` is set (the
    /// shutdown deadline passed: every request in flight ends with `cancelled`).
    pub fn run(mut self, rx: Receiver<Job>, cancel: Arc<AtomicBool>) {
        loop {
            // Take new jobs: wait only when there is nothing to compute.
            let idle = self.queue.is_empty() && self.slots.iter().all(|s| s.busy.is_none());
            let first = if idle {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(j) => Some(j),
                    Err(RecvTimeoutError::Timeout) => {
                        if cancel.load(Ordering::SeqCst) {
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                None
            };
            if let Some(j) = first {
                self.queue.push_back(j);
            }
            while let Ok(j) = rx.try_recv() {
                self.queue.push_back(j);
            }
            if cancel.load(Ordering::SeqCst) {
                self.cancel_all();
                return;
            }
            self.admit();
            self.step();
        }
    }

    fn cancel_all(&mut self) {
        for s in &mut self.slots {
            if let Some(a) = s.busy.take() {
                let _ = a.job.events.send(done(&a, Finish::Cancelled));
            }
        }
        for j in self.queue.drain(..) {
            let _ = j.events.send(Event::Done {
                finish: Finish::Cancelled,
                prompt_tokens: j.prompt.len(),
                cached_tokens: 0,
                completion_tokens: 0,
            });
        }
        self.publish();
    }

    /// Move queued jobs into free slots: the slot sharing the longest prefix with the prompt,
    /// else the least recently used.
    fn admit(&mut self) {
        while let Some(job) = self.queue.pop_front() {
            if job.events.is_closed() {
                self.metrics.queue_left();
                continue; // the client left while waiting
            }
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.busy.is_none())
                .map(|(i, s)| (i, common_prefix(&s.cached, &job.prompt), s.last_used))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
            let Some((i, common, _)) = best else {
                self.queue.push_front(job);
                break;
            };
            self.metrics.queue_left();
            // At least the prompt's last token is computed, for its logits.
            let keep = common.min(job.prompt.len() - 1);
            self.model.truncate_slot(i, keep);
            let slot = &mut self.slots[i];
            slot.cached.truncate(keep);
            let sampler = match job.seed {
                Some(s) => Sampler::new(s),
                None => Sampler::from_clock(),
            };
            slot.busy = Some(Active {
                fed: keep,
                cached_tokens: keep,
                sampler,
                generated: Vec::new(),
                counts: Default::default(),
                decoder: StreamDecoder::new(false),
                text: String::new(),
                sent: 0,
                next: None,
                mask: TokenSet::new(0),
                masked: Vec::new(),
                pending_lp: VecDeque::new(),
                job,
            });
        }
        self.publish();
    }

    fn publish(&self) {
        let busy = self.slots.iter().filter(|s| s.busy.is_some()).count();
        self.metrics.set_busy(busy);
    }

    /// One batched pass: every decoding slot's next token, then prompt chunks in the room left.
    fn step(&mut self) {
        // Drop requests whose client is gone.
        for s in &mut self.slots {
            if s.busy.as_ref().is_some_and(|a| a.job.events.is_closed()) {
                s.busy = None;
                s.last_used = Instant::now();
                self.metrics.disconnected();
            }
        }
        let mut plan: Vec<(usize, Vec<u32>, usize)> = Vec::new();
        let mut room = self.batch;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(a) = &s.busy {
                if let Some(t) = a.next {
                    plan.push((i, vec![t], s.cached.len()));
                    room -= 1;
                }
            }
        }
        for (i, s) in self.slots.iter().enumerate() {
            if room == 0 {
                break;
            }
            if let Some(a) = &s.busy {
                if a.next.is_none() && a.fed < a.job.prompt.len() {
                    let n = (a.job.prompt.len() - a.fed).min(room);
                    plan.push((i, a.job.prompt[a.fed..a.fed + n].to_vec(), a.fed));
                    room -= n;
                }
            }
        }
        if plan.is_empty() {
            self.publish();
            return;
        }
        let (n_prompt, n_decode) = plan.iter().fold((0, 0), |(p, d), (i, t, _)| {
            if self.slots[*i]
                .busy
                .as_ref()
                .is_some_and(|a| a.next.is_some())
            {
                (p, d + t.len())
            } else {
                (p + t.len(), d)
            }
        });
        let chunks: Vec<SeqChunk> = plan
            .iter()
            .map(|(slot, tokens, start_pos)| SeqChunk {
                slot: *slot,
                tokens,
                start_pos: *start_pos,
            })
            .collect();
        let t0 = Instant::now();
        let nv = self.model.config().n_vocab;
        let cap = self.model.context_len();
        let result = self.model.step_multi(&chunks);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("the model failed: {e}");
                log::error!("{msg}");
                for (i, _, _) in &plan {
                    if let Some(a) = self.slots[*i].busy.take() {
                        let _ = a.job.events.send(Event::Error(msg.clone()));
                    }
                    let pos = self.model.slot_n_past(*i);
                    self.slots[*i].cached.truncate(pos);
                }
                self.publish();
                return;
            }
        };
        self.metrics.step(n_prompt, n_decode, t0.elapsed());
        let (tok, eog, metrics) = (&self.tok, &self.eog, &self.metrics);
        for ((i, tokens, _), row) in plan.iter().zip(logits.chunks_exact(nv)) {
            let slot = &mut self.slots[*i];
            slot.cached.extend_from_slice(tokens);
            let Some(a) = slot.busy.as_mut() else {
                continue;
            };
            if a.next.is_none() {
                a.fed += tokens.len();
                if a.fed < a.job.prompt.len() {
                    continue; // more prompt to feed
                }
                metrics.prompt_tokens(a.job.prompt.len());
            }
            let finish = sample_and_emit(a, row, tok.as_ref(), eog, slot.cached.len(), cap);
            if let Some(f) = finish {
                let a = slot.busy.take().expect("busy slot");
                metrics.generated_tokens(a.generated.len());
                let _ = a.job.events.send(done(&a, f));
                slot.last_used = Instant::now();
            }
        }
        self.publish();
    }
}

/// The final event of a request.
fn done(a: &Active, finish: Finish) -> Event {
    Event::Done {
        finish,
        prompt_tokens: a.job.prompt.len(),
        cached_tokens: a.cached_tokens,
        completion_tokens: a.generated.len(),
    }
}

/// Sample the next token of `a` from `row`, stream its text, and say whether the request is
/// finished. `cached` is the slot's cache length, `cap` its capacity.
fn sample_and_emit(
    a: &mut Active,
    row: &[f32],
    tok: &dyn Tokenizer,
    eog: &[u32],
    cached: usize,
    cap: usize,
) -> Option<Finish> {
    let penalised;
    let logits = if a.job.presence_penalty != 0.0 || a.job.frequency_penalty != 0.0 {
        let mut l = row.to_vec();
        for (&t, &c) in &a.counts {
            if let Some(v) = l.get_mut(t as usize) {
                *v -= a.job.presence_penalty + a.job.frequency_penalty * c as f32;
            }
        }
        penalised = l;
        &penalised[..]
    } else {
        row
    };
    let logits = match a.job.constraint.as_mut() {
        None => logits,
        Some(c) => {
            if c.allowed(&mut a.mask).is_err() || a.mask.is_empty() {
                return Some(flush(a, Finish::Grammar));
            }
            a.masked.clear();
            a.masked.resize(logits.len(), f32::NEG_INFINITY);
            for id in a.mask.iter() {
                if let (Some(m), Some(&l)) =
                    (a.masked.get_mut(id as usize), logits.get(id as usize))
                {
                    *m = l;
                }
            }
            &a.masked[..]
        }
    };
    let recent_from = a
        .generated
        .len()
        .saturating_sub(a.job.params.repetition_window);
    let recent = &a.generated[recent_from..];
    let (t, lp) = match a.job.logprobs {
        None => (a.sampler.sample(logits, recent, &a.job.params), None),
        Some(n) => {
            let (t, lp) = a
                .sampler
                .sample_with_logprobs(logits, recent, &a.job.params, n);
            (t, Some(lp))
        }
    };
    if let Some(c) = a.job.constraint.as_mut() {
        if c.accept_token(t).is_err() {
            return Some(flush(a, Finish::Grammar));
        }
    }
    if !a.job.ignore_eos && eog.contains(&t) {
        return Some(flush(a, Finish::Stop));
    }
    a.generated.push(t);
    *a.counts.entry(t).or_insert(0) += 1;
    if let Some(lp) = lp {
        a.pending_lp.push_back((a.text.len(), lp));
    }
    let piece = a.decoder.push(tok, t, false).unwrap_or_default();
    a.text.push_str(&piece);
    if let Some(f) = emit(a) {
        return Some(f);
    }
    if a.generated.len() >= a.job.max_tokens || cached + 1 >= cap {
        return Some(flush(a, Finish::Length));
    }
    a.next = Some(t);
    None
}

/// Send the text that can be sent: up to a stop string (then the request is finished), or up
/// to the longest tail that could still become one.
fn emit(a: &mut Active) -> Option<Finish> {
    let stops = &a.job.stop;
    // Text before `sent` held no start of a stop string (it would have been held back), so a
    // stop string can only begin at or after it.
    if let Some(at) = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| a.text[a.sent..].find(s.as_str()).map(|i| i + a.sent))
        .min()
    {
        if at > a.sent {
            send_text(a, at);
        }
        a.sent = at;
        return Some(Finish::Stop);
    }
    let hold = stops
        .iter()
        .map(|s| held_tail(&a.text[a.sent..], s))
        .max()
        .unwrap_or(0);
    let end = a.text.len() - hold;
    if end > a.sent {
        send_text(a, end);
        a.sent = end;
    }
    None
}

/// Send `text[sent..end]` with the log-probabilities of the tokens starting before `end`.
fn send_text(a: &mut Active, end: usize) {
    let mut lps = Vec::new();
    while a.pending_lp.front().is_some_and(|(at, _)| *at < end) {
        if let Some((_, lp)) = a.pending_lp.pop_front() {
            lps.push(lp);
        }
    }
    let _ = a
        .job
        .events
        .send(Event::Text(a.text[a.sent..end].to_string(), lps));
}

/// Finish: send what is left (a held tail that did not become a stop string, and the stream
/// decoder's last bytes) and return `f`.
fn flush(a: &mut Active, f: Finish) -> Finish {
    let tail = a.decoder.finish();
    a.text.push_str(&tail);
    if emit(a).is_some() {
        return Finish::Stop;
    }
    if a.text.len() > a.sent {
        send_text(a, a.text.len());
        a.sent = a.text.len();
    }
    f
}

/// Length of the common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
