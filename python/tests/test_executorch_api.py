"""The same script runs against ExecuTorch's binding and lmrun's, naming only the import: the
API matches. Needs the `executorch` wheel; skipped (with the reason) where it is not installed."""

import importlib

import pytest

from conftest import PTE_DATA, TOK512, reference_ids

SCRIPT_MODULES = ["lmrun", "executorch.extension.llm.runner"]


def run_script(mod):
    """What an ExecuTorch user writes, with `mod` as the runner module."""
    pte = str(PTE_DATA / "tiny_xnnpack_fp32.pte")
    runner = mod.TextLLMRunner(pte, str(TOK512))
    config = mod.GenerationConfig(echo=False, max_new_tokens=32, temperature=0.0, num_bos=0,
                                  num_eos=0)
    pieces, stats = [], []
    runner.generate("Once upon a time", config, token_callback=pieces.append,
                    stats_callback=stats.append)
    runner.reset()
    return "".join(pieces), stats[0].to_json_string()


@pytest.mark.parametrize("name", SCRIPT_MODULES)
def test_same_script_runs(name):
    try:
        mod = importlib.import_module(name)
    except ImportError as e:
        pytest.skip(f"{name} is not installed here ({e}); the ExecuTorch wheel needs torch, "
                    "which CI does not install")
    text, stats_json = run_script(mod)
    assert text
    assert '"generated_tokens":' in stats_json
    if name == "lmrun":
        import lmrun
        ids = reference_ids("xnnpack_fp32")
        r = lmrun.TextLLMRunner(str(PTE_DATA / "tiny_xnnpack_fp32.pte"), str(TOK512))
        assert text == r.detokenize(ids)
