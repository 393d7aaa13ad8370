"""`python -m service`: serve the NMT_MODELS bundles with settings from NMT_* variables.

Runs one uvicorn worker per process; see service/cli.py for why.
"""

from __future__ import annotations

from model.allocator import keep_freed_memory
from service.cli import serve
from service.settings import Settings


def main() -> None:
    keep_freed_memory()  # as `nmt serve` (model/cli.py) does for every subcommand
    serve(Settings())


if __name__ == "__main__":
    main()
