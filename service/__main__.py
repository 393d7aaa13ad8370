"""`python -m service`: serve the NMT_MODELS bundles with settings from NMT_* variables.

Runs one uvicorn worker per process; see service/cli.py for why.
"""

from __future__ import annotations

import sys

from model.allocator import keep_freed_memory
from model.errors import ModelError
from service.cli import serve
from service.settings import Settings


def main() -> None:
    keep_freed_memory()  # as `nmt serve` (model/cli.py) does for every subcommand
    try:
        serve(Settings.load())
    except (ModelError, ValueError) as err:  # a bad NMT_* value or bundle: one clear line
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
