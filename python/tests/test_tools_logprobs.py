"""Log-probabilities, mirostat and tool calls through the package: `generate_detailed` with
`n_probs`, `chat_detailed` with OpenAI-style `tools` (the call parsed from Qwen's answer), and
`apply_chat_template` rendering a tool round trip as the model's template defines it."""

import math

import pytest

import lmrun

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_logprobs_of_greedy_tokens(gemma):
    runner = lmrun.TextLLMRunner(gemma)
    d = runner.generate_detailed("The capital of France is", max_new_tokens=12, temperature=0,
                                 n_probs=3)
    assert len(d["logprobs"]) == len(d["token_ids"]) > 0
    assert d["stop_reason"] in ("eos", "maxtokens")
    assert d["stats"].num_generated_tokens == len(d["token_ids"])
    for id_, lp in zip(d["token_ids"], d["logprobs"]):
        top = lp["top_logprobs"]
        assert lp["id"] == id_ and len(top) == 3
        # Greedy: the chosen token is the most likely one, and the three are a distribution's.
        assert top[0]["id"] == id_ and top[0]["logprob"] == pytest.approx(lp["logprob"])
        assert all(a["logprob"] >= b["logprob"] for a, b in zip(top, top[1:]))
        assert lp["logprob"] <= 0 and sum(math.exp(t["logprob"]) for t in top) <= 1 + 1e-5
    assert "".join(lp["token"] for lp in d["logprobs"]).strip() == d["text"].strip()
    # Without n_probs nothing is reported.
    assert runner.generate_detailed("Hi", max_new_tokens=2, temperature=0)["logprobs"] == []


def test_mirostat_is_seeded_and_checked(gemma):
    runner = lmrun.TextLLMRunner(gemma)
    a = runner.generate_text("Once upon a time", max_new_tokens=16, temperature=0.8, seed=7,
                             mirostat=2, mirostat_tau=3.0)
    runner.reset()
    b = runner.generate_text("Once upon a time", max_new_tokens=16, temperature=0.8, seed=7,
                             mirostat=2, mirostat_tau=3.0)
    assert a == b and a
    with pytest.raises(ValueError, match="mirostat"):
        runner.generate_text("x", mirostat=1)
    with pytest.raises(ValueError, match="mirostat_tau"):
        runner.generate_text("x", mirostat=2, mirostat_tau=0.0)
    assert "mirostat=0" in repr(lmrun.GenerationConfig())


def test_chat_tool_call_round_trip(qwen):
    runner = lmrun.TextLLMRunner(qwen)
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    d = runner.chat_detailed(msgs, tools=[WEATHER], max_new_tokens=60, temperature=0)
    assert d["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}], d
    # The reply goes back with the tool's answer, as the template formats tool turns.
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18}'}]
    text = runner.apply_chat_template(follow, tools=[WEATHER])
    assert '"name": "get_weather"' in text and '"description": "Get the current weather' in text
    assert ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            in text)
    assert '<tool_response>\n{"temperature_c": 18}\n</tool_response>' in text
    assert text.endswith("<|im_start|>assistant\n")
    # Without tools nothing is parsed, and the plain chat still works.
    d = runner.chat_detailed(msgs, max_new_tokens=8, temperature=0)
    assert d["tool_calls"] == [] and d["content"] == d["text"]
    assert runner.chat(msgs, tools=[WEATHER], max_new_tokens=60, temperature=0)


def test_bad_tools_are_errors(qwen, gemma):
    runner = lmrun.TextLLMRunner(qwen)
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match=r"tools\[0\].function"):
        runner.chat(msgs, tools=[{"type": "function"}])
    with pytest.raises(ValueError, match="tool_calls"):
        runner.apply_chat_template([{"role": "assistant", "content": None,
                                     "tool_calls": [{"id": "x"}]}])
    # Gemma 3 270M's file has no chat template, hence no tool format.
    with pytest.raises(ValueError, match="no format for tools"):
        lmrun.TextLLMRunner(gemma).chat(msgs, tools=[WEATHER])
