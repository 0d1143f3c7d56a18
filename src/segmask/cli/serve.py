"""``segmask serve``: an OpenAI-compatible chat server with MAS prefill (see ``segmask.serve`` and docs/SERVING.md).

    segmask serve                                   # embedded MAS-ready SmolLM2, http://127.0.0.1:8000/v1
    segmask serve --model Qwen/Qwen2.5-0.5B-Instruct --adapter runs/mas-lora --port 9000
    segmask serve --causal                          # plain causal prefill, for comparison
"""

from __future__ import annotations

import argparse

from . import add_model_args, chosen_mask, chosen_model, chosen_recipe
from .config_args import add_config_args, config_from_namespace

UNITS = {"batch_wait_s": ("batch_wait_ms", 1000), "prefix_cache_bytes": ("prefix_cache_mb", 2**-20)}
"""Server options shown in friendlier units: milliseconds and MiB."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..serve.app import ServeConfig

    p = sub.add_parser("serve", help="OpenAI-compatible chat server with MAS prefill")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    add_config_args(p, ServeConfig, skip=("model_name", "mas", "model_path", "adapter"), units=UNITS)
    p.add_argument("--log-level", default="info")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..hf.models import load_model
    from ..serve.app import ServeConfig, create_app
    from ..serve.front import front_options

    recipe = chosen_recipe(args)  # the adapter's segmask.json, read once
    args.model = chosen_model(args, recipe)
    config = config_from_namespace(ServeConfig, args, units=UNITS, model_name=args.served_model_name or args.model,
                                   mas=chosen_mask(args, recipe) == "mas", model_path=args.model, adapter=args.adapter,
                                   default_max_tokens=min(args.default_max_tokens, args.max_tokens))
    model, tokenizer = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn, device=args.device,
                                  adapter=args.adapter, recipe=recipe)
    print(f"segmask serve: {config.model_name} ({'MAS' if config.mas else 'causal'} prefill) "
          f"on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(model, tokenizer, config), host=args.host, port=args.port, log_level=args.log_level,
                **front_options(config))
    return 0
