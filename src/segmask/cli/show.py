"""``segmask show``: a prompt's segments and MAS mask as ASCII; with ``--png`` a figure of the mask and, with
``--attention``, of the model's per-layer attention (heads averaged) under MAS vs causal prefill.

    segmask show --system "Be brief." --user "Is the sky blue?"          # tokenizer only, no model
    segmask show --data ~/.cache/segmask/data/commonsense/boolq/test.json --index 3 --png mask.png  # segmask data
    segmask show --png attention.png --attention --layers 0,14,-1         # loads the model (eager attention)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..core.recipe import DEFAULT_MODEL
from .config_args import add_config_args


@dataclass
class ShowOptions:
    """What ``segmask show`` draws: one flag per field."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "tokenizer/template (and model for --attention)"})
    system: str = field(default="You are a helpful assistant.", metadata={"help": "system message ('' for none)"})
    user: str = field(default="Is the sky blue?", metadata={"help": "user message"})
    data: str | None = field(default=None, metadata={
        "help": "JSON list of commonsense records (paper prompt form) instead of chat"})
    index: int = field(default=0, metadata={"help": "which record of --data"})
    max_size: int = field(default=64, metadata={"help": "largest mask corner to print"})
    png: str | None = field(default=None, metadata={"help": "write a figure of the MAS and causal masks to this file"})
    attention: bool = field(default=False, metadata={
        "help": "add per-layer attention maps (MAS vs causal) to --png"})
    layers: str = field(default="0,-1", metadata={
        "help": "layers for --attention: comma list (negative from the end) or all"})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder for --attention"})
    dtype: str = field(default="float32", metadata={"help": "model dtype for --attention"})
    device: str = field(default="cpu", metadata={"help": "torch device for --attention"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a prompt's segments and ASCII MAS mask; --png/--attention for figures")
    add_config_args(p, ShowOptions)
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
