"""Run by ComfyUI-Manager after requirements.txt (or by hand): keep onnxruntime-gpu usable.

Both `onnxruntime` (CPU, often pulled in by insightface) and `onnxruntime-gpu` install the same
`onnxruntime` Python package; whichever was installed last wins, and the CPU one hides the GPU providers.
When both are present, remove the CPU one and reinstall the GPU one's files. Never touches torch.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from typing import Callable, Sequence


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def repair_commands(versions: dict[str, str | None]) -> list[list[str]]:
    """pip commands (without the interpreter prefix) that leave onnxruntime-gpu alone in charge."""
    gpu, cpu = versions.get("onnxruntime-gpu"), versions.get("onnxruntime")
    if not (gpu and cpu):
        return []
    return [["uninstall", "-y", "onnxruntime"],
            ["install", "--force-reinstall", "--no-deps", f"onnxruntime-gpu=={gpu}"]]


def main(run: Callable[[Sequence[str]], int] | None = None) -> int:
    run = run or (lambda args: subprocess.call([sys.executable, "-m", "pip", *args]))
    commands = repair_commands({d: _version(d) for d in ("onnxruntime", "onnxruntime-gpu")})
    for args in commands:
        print("HunyuanPortrait install: pip", " ".join(args))
        if run(args) != 0:
            print("HunyuanPortrait install: could not repair onnxruntime; run: pip uninstall -y onnxruntime "
                  "onnxruntime-gpu && pip install onnxruntime-gpu")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
