"""The ``thoughtmdp export`` command: a run's adapter, or the merged model, with a model card.

The run folder and the version are checked before torch loads; only ``--merge`` loads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thoughtmdp.commands import Command
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.runs.export import DTYPES


def arguments(parser: argparse.ArgumentParser) -> None:
    """The run folder, the version, where it goes and in what form."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--version", type=int, help="adapter version (default: the latest)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (new, or empty)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge the adapter into the base model: a full model folder with its tokenizer",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        help="dtype of the merged weights (default: the learner's dtype)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the folder to this Hugging Face Hub model repo (needs a token)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp export``; returns the exit code."""
    from thoughtmdp.runs.export import find_adapter, push_to_hub, write_adapter, write_merged

    if args.dtype and not args.merge:
        raise ThoughtMDPError(
            "--dtype needs --merge: an adapter is exported as the learner saved it"
        )
    adapter = find_adapter(args.run_dir, args.version)
    name = args.push_to_hub or str(args.out)
    if args.merge:
        out = write_merged(adapter, args.out, name, args.dtype or adapter.dtype)
    else:
        out = write_adapter(adapter, args.out, name)
    print(f"version {adapter.version} of {adapter.run_dir} -> {out}")
    if args.push_to_hub:
        print(push_to_hub(out, args.push_to_hub))
    return 0


COMMAND = Command(
    "export",
    help="write a run's adapter (or the merged model) with a model card; optionally push it",
    run=run,
    arguments=arguments,
    description=(
        "Writes adapter version N of RUN_DIR (default: the latest) to --out as a PEFT adapter "
        "folder, or with --merge as a full Hugging Face model (base model, adapter merged in, "
        "tokenizer) in --dtype. Either comes with a model card (README.md) naming the base "
        "model, the method, the learner step and the held-out pass rates. --push-to-hub REPO "
        "uploads the folder with huggingface_hub (log in with `hf auth login` or set HF_TOKEN)."
    ),
)
