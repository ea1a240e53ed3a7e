"""lmrun: run text LLMs (GGUF models and ExecuTorch .pte programs) on the CPU.

The API is ExecuTorch's ``executorch.extension.llm.runner`` -- ``TextLLMRunner``,
``GenerationConfig``, ``Stats`` -- so a script written for ExecuTorch runs by changing its
import; lmrun adds load modes, sampling options and Pythonic helpers (``generate_text``,
``stream``, ``chat``, ``tokenize``).

    import lmrun
    runner = lmrun.TextLLMRunner("gemma-3-270m-q4_k_m.gguf")
    print(runner.generate_text("The capital of France is", max_new_tokens=16, temperature=0))
"""

from ._lmrun import (
    DEFAULT_LOAD_MODE,
    GenerationConfig,
    LmrunError,
    LoadError,
    LoadMode,
    LoadReport,
    Stats,
    TextLLMRunner,
    TokenStream,
    __version__,
    create_text_llm_runner,
    detokenize,
    isa,
    tokenize,
)

__all__ = [
    "DEFAULT_LOAD_MODE",
    "GenerationConfig",
    "LmrunError",
    "LoadError",
    "LoadMode",
    "LoadReport",
    "Stats",
    "TextLLMRunner",
    "TokenStream",
    "__version__",
    "create_text_llm_runner",
    "detokenize",
    "isa",
    "tokenize",
]
