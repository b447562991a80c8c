"""One GPU, one run: seconds per step and peak VRAM at the official size, for the release-style loop and for
each of our ways to run the UNet, with each one's largest latent difference against ours in fp16, batched.

    python benchmarks/bench_gpu.py                      # official preset, 512x512, 25 frames, 3 steps
    python benchmarks/bench_gpu.py --frames 50 --steps 5

Rows: reference (the release-style loop, fp16), batched (ours, fp16, three branches as one batch),
sequential, fp8 (UNet weights stored as fp8, computed in fp16), streamed at a VRAM budget of 6 and 8 GiB
(UNet blocks beyond it copied in from pinned host memory), and compile (torch.compile of the batched UNet;
its first step, which compiles, is not counted). Each row runs in its own process (bench_pipeline.run_one),
so peaks do not leak between rows. Random official-size weights: time and memory, not image quality.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = (("reference", []), ("batched", []), ("sequential", []), ("fp8", []),
        ("streamed", ["--vram-budget", "6"]), ("streamed", ["--vram-budget", "8"]), ("batched", ["--compile"]))


def _name(path: str, extra: list[str]) -> str:
    if "--compile" in extra:
        return "compile"
    return f"{path} {extra[1]} GiB" if extra else path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (bench_pipeline.py measures the CPU).")
    tmp = Path(tempfile.mkdtemp())
    results = []
    for path, extra in ROWS:
        name = _name(path, extra)
        save = tmp / (name.replace(" ", "_") + ".pt")
        cmd = [sys.executable, str(HERE / "bench_pipeline.py"), "--preset", "official", "--device", "cuda",
               "--size", str(args.size), "--steps", str(args.steps), "--frames", str(args.frames), "--path", path,
               "--window", "25", "--save", str(save), *extra]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            results.append((name, None, out.stderr.strip().splitlines()[-1:]))
            continue
        results.append((name, json.loads(out.stdout.strip().splitlines()[-1]), save))
    base = torch.load(tmp / "batched.pt") if (tmp / "batched.pt").exists() else None
    print(f"GPU: {torch.cuda.get_device_name(0)}; official preset, {args.size}x{args.size}, {args.frames} frames "
          f"(+15 padding each side), window 25, {args.steps} steps")
    print(f"{'row':<16}{'s/step':>10}{'peak VRAM GiB':>16}{'max |diff| vs batched':>24}")
    for name, r, save in results:
        if r is None:
            print(f"{name:<16}  failed: {' '.join(save)}")
            continue
        diff = "-" if base is None or not Path(save).exists() else f"{float((torch.load(save) - base).abs().max()):.3g}"
        print(f"{name:<16}{r['sec_per_step']:>10.2f}{r['peak_bytes'] / 2**30:>16.2f}{diff:>24}")


if __name__ == "__main__":
    main()
