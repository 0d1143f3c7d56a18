"""``segmask serve``: an OpenAI-compatible chat server with MAS prefill (see ``segmask.serve`` and docs/SERVING.md).

    segmask serve                                   # embedded MAS-ready SmolLM2, http://127.0.0.1:8000/v1
    segmask serve --model Qwen/Qwen2.5-0.5B-Instruct --adapter runs/mas-lora --port 9000
    segmask serve --causal                          # plain causal prefill, for comparison
"""

from __future__ import annotations

import argparse

from . import add_model_args, chosen_mask, chosen_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible chat server with MAS prefill")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    p.add_argument("--max-prompt-tokens", type=int, default=4096)
    p.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--default-max-tokens", type=int, default=256, help="max_tokens when a request gives none")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--body-timeout-s", type=float, default=30.0, help="a body not received in time gets HTTP 408")
    p.add_argument("--max-messages", type=int, default=256, help="most messages in one request")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests decoded together")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="wait for more requests before a batch")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests beyond this get HTTP 503")
    p.add_argument("--prefix-cache-mb", type=float, default=256.0,
                   help="memory for the KV of shared leading segments (system prompts); 0 turns reuse off")
    p.add_argument("--log-level", default="info")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..hf.models import load_model
    from ..serve.app import ServeConfig, create_app

    args.model = chosen_model(args)
    config = ServeConfig(
        model_name=args.served_model_name or args.model, mas=chosen_mask(args) == "mas",
        max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
        default_max_tokens=min(args.default_max_tokens, args.max_tokens), max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout_s, max_messages=args.max_messages,
        max_batch_size=args.max_batch_size, batch_wait_s=args.batch_wait_ms / 1000, max_queue=args.max_queue,
        prefix_cache_bytes=int(args.prefix_cache_mb * (1 << 20)),
    )
    model, tokenizer = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn, device=args.device,
                                  adapter=args.adapter)
    print(f"segmask serve: {config.model_name} ({'MAS' if config.mas else 'causal'} prefill) "
          f"on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(model, tokenizer, config), host=args.host, port=args.port, log_level=args.log_level)
    return 0
