"""Command line: `python -m hp_core weights|make-random-weights|animate ...`.

Every error a user can cause ends as one `error: ...` message on stderr and a non-zero exit code
(2 for bad arguments, 1 for everything else), never a traceback.

`animate` builds a typed ``hp_core.run.RunRequest`` from its flags (``animate_request``) and runs it with
``hp_core.run.run``, which checks everything knowable first and writes the outputs itself, atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .errors import HPError
from .models.precision import PRECISIONS

# The release's inference settings (config/hunyuan-portrait.yaml).
DEFAULT_SEED = 72580
DEFAULT_STEPS = 25
DEFAULT_WINDOW = 25
DEFAULT_OVERLAP = 3
DEFAULT_SHIFT = 3
DEFAULT_CFG = (2.0, 2.0)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments on one line (plus the usage) and exits with 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def _add_models_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", action="append", metavar="DIR",
                   help="models folder (repeatable; default $HP_MODELS_DIR or ./models/hunyuan_portrait)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all commands."""
    parser = _Parser(prog="python -m hp_core", description="HunyuanPortrait without ComfyUI: weights and animation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    weights = sub.add_parser("weights", help="list, download and verify the model files")
    wsub = weights.add_subparsers(dest="action", required=True, parser_class=_Parser)
    st = wsub.add_parser("status", help="which files are present, verified, missing or damaged")
    _add_models_dir(st)
    st.add_argument("--required-only", action="store_true", help="hide optional files (DWPose, SCRFD)")
    dl = wsub.add_parser("download", help="download the missing files from the Hugging Face Hub")
    _add_models_dir(dl)
    dl.add_argument("--optional", action="store_true", help="also the optional files (DWPose, SCRFD)")
    dl.add_argument("--token", help="Hugging Face token for the gated SVD repository (default: $HF_TOKEN)")
    dl.add_argument("--only", nargs="+", metavar="ID", help="only these manifest ids")
    dl.add_argument("--vae", metavar="PATH",
                    help="an SVD VAE you already have (folder, VAE file or SVD checkpoint): skip the gated download")
    vf = wsub.add_parser("verify", help="check sizes, sha256 and structure of the present files and pin the good ones")
    _add_models_dir(vf)
    vf.add_argument("--full", action="store_true", help="re-hash files even when size and date match their pin")
    vf.add_argument("--repin", action="store_true", help="accept files replaced on purpose and pin them afresh")
    vf.add_argument("--only", nargs="+", metavar="ID", help="only these manifest ids")
    vf.add_argument("--preset", choices=("official", "tiny"),
                    help="network sizes the files must have (default: a random-weights folder's own, else official)")

    rw = sub.add_parser("make-random-weights",
                        help="developer: random weights of a preset in the official file layout")
    rw.add_argument("--preset", choices=("tiny", "official"), required=True)
    rw.add_argument("--out", required=True, metavar="DIR")
    rw.add_argument("--seed", type=int, default=0)
    rw.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto",
                    help="auto: the release's precisions for official, fp32 for tiny")

    an = sub.add_parser("animate", help="animate a portrait with a driving video")
    an.add_argument("--image", required=True, metavar="SRC", help="source portrait image")
    an.add_argument("--video", required=True, metavar="DRIVING", help="driving video")
    an.add_argument("--out", required=True, metavar="OUT.mp4", help="output video (the 512x512 crop)")
    an.add_argument("--paste-back", metavar="OUT_FULL.mp4", help="also write the result pasted into the source")
    an.add_argument("--sampler", default="euler", help="sampler name (default euler, as the release)")
    an.add_argument("--scheduler", default="karras", help="sigma schedule name (default karras, as the release)")
    an.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    an.add_argument("--appearance-cfg", type=float, nargs=2, metavar=("MIN", "MAX"), default=DEFAULT_CFG)
    an.add_argument("--motion-cfg", type=float, nargs=2, metavar=("MIN", "MAX"), default=DEFAULT_CFG)
    an.add_argument("--seed", type=int, default=DEFAULT_SEED)
    an.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="frames per denoising window")
    an.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="frames shared by neighbouring windows")
    an.add_argument("--shift", type=int, default=DEFAULT_SHIFT, help="window shift added per step")
    an.add_argument("--max-frames", type=int, help="use only the first N driving frames")
    an.add_argument("--noise-aug", type=float, default=0.0, metavar="STRENGTH",
                    help="noise added to the reference before its conditioning latents are encoded, and told to "
                         "the UNet (default 0, as the release; seeded by --seed)")
    an.add_argument("--preset", choices=("official", "tiny"), default="official")
    an.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, mps or auto")
    an.add_argument("--dtype", choices=PRECISIONS, default="auto",
                    help="auto: the release's precisions (fp16 networks, fp32 VAE and motion encoders)")
    an.add_argument("--size", type=int, default=512,
                    help="side of the square result in pixels (the release: 512; small sizes for quick tests)")
    an.add_argument("--decode-chunk", type=int, default=8,
                    help="frames the temporal VAE decodes at once (8 = the release; fewer use less memory but "
                         "change the result slightly, since the decoder smooths over the frames it sees)")
    an.add_argument("--branch-mode", choices=("auto", "batched", "sequential"), default="auto",
                    help="guidance branches as one batch of three, or one after another (a third of the "
                         "activation memory, same result); auto: sequential when the batch would not fit")
    an.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                    help="two-scale guidance only on steps whose sigma lies in [LO, HI]; elsewhere one UNet "
                         "evaluation per window instead of three (off by default = the release)")
    an.add_argument("--attention", choices=("auto", "flash", "efficient", "math", "cudnn"), default="auto",
                    help="PyTorch attention backend (CUDA; auto lets PyTorch choose)")
    an.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA; the first step is slow)")
    an.add_argument("--channels-last", action="store_true", help="channels_last UNet weights (CUDA convolutions)")
    an.add_argument("--vae", metavar="PATH", help="an SVD VAE folder, VAE file or SVD checkpoint to use")
    an.add_argument("--no-audio", action="store_true", help="do not copy the driving clip's audio")
    _add_models_dir(an)
    return parser


# ------------------------------------------------------------------------------------------ weights

def _print_status(rows, out=print) -> None:
    width = max(len(r.id) for r in rows)
    for r in rows:
        kind = "required" if r.required else "optional"
        where = str(r.path) if r.path else r.local_path
        out(f"{r.id:<{width}}  {r.state:<10}  {kind:<8}  {where}" + (f"  [{r.detail}]" if r.detail else ""))


def _cmd_weights(args, out=print) -> int:
    from . import weights as W

    dirs = W.default_search_dirs(args.models_dir)
    if args.action == "status":
        rows = W.status(dirs, include_optional=not args.required_only)
        out("models folders: " + ", ".join(str(d) for d in dirs))
        _print_status(rows, out)
        missing = [r.id for r in rows if r.required and r.state in ("missing", "bad")]
        if missing:
            out(f"{len(missing)} required file(s) missing or damaged: run `python -m hp_core weights download`.")
        return 0
    if args.action == "download":
        skip = []
        if args.vae:
            why = W.check_explicit_vae(args.vae)  # an SVD VAE (read cheaply) before the gated download is skipped
            if why:
                raise HPError(f"--vae {Path(args.vae).expanduser().resolve()}: {why}.",
                              hint="Pass an SVD VAE folder, VAE file or single-file SVD checkpoint.")
            skip = ["svd_vae"]
            out(f"using the SVD VAE at {args.vae}")
        written = W.download(dirs, ids=args.only, include_optional=args.optional, token=args.token, skip=skip, log=out)
        out(f"downloaded {len(written)} file(s) into {dirs[0]}" if written
            else "nothing to download: all files present")
        return 0
    ids = args.only or [e.id for e in W.load_manifest()]
    bad = 0
    for entry_id in ids:
        entry = W.get_entry(entry_id)
        res = W.verify(entry_id, dirs, full=args.full, repin=args.repin, preset=args.preset)
        if res.state == "missing":
            if entry.required:
                bad += 1
            out(f"{entry_id:<20}  missing   {'required' if entry.required else 'optional'}  {entry.local_path}")
        elif res.ok:
            out(f"{entry_id:<20}  {res.state:<8}  {res.path}  ({res.message})")
        else:
            bad += 1
            out(f"{entry_id:<20}  BAD       {res.message}")
    return 1 if bad else 0


def _cmd_random(args, out=print) -> int:
    from .weights import write_random_weights

    written = write_random_weights(args.out, args.preset, seed=args.seed, dtype=args.dtype, log=out)
    out(f"wrote {len(written)} files of random {args.preset} weights into {args.out}")
    return 0


# ------------------------------------------------------------------------------------------ animate

# Settings fields -> the flags that set them, so a settings problem names the user's own words.
_FLAGS = {"steps": "--steps", "denoise": "--steps", "seed": "--seed", "sampler": "--sampler",
          "schedule": "--scheduler", "window": "--window", "overlap": "--overlap", "shift": "--shift",
          "height": "--size", "width": "--size", "appearance_cfg": "--appearance-cfg", "motion_cfg": "--motion-cfg",
          "noise_aug": "--noise-aug", "decode_chunk": "--decode-chunk", "branch_mode": "--branch-mode",
          "guidance_interval": "--guidance-interval", "sdpa_backend": "--attention"}


def animate_settings(args):
    """The run's Settings from the animate flags (the release's values where a flag is not given)."""
    from .pipeline import Settings

    return Settings(steps=args.steps, sampler=args.sampler, schedule=args.scheduler,
                    appearance_cfg=tuple(args.appearance_cfg), motion_cfg=tuple(args.motion_cfg), seed=args.seed,
                    window=args.window, overlap=args.overlap, shift=args.shift, height=args.size, width=args.size,
                    noise_aug=args.noise_aug, decode_chunk=args.decode_chunk, branch_mode=args.branch_mode,
                    guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
                    sdpa_backend=args.attention, compile_unet=args.compile, channels_last=args.channels_last)


def _check_animate_args(args) -> None:
    """The CLI's own rules (size, frames, file names); the settings' rules live in Settings.problems."""
    problems = animate_settings(args).problems()
    if problems:
        fields, err = problems[0]
        flags = "/".join(dict.fromkeys(_FLAGS.get(f, f) for f in fields))
        raise HPError(f"{flags}: {err}")
    if args.max_frames is not None and args.max_frames < 1:
        raise HPError(f"--max-frames must be at least 1 (got {args.max_frames}).")
    for flag, value in (("--out", args.out), ("--paste-back", args.paste_back)):
        if value is not None and Path(value).suffix.lower() != ".mp4":
            raise HPError(f"{flag} must name an .mp4 file (got {value}).")


def _check_device(name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise HPError(f"--device {name!r} is not a device name.", hint="Use auto, cuda, cuda:N, mps or cpu.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HPError("--device cuda was asked for, but this PyTorch sees no CUDA GPU.",
                      hint="Use --device cpu (slow), or install a CUDA build of PyTorch.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise HPError(f"There is no GPU {device.index} (this machine has {torch.cuda.device_count()}).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HPError("--device mps was asked for, but MPS is not available here.", hint="Use --device cpu.")


class _Progress:
    """tqdm bar fed by the pipeline's progress(done, total, stage) calls; a new stage starts a new bar."""

    def __init__(self):
        self.bar, self.stage = None, None

    def __call__(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or (stage is not None and stage != self.stage):
            self.close()
            self.bar, self.stage = tqdm(total=total, desc=stage or "animate", unit="step"), stage
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def animate_request(args):
    """The typed request (hp_core.run.RunRequest) for the animate flags."""
    from .run import RunRequest
    from .weights import default_search_dirs

    return RunRequest(image=Path(args.image), video=Path(args.video), out=Path(args.out),
                      paste_back=Path(args.paste_back) if args.paste_back else None,
                      models_dirs=default_search_dirs(args.models_dir), settings=animate_settings(args),
                      preset=args.preset, device=None if args.device == "auto" else args.device,
                      precision=args.dtype, vae=Path(args.vae) if args.vae else None, max_frames=args.max_frames,
                      audio=not args.no_audio)


def _cmd_animate(args, out=print) -> int:
    _check_animate_args(args)
    _check_device(args.device)
    from . import run as R

    progress = _Progress()
    try:
        result = R.run(animate_request(args), progress)
    finally:
        progress.close()
    for note in result.warnings:
        out(f"note: {note}")
    for target in filter(None, (result.out, result.paste_back)):
        out(f"wrote {target}")
    return 0


# --------------------------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # e.g. the UNet evaluations a run costs
    commands = {"weights": _cmd_weights, "make-random-weights": _cmd_random, "animate": _cmd_animate}
    try:
        return commands[args.command](args)
    except HPError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except MemoryError:
        sys.stderr.write("error: out of memory. Try fewer frames (--max-frames) or a smaller --size.\n")
        return 1
    except RuntimeError as err:
        if type(err).__name__ != "OutOfMemoryError" and "out of memory" not in str(err):
            raise
        sys.stderr.write("error: the GPU ran out of memory. Try fewer frames (--max-frames), a smaller --size, "
                         "or close other programs using the GPU.\n")
        return 1
