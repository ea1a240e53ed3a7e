"""Type stubs of lmrun's extension module (re-exported by the `lmrun` package)."""

import os
import pathlib
from typing import Callable, Iterator, Optional, Sequence, Union

_Path = Union[str, "os.PathLike[str]"]

__version__: str

class LmrunError(RuntimeError):
    """Base class of lmrun's own exceptions."""

class LoadError(LmrunError):
    """A model, data or tokenizer file could not be loaded (corrupt, truncated, unknown format,
    or an mlock failure under LoadMode.MmapUseMlock)."""

    errno: Optional[int]
    """The OS error number of an mlock failure, else None."""
    path: Optional[str]
    """The file that failed, when known."""

class LoadMode:
    """How the model file is loaded (ExecuTorch's Module::LoadMode). Hashable, comparable,
    int() gives 0..3."""

    File: "LoadMode"
    """Read the whole file into memory."""
    Mmap: "LoadMode"
    """Map the file; pages come in on first touch and can be evicted."""
    MmapUseMlock: "LoadMode"
    """Map and pin with mlock; a failed mlock fails the load (the mapping is released)."""
    MmapUseMlockIgnoreErrors: "LoadMode"
    """Map and try to pin; a failed mlock is logged and the load goes on (the default)."""
    def __int__(self) -> int: ...
    @property
    def cli_name(self) -> str:
        """`file`, `mmap`, `mmap-mlock` or `mmap-mlock-ignore-errors`."""

DEFAULT_LOAD_MODE: LoadMode

class GenerationConfig:
    """How one generate call runs: ExecuTorch's fields and defaults (num_bos/num_eos default to
    None = the model's own rule) plus lmrun's sampling fields. Keyword-only."""

    echo: bool
    max_new_tokens: int
    warming: bool
    seq_len: int
    temperature: float
    num_bos: Optional[int]
    num_eos: Optional[int]
    ignore_eos: bool
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    repetition_window: int
    seed: Optional[int]
    parse_special: bool
    stop: list[str]
    presence_penalty: float
    frequency_penalty: float
    logit_bias: dict[int, float]
    typical_p: float
    context_overflow: str
    n_keep: int
    grammar: Optional[str]
    json_schema: Optional[str]
    mirostat: int
    mirostat_tau: float
    mirostat_eta: float
    n_probs: int
    def __init__(
        self,
        *,
        echo: bool = True,
        max_new_tokens: int = -1,
        warming: bool = False,
        seq_len: int = -1,
        temperature: float = 0.8,
        num_bos: Optional[int] = None,
        num_eos: Optional[int] = None,
        ignore_eos: bool = False,
        top_k: int = 0,
        top_p: float = 0.9,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        repetition_window: int = 64,
        seed: Optional[int] = None,
        parse_special: bool = True,
        stop: Sequence[str] = (),
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: Optional[dict[int, float]] = None,
        typical_p: float = 1.0,
        context_overflow: str = "error",
        n_keep: int = 0,
        grammar: Optional[str] = None,
        json_schema: Optional[str] = None,
        mirostat: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        n_probs: int = 0,
    ) -> None: ...
    def resolve_max_new_tokens(self, max_context_len: int, num_prompt_tokens: int) -> int:
        """How many tokens may be generated (ExecuTorch's rule)."""

class LoadReport:
    """What loading the model did."""

    @property
    def mode_requested(self) -> Optional[LoadMode]: ...
    @property
    def mode_in_effect(self) -> Optional[LoadMode]:
        """MmapUseMlockIgnoreErrors becomes MmapUseMlock when locked, Mmap when mlock failed."""
    @property
    def mlock(self) -> str:
        """`locked`, `failed` or `not-attempted`."""
    @property
    def mlock_errno(self) -> Optional[int]: ...
    @property
    def bytes_mapped(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def bytes_locked(self) -> int: ...
    @property
    def elapsed_ms(self) -> float: ...
    def to_dict(self) -> dict: ...

class Stats:
    """What one generate call measured (ExecuTorch's Stats plus lmrun's rates and memory)."""

    @property
    def model_load_start_ms(self) -> int: ...
    @property
    def model_load_end_ms(self) -> int: ...
    @property
    def inference_start_ms(self) -> int: ...
    @property
    def token_encode_end_ms(self) -> int: ...
    @property
    def prompt_eval_end_ms(self) -> int: ...
    @property
    def first_token_ms(self) -> int: ...
    @property
    def inference_end_ms(self) -> int: ...
    @property
    def aggregate_sampling_time_ms(self) -> int: ...
    @property
    def num_prompt_tokens(self) -> int: ...
    @property
    def num_generated_tokens(self) -> int: ...
    @property
    def num_decode_steps(self) -> int: ...
    @property
    def prompt_tokens_per_s(self) -> float: ...
    @property
    def decode_tokens_per_s(self) -> float: ...
    @property
    def time_to_first_token_ms(self) -> int: ...
    @property
    def peak_rss_bytes(self) -> Optional[int]: ...
    @property
    def load(self) -> LoadReport: ...
    def to_json_string(self) -> str:
        """ExecuTorch's PyTorchObserver JSON."""
    def to_dict(self) -> dict:
        """ExecuTorch's keys, then lmrun's rates, memory and load report."""
    def reset(self) -> None: ...

class TokenStream(Iterator[str]):
    """The iterator TextLLMRunner.stream returns; breaking out (or close()) stops generation."""

    def __iter__(self) -> "TokenStream": ...
    def __next__(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> "TokenStream": ...
    def __exit__(self, *args: object) -> bool: ...

_Message = dict

class TextLLMRunner:
    """ExecuTorch's TextLLMRunner over lmrun: GGUF models and ExecuTorch .pte programs."""

    def __init__(
        self,
        model_path: _Path,
        tokenizer_path: Optional[_Path] = None,
        data_path: Optional[_Path] = None,
        temperature: float = -1.0,
        load_mode: Union[LoadMode, str, None] = None,
        *,
        method_name: str = "forward",
        threads: int = 0,
        context_len: Optional[int] = None,
        allow_long_context: bool = False,
    ) -> None: ...
    def generate(
        self,
        prompt: str,
        config: Optional[GenerationConfig] = None,
        token_callback: Optional[Callable[[str], object]] = None,
        stats_callback: Optional[Callable[[Stats], object]] = None,
    ) -> None: ...
    def generate_text(
        self,
        prompt: str,
        config: Optional[GenerationConfig] = None,
        token_callback: Optional[Callable[[str], object]] = None,
        **options: object,
    ) -> str: ...
    def generate_full(
        self, prompt: str, config: Optional[GenerationConfig] = None, **options: object
    ) -> tuple[str, list[int], Stats]: ...
    def generate_detailed(
        self, prompt: str, config: Optional[GenerationConfig] = None, **options: object
    ) -> dict:
        """text, token_ids, stop_reason, stats, and logprobs (with n_probs > 0)."""
    def stream(
        self, prompt: str, config: Optional[GenerationConfig] = None, **options: object
    ) -> TokenStream: ...
    def chat(
        self,
        messages: Sequence[_Message],
        config: Optional[GenerationConfig] = None,
        token_callback: Optional[Callable[[str], object]] = None,
        tools: Optional[Sequence[dict]] = None,
        **options: object,
    ) -> str: ...
    def chat_detailed(
        self,
        messages: Sequence[_Message],
        config: Optional[GenerationConfig] = None,
        tools: Optional[Sequence[dict]] = None,
        **options: object,
    ) -> dict:
        """content, reasoning, tool_calls, text, and what generate_detailed returns."""
    def apply_chat_template(
        self,
        messages: Sequence[_Message],
        add_generation_prompt: bool = True,
        tools: Optional[Sequence[dict]] = None,
    ) -> str: ...
    def prefill(self, prompt: str, config: Optional[GenerationConfig] = None) -> None: ...
    def warmup(self, prompt: str, max_new_tokens: int = 16) -> None: ...
    def stop(self) -> None: ...
    def reset(self) -> None: ...
    def load(self) -> None: ...
    def is_loaded(self) -> bool: ...
    def get_vocab_size(self) -> int: ...
    def tokenize(
        self, text: str, add_bos: Optional[bool] = None, parse_special: bool = True
    ) -> list[int]: ...
    def detokenize(self, ids: Sequence[int]) -> str: ...
    @property
    def metadata(self) -> dict[str, int]: ...
    @property
    def eos_ids(self) -> list[int]: ...
    @property
    def position(self) -> int: ...
    @property
    def max_context_len(self) -> int: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def load_report(self) -> LoadReport: ...
    @property
    def load_mode(self) -> Optional[LoadMode]: ...
    @property
    def model_path(self) -> "pathlib.Path": ...

def create_text_llm_runner(
    model_path: _Path,
    tokenizer_path: Optional[_Path] = None,
    data_path: Optional[_Path] = None,
    temperature: float = -1.0,
    method_name: str = "forward",
    load_mode: Union[LoadMode, str, None] = None,
) -> TextLLMRunner: ...
def tokenize(
    path: _Path, text: str, add_bos: Optional[bool] = None, parse_special: bool = True
) -> list[int]: ...
def detokenize(path: _Path, ids: Sequence[int]) -> str: ...
def isa() -> str: ...
