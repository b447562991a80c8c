"""What the sampler node's live previews cost, measured side by side in one run on this machine.

The sampler node sends one preview image per denoising step through ComfyUI's latent previews
(nodes/bridge.py: ``Progress.preview`` takes the middle frame of the step's denoised estimate and calls
the previewer's ``decode_latent_to_preview_image``). This script times, in one process:

1. one ``Progress.preview`` call with ComfyUI's real previewer, for each preview method ComfyUI can make
   here: latent2rgb (always), TAESD (only when models/vae_approx has a taesd_decoder file; otherwise it
   says it skipped it), and "none" (previews off, ComfyUI's default ``--preview-method``). The input is
   the final denoised estimate (1, L, 4, h, w) of the sampling runs below, on the device where the
   sampler keeps it; the call's cost does not depend on L (it previews one frame). The progress-bar hook
   is a stand-in that only counts images, so nothing is sent; what ComfyUI's server then does with the
   image (fit it into --preview-size, JPEG-encode it) runs on the server's own thread, not inside the
   sampling step, and is timed in a column of its own;
2. one denoising step of the pack's sampler (``sample_latents`` on random weights of a preset, built by
   bench_pipeline.prepare): the median run without previews divided by ``--steps``, so each preview cost
   is also printed as a percentage of a step;
3. end to end: the same ``sample_latents`` run with the node's progress bar and without / with the
   ``preview=`` callback, alternated, after one untimed warm-up run; it prints the median and the fastest
   of ``--repeats`` runs of each and their ratios, and stops with an error unless the latents of every run
   are bit-identical. A preview method that breaks the sampling run is reported and the exit code is 1.

Needs a ComfyUI checkout (its ``latent_preview`` and ``comfy`` modules) and an interpreter with its
requirements:

    python benchmarks/bench_preview.py --comfyui PATH/TO/ComfyUI      # or set COMFYUI_PATH
    python benchmarks/bench_preview.py --preset official --device cuda --frames 10 --pad 15 --window 25 --steps 3

The defaults (tiny preset, 512x512, 1 frame padded by 2 on each side: one window of 5, 1 step, 3 repeats)
take about two to three minutes on a 2-core CPU. On a busy machine the end-to-end runs vary by more than
a preview costs; the per-call figures are the precise ones. Random weights: the figures are about time,
not images.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"),
                    help="path of a ComfyUI checkout (default: $COMFYUI_PATH)")
    ap.add_argument("--preset", default="tiny", choices=["tiny", "official"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ComfyUI is started with --cpu for cpu)")
    ap.add_argument("--size", type=int, default=512, help="square output size in pixels (the release: 512)")
    ap.add_argument("--frames", type=int, default=1, help="driving frames")
    ap.add_argument("--pad", type=int, default=2, help="padding frames on each side (the release: 15)")
    ap.add_argument("--window", type=int, default=5, help="context window (the release: 25)")
    ap.add_argument("--steps", type=int, default=1, help="denoising steps of each sampling run")
    ap.add_argument("--repeats", type=int, default=3, help="sampling runs without and with previews (median)")
    ap.add_argument("--calls", type=int, default=50, help="timed preview calls per method (at most; 5 s cap)")
    args = ap.parse_args()
    if not args.comfyui or not (Path(args.comfyui) / "latent_preview.py").is_file():
        ap.error("give a ComfyUI checkout with --comfyui PATH or $COMFYUI_PATH (it needs latent_preview.py)")
    return args


def _start_comfy(args) -> None:
    """Import ComfyUI's modules as ComfyUI itself would: its argument parser sees --cpu (for a CPU run)."""
    sys.argv = [sys.argv[0]] + (["--cpu"] if args.device == "cpu" else [])
    sys.path.append(str(Path(args.comfyui).resolve()))
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.model_management  # noqa: F401 - reads the arguments and picks the device


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def main() -> None:
    args = _args()
    _start_comfy(args)
    import comfy.utils
    import folder_paths
    import latent_preview  # noqa: F401 - fails here, not silently later, when ComfyUI has no latent previews
    import torch
    from comfy import latent_formats
    from comfy.cli_args import LatentPreviewMethod
    from comfy.cli_args import args as comfy_args

    from bench_pipeline import prepare
    from hp_core import pipeline as P
    from nodes import bridge

    if not bridge.COMFY:
        raise SystemExit("nodes/bridge.py did not find ComfyUI's modules")
    device = torch.device(args.device)
    if bridge.torch_device().type != device.type:
        raise SystemExit(f"ComfyUI picked {bridge.torch_device()}, not {device}")

    sent = {"images": 0, "last": None}  # the stand-in progress-bar hook counts images; nothing is sent anywhere

    def hook(value, total, preview, prompt_id=None, node_id=None):
        if preview is not None:
            sent["images"] += 1
            sent["last"] = preview

    comfy.utils.set_progress_bar_global_hook(hook)

    # Which preview methods ComfyUI can make here: latent2rgb always, TAESD with its decoder file.
    taesd_name = latent_formats.SD15().taesd_decoder_name
    taesd_files = [f for f in folder_paths.get_filename_list("vae_approx") if f.startswith(taesd_name)]
    methods = {"latent2rgb": LatentPreviewMethod.Latent2RGB}
    if taesd_files:
        methods["taesd"] = LatentPreviewMethod.TAESD

    models, cond, ref, settings, noise = prepare(args.preset, device, args.size, args.frames, args.window,
                                                 args.steps, pad=args.pad)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, ComfyUI's device {bridge.torch_device()}")
    print(f"preset={args.preset} size={args.size}x{args.size} (latent {ref.shape[-2]}x{ref.shape[-1]}) "
          f"frames={args.frames} pad={args.pad} (padded length {cond.length}) window={settings.window} "
          f"steps={args.steps} repeats={args.repeats}")

    # 3 (run first: its final latents are the preview input of 1): whole sampling runs without and with
    # previews, alternated so that load from other processes hits both alike.
    def sampling_run(method: str | None):
        if method is not None:
            comfy_args.preview_method = methods[method]
        progress = bridge.Progress(settings.steps)  # the node's progress bar, as HunyuanPortraitSampler makes it
        before = sent["images"]
        sync()
        start = time.perf_counter()
        latents = P.sample_latents(models, cond, ref, settings, noise=noise, progress=progress, keep_padding=True,
                                   preview=progress.preview if method is not None else None)
        sync()
        return time.perf_counter() - start, latents, sent["images"] - before

    # An untimed one-step run first: the first run of a process pays one-off costs (thread pools, allocator).
    P.sample_latents(models, cond, ref, dataclasses.replace(settings, steps=1), noise=noise, keep_padding=True)
    modes = [None, *methods]
    seconds = {m: [] for m in modes}
    failed = {}  # method -> its error: reported, and the script exits with 1 after printing the rest
    first = None
    for rep in range(args.repeats):
        for mode in (modes if rep % 2 == 0 else modes[::-1]):
            if mode in failed:
                continue
            try:
                took, latents, images = sampling_run(mode)
            except Exception as err:  # noqa: BLE001 - a preview method that breaks sampling is a result
                if mode is None:
                    raise
                failed[mode] = f"{type(err).__name__}: {str(err).strip()[:300]}"
                continue
            expected = 0 if mode is None else settings.steps
            if images != expected:
                raise SystemExit(f"{mode or 'no preview'}: {images} preview images sent, expected {expected}")
            if first is None:
                first = latents
            elif not torch.equal(latents, first):
                diff = float((latents - first).abs().max())
                raise SystemExit(f"latents differ ({mode or 'no preview'}, repeat {rep + 1}): max abs {diff:.3g}")
            seconds[mode].append(took)
    step = statistics.median(seconds[None]) / settings.steps

    # 1: one preview call, per method, on the final denoised estimate where the sampler keeps it.
    denoised = first[None]
    print(f"\npreview call (Progress.preview with ComfyUI's previewer; input: denoised estimate "
          f"{tuple(denoised.shape)} {str(denoised.dtype).replace('torch.', '')} on {denoised.device}, "
          f"its middle frame previewed)")
    print(f"{'method':<12}{'first call':>12}{'median call':>13}{'calls':>7}{'% of a step':>13}{'image':>10}"
          f"{'server encode':>15}")
    for name, method in [("none", LatentPreviewMethod.NoPreviews), *methods.items()]:
        if name in failed:
            print(f"{name:<12}not timed: its sampling run failed (below)")
            continue
        comfy_args.preview_method = method
        progress = bridge.Progress(settings.steps)
        before = sent["images"]
        start = time.perf_counter()
        progress.preview(1, settings.steps, denoised)  # makes the previewer (TAESD: loads its decoder)
        first_call = time.perf_counter() - start
        calls = []
        while len(calls) < args.calls and sum(calls) < 5.0:
            start = time.perf_counter()
            progress.preview(1, settings.steps, denoised)
            calls.append(time.perf_counter() - start)
        call = statistics.median(calls)
        size = encode = "-"
        if sent["images"] > before:
            kind, image, max_size = sent["last"]
            size = f"{image.width}x{image.height}"
            encode = _ms(_server_encode(kind, image, max_size)) + " *"
        print(f"{name:<12}{_ms(first_call):>12}{_ms(call):>13}{len(calls):>7}{100 * call / step:>12.3g}%"
              f"{size:>10}{encode:>15}")
    if "taesd" not in methods:
        print(f"taesd       skipped: no {taesd_name}.* in ComfyUI's vae_approx model folder")
    print("* what ComfyUI's server does with the image (fit into --preview-size "
          f"{comfy_args.preview_size}, JPEG quality 95); it runs on the server's thread, not in the sampling step")

    print(f"\nsampling run of {settings.steps} step(s), {args.repeats} repeats (each run in seconds):")
    base, fastest = statistics.median(seconds[None]), min(seconds[None])
    for mode in modes:
        label = "without previews" if mode is None else f"with {mode} previews"
        if mode in failed:
            print(f"  {label:<26}FAILED: {failed[mode]}")
            continue
        runs = ", ".join(f"{s:.2f}" for s in seconds[mode])
        median, best = statistics.median(seconds[mode]), min(seconds[mode])
        print(f"  {label:<26}median {median:>7.2f} s (ratio {median / base:.3f}), fastest {best:>7.2f} s "
              f"(ratio {best / fastest:.3f})   runs: {runs}")
    print(f"one denoising step (without previews): {step:.3f} s")
    print(f"latents bit-identical across all {sum(map(len, seconds.values()))} runs: yes")
    if failed:
        raise SystemExit(f"preview method(s) that broke the sampling run: {', '.join(failed)}")


def _server_encode(kind: str, image, max_size, repeats: int = 20) -> float:
    """Median seconds to fit a preview image into max_size (bilinear) and encode it, as ComfyUI's server
    does before sending it."""
    from PIL import Image, ImageOps

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fitted = ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR) if max_size else image
        fitted.save(io.BytesIO(), format=kind, quality=95)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
