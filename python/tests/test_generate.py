"""Greedy output through the package equals the `lmrun` command's on both real models and
ExecuTorch's own runner's on the .pte fixtures, in every load mode; the load report tells which
mode took effect."""

import pytest

import lmrun
from conftest import PTE_DATA, TOK512, cli_run, reference_ids

MODES = [lmrun.LoadMode.File, lmrun.LoadMode.Mmap, lmrun.LoadMode.MmapUseMlock,
         lmrun.LoadMode.MmapUseMlockIgnoreErrors]


@pytest.mark.parametrize("which,prompt", [
    ("gemma", "The capital of France is"),
    ("qwen", "def fibonacci(n):"),
])
def test_greedy_equals_cli(request, lmrun_bin, which, prompt):
    model = request.getfixturevalue(which)
    ref = cli_run(lmrun_bin, model, prompt, 24)
    runner = lmrun.TextLLMRunner(model)
    text, ids, stats = runner.generate_full(prompt, max_new_tokens=24, temperature=0)
    assert ids == ref["generated_token_ids"]
    assert text == ref["text"]
    assert stats.num_generated_tokens == len(ids)
    assert stats.num_prompt_tokens == len(ref["prompt_token_ids"])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.cli_name)
def test_every_load_mode_same_tokens_and_observable(gemma, lmrun_bin, mode):
    ref = cli_run(lmrun_bin, gemma, "Hello", 12)
    runner = lmrun.TextLLMRunner(gemma, load_mode=mode)
    rep = runner.load_report
    assert rep.mode_requested == mode
    # Root with CAP_IPC_LOCK here: locking succeeds (the failure branch is in test_errors.py).
    expected = {
        lmrun.LoadMode.File: (lmrun.LoadMode.File, "not-attempted"),
        lmrun.LoadMode.Mmap: (lmrun.LoadMode.Mmap, "not-attempted"),
        lmrun.LoadMode.MmapUseMlock: (lmrun.LoadMode.MmapUseMlock, "locked"),
        lmrun.LoadMode.MmapUseMlockIgnoreErrors: (lmrun.LoadMode.MmapUseMlock, "locked"),
    }[mode]
    assert (rep.mode_in_effect, rep.mlock) == expected
    if mode == lmrun.LoadMode.File:
        assert rep.bytes_read >= gemma.stat().st_size and rep.bytes_mapped == 0
    else:
        assert rep.bytes_mapped >= gemma.stat().st_size
    if rep.mlock == "locked":
        assert rep.bytes_locked == rep.bytes_mapped
    assert rep.to_dict()["mode"] == mode.cli_name
    _, ids, _ = runner.generate_full("Hello", max_new_tokens=12, temperature=0)
    assert ids == ref["generated_token_ids"]


def test_default_load_mode_and_string_modes(gemma):
    assert lmrun.DEFAULT_LOAD_MODE == lmrun.LoadMode.MmapUseMlockIgnoreErrors
    assert lmrun.TextLLMRunner(gemma).load_mode == lmrun.LoadMode.MmapUseMlockIgnoreErrors
    assert lmrun.TextLLMRunner(gemma, load_mode="mmap").load_mode == lmrun.LoadMode.Mmap
    r = lmrun.create_text_llm_runner(str(gemma), None, None, -1.0, "forward", "MmapUseMlock")
    assert r.load_mode == lmrun.LoadMode.MmapUseMlock


PTE_VARIANTS = [
    ("portable_sdpa", False), ("portable_nosdpa", False), ("portable_nosdpa_static", False),
    ("xnnpack_fp32", False), ("xnnpack_8da4w", False), ("xnnpack_fp32_ptd", True),
    ("xnnpack_8da4w_ptd", True),
]


@pytest.mark.parametrize("variant,has_ptd", PTE_VARIANTS, ids=[v for v, _ in PTE_VARIANTS])
def test_pte_fixtures_match_executorch(variant, has_ptd):
    pte = PTE_DATA / f"tiny_{variant}.pte"
    ptd = PTE_DATA / f"tiny_{variant}.ptd" if has_ptd else None
    for mode in MODES:
        # ExecuTorch's Python argument order: model, tokenizer, data.
        runner = lmrun.TextLLMRunner(str(pte), str(TOK512), str(ptd) if ptd else None,
                                     load_mode=mode)
        cfg = lmrun.GenerationConfig(max_new_tokens=32, temperature=0, echo=False)
        pieces = []
        runner.generate("Once upon a time", cfg, token_callback=pieces.append)
        _, ids, _ = (runner.reset(), *runner.generate_full("Once upon a time", cfg))[1:]
        assert ids == reference_ids(variant), f"{variant} in {mode}"
        assert "".join(pieces) == runner.detokenize(ids)


def test_pte_without_its_data_file_and_unrunnable_program_raise():
    r = lmrun.TextLLMRunner(str(PTE_DATA / "tiny_xnnpack_fp32_ptd.pte"), str(TOK512))
    assert not r.is_loaded()
    with pytest.raises(lmrun.LoadError, match="external data"):
        r.load()
    with pytest.raises(lmrun.LoadError, match="external data"):
        r.generate("Once upon a time", lmrun.GenerationConfig(max_new_tokens=4))
    # A program ExecuTorch itself cannot run: an lmrun exception, never an abort.
    with pytest.raises(lmrun.LmrunError):
        r = lmrun.TextLLMRunner(str(PTE_DATA / "tiny_portable_8da4w.pte"), str(TOK512))
        r.generate("Once upon a time", lmrun.GenerationConfig(max_new_tokens=4))


def test_stop_strings_penalties_and_overflow_options(gemma):
    runner = lmrun.TextLLMRunner(gemma)
    text, ids, _ = runner.generate_full("The capital of France is", max_new_tokens=12,
                                        temperature=0)
    words = text.split()
    assert len(words) >= 3, text
    stop = words[1] + " " + words[2]
    runner.reset()
    cut, _, _ = runner.generate_full("The capital of France is", max_new_tokens=12,
                                     temperature=0, stop=[stop])
    assert cut == text[:text.index(stop)]
    # Banning the first greedy token changes the answer.
    runner.reset()
    _, ids2, _ = runner.generate_full("The capital of France is", max_new_tokens=4,
                                      temperature=0, logit_bias={ids[0]: float("-inf")})
    assert ids2[0] != ids[0]
    cfg = lmrun.GenerationConfig(stop=["x"], presence_penalty=0.5, context_overflow="shift")
    assert cfg.stop == ["x"] and cfg.context_overflow == "shift"
    with pytest.raises(ValueError, match="context_overflow"):
        runner.generate_full("Hi", context_overflow="sometimes")
