"""``segmask data``: get the commonsense benchmark data (the eight test sets and the commonsense_170k training
mixture, LLM-Adapters format) into the folder the other commands read by default (``segmask.eval.data_fetch``).

    segmask data                                    # download into ~/.cache/segmask/data/commonsense
    segmask data --from ../LLM-Adapters             # copy from a local clone (or a folder laid out like the output)
    segmask data --tasks boolq,piqa --no-mixture    # only these test sets
    segmask data --out data/commonsense             # elsewhere: then --data-dir data/commonsense or $SEGMASK_DATA
    segmask eval --limit 100 --protocol choice      # reads it; segmask train ~/.cache/segmask/data/commonsense too

Checks each file (a JSON list of records, the expected record count), writes it atomically, keeps files already
there that pass the check (a second run downloads nothing), and prints sources, record counts, sha256 and licences.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get the commonsense benchmark data (LLM-Adapters) for eval and train")
    p.add_argument("--out", default=None,
                   help="folder to fill (default: $SEGMASK_DATA, else ~/.cache/segmask/data/commonsense, "
                        "$SEGMASK_CACHE/data/commonsense when that is set): where eval and train look by default")
    p.add_argument("--from", dest="source", default=None, metavar="PATH",
                   help="copy from a local folder (laid out like the LLM-Adapters repository: dataset/<task>/"
                        "test.json, or like --out: <task>/test.json) instead of downloading")
    p.add_argument("--base-url", default=None,
                   help="where the repository's raw files are (default: $SEGMASK_DATA_URL, else "
                        "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/main)")
    p.add_argument("--tasks", default="all", help="comma-separated task names, or 'all' eight")
    p.add_argument("--no-mixture", action="store_true", help="skip the commonsense_170k training mixture")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help="JSON {path under --out: record count or [counts]} replacing the expected counts")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..eval.data_fetch import SOURCE, prepare, read_manifest
    from ..eval.tasks import data_home, default_data_dir, get_task

    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    tasks = None if names in ([], ["all"]) else [get_task(t).name for t in names]
    manifest = read_manifest(args.manifest) if args.manifest else None
    out = Path(args.out).expanduser() if args.out else data_home()
    rows = prepare(out, source=args.source, base_url=args.base_url, tasks=tasks, mixture=not args.no_mixture,
                   manifest=manifest)
    print(f"source: {SOURCE}")
    for row in rows:
        print(f"  {row['path']:<30} {row['records']:>7} records  sha256 {row['sha256'][:12]}  {row['status']:<13}  "
              f"{row['licence']}")
    print(f"data in {out} (sources, counts, sha256: {out}/SOURCES.json)")
    if default_data_dir().resolve() != out.resolve():
        print(f"not the default location: pass --data-dir {out} to segmask eval, or set SEGMASK_DATA={out}")
    return 0
