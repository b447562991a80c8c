"""Host memory of the whole CLI run against clip length: peak RSS for 300 and for 3000 driving frames.

Each run is `python -m hp_core animate` (tiny preset random weights, the test suite's stand-in face detector
and ArcFace, `--size 64`) on a 64x64 clip, executed in a fresh subprocess that reports its own peak RSS
(ru_maxrss; ffmpeg's own processes are not counted). Flat memory means the ratio stays under 1.3.

    python benchmarks/bench_host_memory.py [--frames 300 3000] [--steps 2]

Not a timed test; it prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_inputs(folder: Path, frames: int) -> tuple[Path, Path, Path]:
    """Random tiny weights, stand-in detector/recogniser, a portrait and a 64x64 driving clip of ``frames``."""
    from fakes import portrait, write_fake_arcface, write_fake_yolo

    from hp_core import weights as W
    from hp_core.video import ffmpeg_exe

    models = folder / "models"
    if not (models / W.RANDOM_MARKER).is_file():
        W.write_random_weights(models, "tiny", log=lambda s: None)
        write_fake_yolo(models / "yoloface_v5m.pt")
        write_fake_arcface(models / "arcface.onnx")
    image = folder / "face.png"
    from PIL import Image
    Image.fromarray(portrait()).save(image)
    clip = folder / f"drive_{frames}.mp4"
    proc = subprocess.Popen([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             "-s", "64x64", "-framerate", "25", "-i", "-", "-c:v", "libx264", "-crf", "4",
                             "-pix_fmt", "yuv420p", str(clip)], stdin=subprocess.PIPE)
    for t in range(frames):  # the red face drifts a few pixels back and forth
        dx = (t // 4) % 6
        proc.stdin.write(portrait(64, 64, (16 + dx, 14, 44 + dx, 46)).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg could not write the driving clip")
    return models, image, clip


def one_run(models: str, image: str, clip: str, out: str, steps: int) -> None:
    """Child process: run the CLI in-process, print its peak RSS and wall time as JSON."""
    from hp_core.cli import main

    start = time.perf_counter()
    code = main(["animate", "--image", image, "--video", clip, "--out", out, "--models-dir", models,
                 "--preset", "tiny", "--size", "64", "--device", "cpu", "--steps", str(steps)])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"code": code, "peak_mib": peak_kib / 1024, "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (memory does not depend on it)")
    parser.add_argument("--one", nargs=4, metavar=("MODELS", "IMAGE", "CLIP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(*args.one, steps=args.steps)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="hp_bench_mem_") as tmp:
        folder = Path(tmp)
        for n in args.frames:
            models, image, clip = make_inputs(folder, n)
            proc = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", str(models),
                                   str(image), str(clip), str(folder / f"out_{n}.mp4")],
                                  capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines or json.loads(lines[-1])["code"] != 0:
                raise SystemExit(f"the run with {n} frames failed:\n{proc.stderr[-3000:]}")
            rows.append((n, json.loads(lines[-1])))
    print(f"{'frames':>7}  {'peak RSS (MiB)':>15}  {'seconds':>8}")
    for n, r in rows:
        print(f"{n:>7}  {r['peak_mib']:>15.0f}  {r['seconds']:>8.1f}")
    if len(rows) >= 2:
        print(f"ratio {rows[-1][0]} / {rows[0][0]} frames: {rows[-1][1]['peak_mib'] / rows[0][1]['peak_mib']:.2f} "
              "(target < 1.3)")


if __name__ == "__main__":
    main()
