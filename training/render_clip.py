"""Render one training clip from its recorded states, apart from training (started by ClipRenderer).

    python -m training.render_clip videos/step_50000.states.npz videos/step_50000.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.visualization import render_clip_file


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m training.render_clip STATES.npz OUT.mp4", file=sys.stderr)
        return 2
    render_clip_file(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
