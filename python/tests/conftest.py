"""Shared fixtures of the lmrun Python package's tests: where the real models, the ExecuTorch
fixtures and the `lmrun` command are, and a helper that runs the command for reference output.

The real models are never skipped: a missing model fails the test (scripts/fetch_models.sh
fetches them; scripts/test.sh does so before running these tests)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PTE_DATA = REPO / "crates" / "lmrun-pte" / "tests" / "data"
TOK512 = REPO / "crates" / "lmrun-cli" / "tests" / "data" / "tok512.json"


def models_dir() -> Path:
    return Path(os.environ.get("LMRUN_MODELS_DIR", Path.home() / ".cache" / "lmrun" / "models"))


def _model(name: str) -> Path:
    p = models_dir() / name
    assert p.is_file(), f"{p} is missing: run scripts/fetch_models.sh all"
    return p


@pytest.fixture(scope="session")
def gemma() -> Path:
    return _model("gemma-3-270m-q4_k_m.gguf")


@pytest.fixture(scope="session")
def qwen() -> Path:
    return _model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


@pytest.fixture(scope="session")
def lmrun_bin() -> Path:
    env = os.environ.get("LMRUN_BIN")
    candidates = [Path(env)] if env else [REPO / "target" / "release" / "lmrun", REPO / "target" / "debug" / "lmrun"]
    for c in candidates:
        if c.is_file():
            return c
    pytest.fail(f"the lmrun command is not built (looked for {candidates}); set LMRUN_BIN")


def cli_run(lmrun_bin: Path, model: Path, prompt: str, n: int, *extra: str) -> dict:
    """`lmrun run --output json` greedy, as a dict."""
    cmd = [str(lmrun_bin), "run", "-m", str(model), "-p", prompt, "-n", str(n),
           "--temperature", "0", "--output", "json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd}: {out.stderr}"
    return json.loads(out.stdout)


def reference_ids(variant: str) -> list:
    """The 32 greedy ids ExecuTorch's own runner produced for a .pte fixture."""
    v = json.loads((PTE_DATA / f"run_{variant}.json").read_text())
    return v["runner"]["piece_ids"]
