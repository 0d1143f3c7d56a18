"""``segmask show``: a prompt's segments and MAS mask as ASCII; with ``--png`` a figure of the mask and, with
``--attention``, of the model's per-layer attention (heads averaged) under MAS vs causal prefill.

    segmask show --system "Be brief." --user "Is the sky blue?"          # tokenizer only, no model
    segmask show --data ~/.cache/segmask/data/commonsense/boolq/test.json --index 3 --png mask.png  # segmask data
    segmask show --png attention.png --attention --layers 0,14,-1         # loads the model (eager attention)
"""

from __future__ import annotations

import argparse

from ..core.recipe import DEFAULT_MODEL


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a prompt's segments and ASCII MAS mask; --png/--attention for figures")
    p.add_argument("--model", default=DEFAULT_MODEL, help="tokenizer/template (and model for --attention)")
    p.add_argument("--system", default="You are a helpful assistant.", help="system message ('' for none)")
    p.add_argument("--user", default="Is the sky blue?", help="user message")
    p.add_argument("--data", default=None, help="JSON list of commonsense records (paper prompt form) instead of chat")
    p.add_argument("--index", type=int, default=0, help="which record of --data")
    p.add_argument("--max-size", type=int, default=64, help="largest mask corner to print")
    p.add_argument("--png", default=None, help="write a figure of the MAS and causal masks to this file")
    p.add_argument("--attention", action="store_true", help="add per-layer attention maps (MAS vs causal) to --png")
    p.add_argument("--layers", default="0,-1", help="layers for --attention: comma list (negative from the end) or all")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder for --attention")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def render(tokenizer, batch, max_size: int = 64) -> str:
    """Segments table and ASCII mask of the first sample of ``batch``."""
    from ..core.masks import segment_mask
    from ..viz.ascii import ascii_mask, describe_segments

    real = batch["attention_mask"][0].bool()
    ids, segs = batch["input_ids"][0][real], batch["segment_ids"][0][real]
    mask = segment_mask(segs[None])[0, 0]
    return describe_segments(tokenizer, ids, segs) + "\n\n" + ascii_mask(mask, segs, max_size=max_size)


def prompt_batch(tokenizer, args: argparse.Namespace):
    """The prompt to show: a dataset record in the paper's form (``--data``) or the chat of --system/--user."""
    if args.data is None:
        from ..core.chat import conversation, encode_chat

        return encode_chat(tokenizer, conversation(args.system, args.user))
    from ..core.records import load_records
    from ..core.segments import collate, pad_token_id
    from ..core.templates import encode_commonsense

    records = load_records(args.data)
    if not 0 <= args.index < len(records):
        raise ValueError(f"{args.data}: --index {args.index} is outside its {len(records)} records")
    try:
        example = encode_commonsense(tokenizer, records[args.index])
    except ValueError as err:
        raise ValueError(f"{args.data}: record {args.index}: {err}") from None
    return collate([example], pad_token_id=pad_token_id(tokenizer), with_labels=False)


def run(args: argparse.Namespace) -> int:
    from ..hf.models import load_tokenizer

    if args.attention and not args.png:
        raise ValueError("--attention draws into the --png figure; give --png FILE")
    tokenizer = load_tokenizer(args.model)
    batch = prompt_batch(tokenizer, args)
    print(render(tokenizer, batch, args.max_size))
    if args.png:
        write_png(args, tokenizer, batch)
        print(f"\nwrote {args.png}")
    return 0


def write_png(args: argparse.Namespace, tokenizer, batch) -> None:
    """Save the mask figure (and with ``--attention`` the MAS vs causal attention maps) to ``args.png``."""
    from ..viz.plots import mask_and_attention_figure, select_layers

    maps, layers = None, []
    if args.attention:
        from ..hf.hook import enable
        from ..hf.models import load_model
        from ..viz.plots import attention_maps

        model, _ = load_model(args.model, dtype=args.dtype, attn_implementation="eager", device=args.device,
                              adapter=args.adapter)
        enable(model)
        layers = select_layers(args.layers, model.config.num_hidden_layers)
        maps = {"MAS": attention_maps(model, batch, layers, mas=True),
                "causal": attention_maps(model, batch, layers, mas=False)}
    figure = mask_and_attention_figure(tokenizer, batch, maps, layers)
    figure.savefig(args.png, dpi=120)
