"""Bad input and the failure branches: Python exceptions with lmrun's message, never an abort
of the interpreter; the mlock failure branch for real (a privilege-dropped subprocess); Ctrl-C
as KeyboardInterrupt."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import lmrun


def test_missing_files_are_file_not_found(tmp_path, gemma):
    with pytest.raises(FileNotFoundError) as e:
        lmrun.TextLLMRunner(tmp_path / "nope.gguf")
    assert "nope.gguf" in str(e.value)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        lmrun.TextLLMRunner(gemma, tokenizer_path=tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError):
        lmrun.tokenize(tmp_path / "nope.gguf", "hi")
    with pytest.raises(IsADirectoryError):
        lmrun.TextLLMRunner(tmp_path)


def test_corrupt_and_truncated_files_are_load_errors(tmp_path, gemma):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"\x00\x01 not a model at all " * 100)
    with pytest.raises(lmrun.LoadError) as e:
        lmrun.TextLLMRunner(garbage)
    assert "garbage.gguf" in str(e.value)
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, lmrun.LmrunError)
    assert e.value.errno is None
    truncated = tmp_path / "truncated.gguf"
    with open(gemma, "rb") as f:
        truncated.write_bytes(f.read(3_000_000))
    with pytest.raises(lmrun.LoadError) as e:
        lmrun.TextLLMRunner(truncated)
    assert "truncated.gguf" in str(e.value)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(lmrun.LoadError, match="empty"):
        lmrun.TextLLMRunner(empty)


def test_bad_arguments_are_value_errors(gemma):
    r = lmrun.TextLLMRunner(gemma, context_len=64)
    with pytest.raises(ValueError, match="empty"):
        r.generate_text("")
    with pytest.raises(ValueError, match="only 64 of the context"):
        r.generate_text("hello " * 200)
    with pytest.raises(ValueError, match="temperature"):
        r.generate_text("hi", temperature=-2)
    with pytest.raises(ValueError, match="top_p"):
        r.generate_text("hi", top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens is 0"):
        r.generate_text("hi", max_new_tokens=0)
    with pytest.raises(TypeError, match="bogus"):
        r.generate_text("hi", bogus=1)
    with pytest.raises(TypeError):
        r.generate("hi", lmrun.GenerationConfig(), token_callback=42)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        r.detokenize([10**9])
    with pytest.raises(ValueError, match="unknown load mode"):
        lmrun.TextLLMRunner(gemma, load_mode="mmap-please")
    with pytest.raises(ValueError, match="temperature"):
        lmrun.TextLLMRunner(gemma, temperature=-3)
    with pytest.raises(ValueError, match="longer than"):
        lmrun.TextLLMRunner(gemma, context_len=10**7)
    # Still usable after every error.
    assert r.generate_text("hi", max_new_tokens=2, temperature=0)


def test_generation_config_matches_executorch():
    c = lmrun.GenerationConfig()
    assert (c.echo, c.max_new_tokens, c.warming, c.seq_len) == (True, -1, False, -1)
    assert c.temperature == pytest.approx(0.8)
    c = lmrun.GenerationConfig(max_new_tokens=10, seq_len=-1)
    assert c.resolve_max_new_tokens(100, 20) == 10
    assert lmrun.GenerationConfig().resolve_max_new_tokens(100, 20) == 80
    assert lmrun.GenerationConfig(seq_len=50).resolve_max_new_tokens(100, 20) == 30
    assert lmrun.GenerationConfig(seq_len=50, max_new_tokens=5).resolve_max_new_tokens(100, 20) == 5
    assert lmrun.GenerationConfig(seq_len=10).resolve_max_new_tokens(100, 20) == 0
    c.temperature = 0.0
    c.seed = 7
    assert "seed=7" in repr(c)
    with pytest.raises(TypeError):
        lmrun.GenerationConfig(10)  # keyword-only, as ExecuTorch's


def _python_for_nobody():
    """An interpreter uid 65534 can run (the venv's may live under root's home)."""
    for exe in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not exe:
            continue
        r = subprocess.run(_unprivileged() + [exe, "-c", "import json"], capture_output=True)
        if r.returncode == 0:
            return exe
    return None


def _unprivileged():
    cmd = []
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all"]
    return cmd + ["prlimit", "--memlock=65536:65536"]


def test_mlock_failure_branch_for_real(gemma, tmp_path_factory):
    """Without CAP_IPC_LOCK and with a 64 KiB mlock limit: MmapUseMlock raises lmrun.LoadError
    with the errno; the default mode loads unlocked and says so; Mmap never tries."""
    if not shutil.which("prlimit") or (os.geteuid() == 0 and not shutil.which("setpriv")):
        pytest.skip("setpriv/prlimit are not installed; the Rust loader tests cover this branch")
    py = _python_for_nobody()
    if py is None:
        pytest.skip("no Python interpreter that uid 65534 can run")
    d = Path(tempfile.mkdtemp(prefix="lmrun-py-mlock-"))
    try:
        os.chmod(d, 0o755)
        pkg = Path(lmrun.__file__).parent
        shutil.copytree(pkg, d / "lmrun")
        for root, dirs, files in os.walk(d):
            for n in dirs:
                os.chmod(os.path.join(root, n), 0o755)
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)
        model = d / "gemma.gguf"
        try:
            os.link(gemma, model)
        except OSError:
            shutil.copy(gemma, model)
        os.chmod(model, 0o644)
        script = textwrap.dedent(f"""
            import json, lmrun
            out = {{}}
            try:
                lmrun.TextLLMRunner({str(model)!r}, load_mode=lmrun.LoadMode.MmapUseMlock)
                out["strict"] = "loaded"
            except lmrun.LoadError as e:
                out["strict"] = {{"errno": e.errno, "msg": str(e), "path": e.path}}
            r = lmrun.TextLLMRunner({str(model)!r})
            rep = r.load_report
            out["default"] = {{"in_effect": rep.mode_in_effect.cli_name, "mlock": rep.mlock,
                               "errno": rep.mlock_errno,
                               "text": r.generate_text("Hello", max_new_tokens=5, temperature=0)}}
            r = lmrun.TextLLMRunner({str(model)!r}, load_mode="mmap")
            out["mmap"] = r.load_report.mlock
            print(json.dumps(out))
        """)
        env = dict(os.environ, PYTHONPATH=str(d), HOME=str(d))
        res = subprocess.run(_unprivileged() + [py, "-c", script], capture_output=True,
                             text=True, env=env, cwd=d, timeout=300)
        assert res.returncode == 0, res.stderr
        import json
        out = json.loads(res.stdout)
        strict = out["strict"]
        assert strict != "loaded"
        assert strict["errno"] in (1, 11, 12)  # EPERM / EAGAIN / ENOMEM
        assert "gemma.gguf" in strict["msg"] and "RLIMIT_MEMLOCK" in strict["msg"]
        assert strict["path"].endswith("gemma.gguf")
        d_ = out["default"]
        assert (d_["in_effect"], d_["mlock"]) == ("mmap", "failed")
        assert d_["errno"] in (1, 11, 12)
        # Same text as a privileged, locked load.
        ref = lmrun.TextLLMRunner(gemma).generate_text("Hello", max_new_tokens=5, temperature=0)
        assert d_["text"] == ref
        assert out["mmap"] == "not-attempted"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_ctrl_c_raises_keyboard_interrupt_within_a_token(gemma):
    script = textwrap.dedent(f"""
        import sys, lmrun
        r = lmrun.TextLLMRunner({str(gemma)!r})
        n = [0]
        def cb(p):
            n[0] += 1
            if n[0] == 2:
                print("started", flush=True)
        cfg = lmrun.GenerationConfig(max_new_tokens=3000, temperature=0, ignore_eos=True,
                                     echo=False)
        try:
            r.generate("Once upon a time", cfg, token_callback=cb)
            print("finished", n[0], flush=True)
        except KeyboardInterrupt:
            print("interrupted", n[0], flush=True)
            r.reset()
            print("after", r.generate_text("Hi", max_new_tokens=2, temperature=0) != "", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    lines = out.split()
    assert lines[0] == "interrupted", out
    assert int(lines[1]) < 3000
    assert "after True" in out
    assert p.returncode == 0


def test_ctrl_c_during_a_long_prefill(gemma):
    """No token arrives during a prompt's prefill; Ctrl-C still gets in."""
    script = textwrap.dedent(f"""
        import lmrun, time
        r = lmrun.TextLLMRunner({str(gemma)!r}, threads=1)
        prompt = "word " * 3500
        print("loaded", flush=True)
        t = time.monotonic()
        try:
            r.generate_text(prompt, max_new_tokens=1, temperature=0)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", r.position, flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "loaded"
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert out.split()[:2] == ["interrupted", "0"], out
