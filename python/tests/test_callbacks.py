"""Callbacks, stop, reset, streaming, chat and threads: what a Python program driving the runner
relies on. Stopping from another thread only works if the model computes with the GIL
released, so these tests also check that."""

import json
import threading

import pytest

import lmrun

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def runner(gemma):
    return lmrun.TextLLMRunner(gemma)


def test_token_and_stats_callbacks(runner):
    runner.reset()
    pieces, stats = [], []
    cfg = lmrun.GenerationConfig(max_new_tokens=10, temperature=0)
    assert cfg.echo is True
    assert runner.generate(PROMPT, cfg, token_callback=pieces.append,
                           stats_callback=stats.append) is None
    assert pieces[0] == PROMPT  # echo: the prompt first, then the generated pieces
    assert len(stats) == 1
    s = stats[0]
    assert isinstance(s, lmrun.Stats)
    assert s.num_generated_tokens == 10
    assert s.num_decode_steps == 9
    assert s.num_prompt_tokens == len(runner.tokenize(PROMPT))
    j = json.loads(s.to_json_string())
    assert list(j) == ["prompt_tokens", "generated_tokens", "model_load_start_ms",
                       "model_load_end_ms", "inference_start_ms", "inference_end_ms",
                       "prompt_eval_end_ms", "first_token_ms", "aggregate_sampling_time_ms",
                       "SCALING_FACTOR_UNITS_PER_SECOND"]
    assert j["generated_tokens"] == 10 and j["SCALING_FACTOR_UNITS_PER_SECOND"] == 1000
    assert s.inference_start_ms <= s.prompt_eval_end_ms <= s.inference_end_ms
    assert s.to_dict()["load"]["mode"] == "mmap-mlock-ignore-errors"
    runner.reset()
    text = runner.generate_text(PROMPT, max_new_tokens=10, temperature=0)
    assert "".join(pieces[1:]) == text


def test_generation_continues_until_reset(runner):
    runner.reset()
    runner.generate_text(PROMPT, max_new_tokens=4, temperature=0)
    pos = runner.position
    assert pos > 0
    runner.generate_text(" and then", max_new_tokens=4, temperature=0)
    assert runner.position > pos
    runner.reset()
    assert runner.position == 0


def test_stop_from_another_thread(runner):
    """A Python thread calls stop() while generate() runs: possible only with the GIL
    released, and generation ends early."""
    runner.reset()
    started = threading.Event()
    pieces = []

    def on_piece(p):
        pieces.append(p)
        started.set()

    def stopper():
        started.wait(60)
        runner.stop()

    t = threading.Thread(target=stopper)
    t.start()
    _, ids, stats = None, None, None
    cfg = lmrun.GenerationConfig(max_new_tokens=2000, temperature=0, ignore_eos=True, echo=False)
    stats = []
    runner.generate(PROMPT, cfg, token_callback=on_piece, stats_callback=stats.append)
    t.join()
    assert 1 <= stats[0].num_generated_tokens < 2000
    # The runner is still usable.
    runner.reset()
    assert runner.generate_text(PROMPT, max_new_tokens=3, temperature=0)


def test_stop_without_callbacks_from_another_thread(runner):
    """No callback at all: the GIL is still released (the other thread's stop() gets in)."""
    runner.reset()
    result = {}

    def work():
        result["out"] = runner.generate_full(PROMPT, max_new_tokens=2000, temperature=0,
                                             ignore_eos=True)

    t = threading.Thread(target=work)
    t.start()
    # Wait until the worker is inside the model (its position moves), then stop it.
    import time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t.is_alive():
        runner.stop()
        time.sleep(0.05)
        if not t.is_alive():
            break
    t.join(120)
    assert not t.is_alive()
    _, ids, _ = result["out"]
    assert len(ids) < 2000


def test_stop_from_inside_the_callback(runner):
    runner.reset()
    pieces = []

    def cb(p):
        pieces.append(p)
        if len(pieces) == 3:
            runner.stop()

    cfg = lmrun.GenerationConfig(max_new_tokens=50, temperature=0, echo=False, ignore_eos=True)
    runner.generate(PROMPT, cfg, token_callback=cb)
    assert len(pieces) == 3


def test_callback_exception_propagates_and_runner_survives(runner):
    runner.reset()

    def cb(p):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        runner.generate(PROMPT, lmrun.GenerationConfig(max_new_tokens=20), token_callback=cb)
    runner.reset()
    assert runner.generate_text(PROMPT, max_new_tokens=3, temperature=0)


def test_reentrant_call_from_callback_is_an_error(runner):
    runner.reset()
    seen = []

    def cb(p):
        try:
            runner.reset()
        except RuntimeError as e:
            seen.append(str(e))
            runner.stop()

    runner.generate(PROMPT, lmrun.GenerationConfig(max_new_tokens=20, echo=False),
                    token_callback=cb)
    assert seen and "busy" in seen[0]


def test_stream_equals_generate_text_and_break_stops(runner):
    runner.reset()
    expected = runner.generate_text(PROMPT, max_new_tokens=12, temperature=0)
    runner.reset()
    pieces = list(runner.stream(PROMPT, max_new_tokens=12, temperature=0))
    assert "".join(pieces) == expected
    runner.reset()
    it = runner.stream(PROMPT, max_new_tokens=500, temperature=0, ignore_eos=True)
    for i, _ in enumerate(it):
        if i == 2:
            break
    it.close()
    stats = runner.stats
    assert stats.num_generated_tokens < 500
    runner.reset()
    assert runner.generate_text(PROMPT, max_new_tokens=12, temperature=0) == expected


def test_two_runners_in_two_threads(gemma, qwen):
    """Two runners computing at once give the same text as each alone."""
    a, b = lmrun.TextLLMRunner(gemma, threads=1), lmrun.TextLLMRunner(qwen, threads=1)
    alone = [a.generate_text(PROMPT, max_new_tokens=16, temperature=0),
             b.generate_text(PROMPT, max_new_tokens=16, temperature=0)]
    a.reset()
    b.reset()
    out = [None, None]

    def work(i, r):
        out[i] = r.generate_text(PROMPT, max_new_tokens=16, temperature=0)

    ts = [threading.Thread(target=work, args=(0, a)), threading.Thread(target=work, args=(1, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == alone


def test_chat_uses_the_template(qwen):
    r = lmrun.TextLLMRunner(qwen)
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a Python function that adds two numbers."}]
    prompt = r.apply_chat_template(msgs)
    assert "<|im_start|>user\nWrite a Python function" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    reply = r.chat(msgs, max_new_tokens=24, temperature=0)
    r.reset()
    assert reply == r.generate_text(prompt, max_new_tokens=24, temperature=0)
    assert "def" in reply
    with pytest.raises(ValueError):
        r.chat([])
    with pytest.raises(ValueError):
        r.chat([{"role": "user"}])


def test_tokenize_module_and_runner_agree(gemma, qwen):
    for m in (gemma, qwen):
        r = lmrun.TextLLMRunner(m)
        ids = lmrun.tokenize(m, "Hello, world!")
        assert ids == r.tokenize("Hello, world!")
        assert r.detokenize(ids) == "Hello, world!"
        assert lmrun.detokenize(m, ids) == "Hello, world!"
        assert r.get_vocab_size() > 100000
    g = lmrun.TextLLMRunner(gemma)
    assert g.tokenize("Hi")[0] == 2  # Gemma adds BOS by its rule
    assert g.tokenize("Hi", add_bos=False)[0] != 2
