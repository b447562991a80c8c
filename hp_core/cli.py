"""Command line: `python -m hp_core weights|make-random-weights|animate ...`.

Every error a user can cause ends as one `error: ...` message on stderr and a non-zero exit code
(2 for bad arguments, 1 for everything else), never a traceback.

`animate` builds a typed ``hp_core.run.RunRequest`` from its flags (``animate_request``) and runs it with
``hp_core.run.run``, which checks everything knowable first and writes the outputs itself, atomically.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import run
from . import weights
from .errors import HPError
from .memory import check_host_memory
from .models import PRESET_DIMS, PRESETS
from .models.precision import PRECISIONS
from .models.precision import precision_dtypes
from .motion_edit import MotionEdit
from .options import EDIT_OPTIONS, add_flags, edit_from_flags, flags_of, settings_from_flags
from .pipeline import Settings
from .run import RunRequest
from .weights import default_search_dirs, write_random_weights
from .weights.locations import folder_preset, is_stand_in
from .weights.random_weights import RANDOM_DTYPES


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments on one line (plus the usage) and exits with 2, and that gives
    animate / motion extract the preset of their models folder when --preset is not given."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        if getattr(namespace, "preset_from_folder", False) and getattr(namespace, "preset", None) is None:
            namespace.preset = default_preset(getattr(namespace, "models_dir", None))
        return namespace, extra


def default_preset(models_dir) -> str:
    """The preset without --preset: the one a random-weights folder records (make-random-weights), else
    'official' (the released weights)."""

    return folder_preset(default_search_dirs(models_dir))


EXAMPLES = """examples:
  python -m hp_core weights download                 # fetch the released weights (about 10 files)
  python -m hp_core weights status                   # what is there, what is missing
  python -m hp_core animate --image face.jpg --video drive.mp4 --out result.mp4
  python -m hp_core animate --image face.jpg --video drive.mp4 --out quick.mp4 --size 256 --steps 10
  python -m hp_core make-random-weights --preset tiny --out /tmp/tiny   # random test weights, no download

`python -m hp_core COMMAND --help` describes each command."""

ANIMATE_EXAMPLES = """examples:
  # the release's settings (512 px, 25 steps): meant for a GPU; on a CPU this takes hours
  python -m hp_core animate --image face.jpg --video drive.mp4 --out result.mp4
  # quick look (about a tenth of the work): smaller and fewer steps
  python -m hp_core animate --image face.jpg --video drive.mp4 --out quick.mp4 --size 256 --steps 10
  # also pasted back into the photo, first 50 frames, reproducible seed
  python -m hp_core animate --image face.jpg --video drive.mp4 --out crop.mp4 --paste-back full.mp4 \\
      --max-frames 50 --seed 42
  # one performance, several portraits (extracted once), results into a folder
  python -m hp_core animate --image portraits/ --video drive.mp4 --out results/
  # a saved performance (python -m hp_core motion extract) with its head pose made gentler
  python -m hp_core animate --image face.jpg --motion perf.safetensors --out calm.mp4 --pose-scale 0.5 0.5 0.5"""


def _add_models_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", action="append", metavar="DIR",
                   help="models folder (repeatable; default $HP_MODELS_DIR, else ComfyUI's models/hunyuan_portrait "
                        "for the pack in ComfyUI/custom_nodes, else ~/.local/share/hunyuan_portrait/models "
                        "or the platform's per-user data folder; the same from any working folder)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all commands."""
    parser = _Parser(prog="python -m hp_core", description="HunyuanPortrait without ComfyUI: weights and animation.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND",
                                help="weights, make-random-weights, animate or motion")

    weights_cmd = sub.add_parser("weights", help="list, download and verify the model files")
    wsub = weights_cmd.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION",
                                      help="status, download or verify")
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
    vf.add_argument("--preset", choices=PRESETS,
                    help="network sizes the files must have (default: a random-weights folder's own, else official)")

    rw = sub.add_parser("make-random-weights",
                        help="developer: random weights of a preset in the official file layout")
    rw.add_argument("--preset", choices=PRESETS, required=True,
                    help="network sizes: tiny (small and fast, for tests) or official (the release's sizes)")
    rw.add_argument("--out", required=True, metavar="DIR",
                    help="folder to write (the release's layout, plus stand-in yoloface_v5m.pt and arcface.onnx "
                         "and random_weights.json recording the preset); animate --models-dir DIR then runs")
    rw.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    rw.add_argument("--dtype", choices=tuple(RANDOM_DTYPES), default="auto",
                    help="auto: the release's precisions for official, fp32 for tiny")

    an = sub.add_parser("animate", help="animate a portrait (or several) with a driving video or a saved performance",
                        description="Animate a portrait with the expressions and head pose of a driving video "
                                    "(or a saved performance).",
                        epilog=ANIMATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    an.add_argument("--image", required=True, nargs="+", metavar="SRC",
                    help="source portrait image; several images or folders animate each one with the same "
                         "performance (extracted once), and --out is then a folder")
    an.add_argument("--video", metavar="DRIVING", help="driving video (its audio is copied)")
    an.add_argument("--motion", metavar="PERF.safetensors",
                    help="a saved performance (`motion extract`) instead of extracting one from --video")
    an.add_argument("--audio", metavar="FILE", help="sound for the result (default: the driving video's)")
    an.add_argument("--out", required=True, metavar="OUT.mp4",
                    help="output video (the 512x512 crop); with several portraits, a folder that gets "
                         "<portrait name>.mp4 for each")
    an.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    _add_edit_flags(an)
    an.add_argument("--paste-back", metavar="OUT_FULL.mp4", help="also write the result pasted into the source")
    add_flags(an)  # every sampling setting, declared once in hp_core.options
    an.add_argument("--max-frames", type=int, help="use only the first N driving frames")
    an.add_argument("--size", type=int, default=Settings().height,
                    help="side of the square result in pixels (the release: 512; 256 for a quick look)")
    an.add_argument("--vram-budget", type=float, metavar="GB",
                    help="GPU memory the UNet's weights may take: blocks beyond it wait in system memory and are "
                         "copied in as they run (slower, same result); the encoders leave the GPU after use. "
                         "With --dtype fp8 the weights take half as much")
    an.add_argument("--vae", metavar="PATH", help="an SVD VAE folder, VAE file or SVD checkpoint to use")
    an.add_argument("--no-audio", action="store_true", help="do not copy the driving clip's audio")
    _add_run_flags(an)

    mo = sub.add_parser("motion", help="performances: extract one from a clip, or bake edits into one")
    msub = mo.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION",
                             help="extract or edit")
    ex = msub.add_parser("extract", help="the performance of a driving clip, saved as .safetensors")
    ex.add_argument("--video", required=True, metavar="DRIVING", help="driving video")
    ex.add_argument("--out", required=True, metavar="PERF.safetensors", help="performance file to write")
    ex.add_argument("--max-frames", type=int, help="use only the first N driving frames")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_run_flags(ex)
    ed = msub.add_parser("edit", help="a saved performance with edits baked in, as a new file")
    ed.add_argument("--motion", required=True, metavar="IN.safetensors", help="performance to edit")
    ed.add_argument("--image", metavar="PORTRAIT", help="the portrait (needed for --pose-mode relative/still)")
    ed.add_argument("--out", required=True, metavar="OUT.safetensors", help="edited performance to write")
    ed.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_edit_flags(ed)
    _add_run_flags(ed, preset=False)
    return parser


def _add_run_flags(p: argparse.ArgumentParser, preset: bool = True) -> None:
    if preset:
        p.add_argument("--preset", choices=tuple(PRESET_DIMS), default=None,
                       help="network sizes of the weights (default: the preset a make-random-weights folder "
                            "records, else official = the released weights; tiny: random test weights)")
        p.set_defaults(preset_from_folder=True)
    p.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, mps or auto")
    p.add_argument("--dtype", choices=PRECISIONS, default="auto", help="precision (auto: the release's)")
    _add_models_dir(p)


def _add_edit_flags(p: argparse.ArgumentParser) -> None:
    """The motion edit's flags (hp_core.options.EDIT_OPTIONS; the defaults reproduce the release)."""
    add_flags(p.add_argument_group("motion edit (defaults = the release)"), EDIT_OPTIONS)


def edit_from_args(args) -> MotionEdit:
    """The MotionEdit of the edit flags; an impossible value names its flag."""
    edit = edit_from_flags(args)
    problems = edit.problems()
    if problems:
        fields, err = problems[0]
        raise HPError(f"{flags_of(fields)}: {err}")
    return edit


# ------------------------------------------------------------------------------------------ weights

def _print_status(rows, out=print) -> None:
    width = max(len(r.id) for r in rows)
    for r in rows:
        kind = "required" if r.required else "optional"
        where = str(r.path) if r.path else r.local_path
        stand_in = "  (stand-in)" if r.path and is_stand_in(r.path) else ""
        out(f"{r.id:<{width}}  {r.state:<10}  {kind:<8}  {where}{stand_in}" + (f"  [{r.detail}]" if r.detail else ""))


def _cmd_weights(args, out=print) -> int:
    dirs = default_search_dirs(args.models_dir)
    if args.action == "status":
        rows = weights.status(dirs, include_optional=not args.required_only)
        out("models folders: " + ", ".join(str(d) for d in dirs))
        _print_status(rows, out)
        missing = [r.id for r in rows if r.required and r.state in ("missing", "bad")]
        if missing:
            out(f"{len(missing)} required file(s) missing or damaged: run `python -m hp_core weights download`.")
        return 0
    if args.action == "download":
        skip = []
        if args.vae:
            why = weights.check_explicit_vae(args.vae)  # an SVD VAE (read cheaply) before the gated download is skipped
            if why:
                raise HPError(f"--vae {Path(args.vae).expanduser().resolve()}: {why}.",
                              hint="Pass an SVD VAE folder, VAE file or single-file SVD checkpoint.")
            skip = ["svd_vae"]
            out(f"using the SVD VAE at {args.vae}")
        written = weights.download(dirs, ids=args.only, include_optional=args.optional, token=args.token, skip=skip,
                                   log=out)
        out(f"downloaded {len(written)} file(s) into {dirs[0]}" if written
            else "nothing to download: all files present")
        return 0
    ids = args.only or [e.id for e in weights.load_manifest()]
    bad = 0
    for entry_id in ids:
        entry = weights.get_entry(entry_id)
        res = weights.verify(entry_id, dirs, full=args.full, repin=args.repin, preset=args.preset)
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
    written = write_random_weights(args.out, args.preset, seed=args.seed, dtype=args.dtype, log=out)
    out(f"wrote {len(written)} files of random {args.preset} weights into {args.out}")
    out(f"animate --models-dir {args.out} uses them (preset {args.preset}, read from the folder); the face detector "
        "and ArcFace there are stand-ins: the detector finds only a pure red square, as in the tests' portraits")
    return 0


# ------------------------------------------------------------------------------------------ animate

def animate_settings(args):
    """The run's Settings from the animate flags (the release's values where a flag is not given)."""
    return settings_from_flags(args, height=args.size, width=args.size)


def _check_animate_args(args) -> None:
    """The CLI's own rules (size, frames, file names); the settings' rules live in Settings.problems."""
    problems = animate_settings(args).problems()
    if problems:
        fields, err = problems[0]
        raise HPError(f"{flags_of(fields)}: {err}")
    edit_from_args(args)
    if args.video is None and args.motion is None:
        raise HPError("Nothing drives the portrait.", hint="Give --video DRIVING.mp4 or --motion PERF.safetensors.")
    if args.max_frames is not None and args.max_frames < 1:
        raise HPError(f"--max-frames must be at least 1 (got {args.max_frames}).")
    if _many(args):
        if args.paste_back:
            raise HPError("--paste-back names one file, and several portraits were given.",
                          hint="Animate them one at a time to paste each back.")
        if Path(args.out).suffix.lower() == ".mp4":
            raise HPError(f"With several portraits --out is a folder, got {args.out}.",
                          hint="Give a folder; each result is written there as <portrait name>.mp4.")
        return
    for flag, value in (("--out", args.out), ("--paste-back", args.paste_back)):
        if value is not None and Path(value).suffix.lower() != ".mp4":
            raise HPError(f"{flag} must name an .mp4 file (got {value}).")


def _many(args) -> bool:
    """Several portraits (more than one --image, or a folder)."""
    return len(args.image) > 1 or Path(args.image[0]).expanduser().is_dir()


def _check_device(name: str) -> None:
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise HPError(f"--device {name!r} is not a device name.", hint="Use auto, cuda, cuda:N, mps or cpu.") from err
    if device.type not in ("cpu", "cuda", "mps"):
        what = ("holds no data (shapes only), so nothing can be computed on it" if device.type == "meta"
                else "is not one this pack runs on")
        raise HPError(f"--device {name} {what}.", hint="Use auto, cuda, cuda:N, mps or cpu.")
    if device.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda:  # a CUDA build that finds no usable GPU: the driver or the environment
            raise HPError(f"--device {name} was asked for, but PyTorch (built with CUDA {torch.version.cuda}) sees "
                          "no GPU.", hint="PyTorch has CUDA but sees no GPU: check the NVIDIA driver (nvidia-smi) "
                          "and CUDA_VISIBLE_DEVICES, or use --device cpu (slow).")
        raise HPError(f"--device {name} was asked for, but this PyTorch is a CPU-only build and sees no CUDA GPU.",
                      hint="Install a CUDA build of PyTorch (https://pytorch.org/get-started/locally/), or use "
                           "--device cpu (slow).")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise HPError(f"There is no GPU {device.index} (this machine has {torch.cuda.device_count()}).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HPError("--device mps was asked for, but MPS is not available here.", hint="Use --device cpu.")


class _Progress:
    """tqdm bar fed by the pipeline's progress(done, total, stage) calls; a new stage starts a new bar."""

    def __init__(self):
        self.bar, self.stage = None, None

    def __call__(self, done: int, total: int | None = None, stage: str | None = None) -> None:
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
    """The typed request (hp_core.run.RunRequest) for the animate flags (the first portrait's)."""

    optional = {name: Path(getattr(args, name)) if getattr(args, name) else None
                for name in ("video", "motion", "paste_back", "vae")}
    return RunRequest(image=Path(args.image[0]), out=Path(args.out), audio_file=Path(args.audio) if args.audio else None,
                      edit=edit_from_args(args), models_dirs=default_search_dirs(args.models_dir),
                      settings=animate_settings(args), preset=args.preset,
                      device=None if args.device == "auto" else args.device, precision=args.dtype,
                      max_frames=args.max_frames, audio=not args.no_audio, overwrite=args.overwrite,
                      vram_budget=args.vram_budget, **optional)


def _cmd_animate(args, out=print) -> int:
    _check_animate_args(args)
    _check_device(args.device)

    progress = _Progress()
    try:
        if _many(args):
            batch = run.run_many(animate_request(args), [Path(i) for i in args.image], Path(args.out), progress,
                                 log=out)
            results = batch.written
        else:
            batch, results = None, [run.run(animate_request(args), progress)]
    finally:
        progress.close()
    for note in dict.fromkeys(n for r in results for n in r.warnings):
        out(f"note: {note}")
    for result in results:
        for target in filter(None, (result.out, result.paste_back)):
            out(f"wrote {target}")
    if batch is not None and batch.failed:
        out(f"{len(batch.failed)} of {len(batch.failed) + len(results)} portraits failed:")
        for image, why in batch.failed:
            out(f"  {image}: {why}")
        return 1
    return 0


def _cmd_motion(args, out=print) -> int:
    _check_device(args.device)

    device = None if args.device == "auto" else args.device
    if args.action == "extract":
        if args.max_frames is not None and args.max_frames < 1:
            raise HPError(f"--max-frames must be at least 1 (got {args.max_frames}).")
        progress = _Progress()
        try:
            done = run.extract_to_file(Path(args.video), Path(args.out), models_dirs=args.models_dir,
                                       preset=args.preset, device=device, precision=args.dtype,
                                       max_frames=args.max_frames, overwrite=args.overwrite, progress=progress)
        finally:
            progress.close()
        for note in done.warnings:
            out(f"note: {note}")
        perf = done.performance
        out(f"wrote {args.out}: {perf.frames} frames at {perf.fps:g} fps, preset {perf.preset}")
        return 0
    edited = run.edit_to_file(Path(args.motion), Path(args.out), edit_from_args(args),
                              image=Path(args.image) if args.image else None, models_dirs=args.models_dir,
                              device=device, precision=args.dtype, overwrite=args.overwrite)
    out(f"wrote {args.out}: {edited.frames} frames")
    return 0


# --------------------------------------------------------------------------------------------- main

class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, a service manager, a container stop), raised like Ctrl-C so the same cleanup runs."""


class _SigtermAsInterrupt:
    """While a command runs, SIGTERM raises ``Terminated`` in the main thread: temporary files are removed
    and ffmpeg children ended as for Ctrl-C. A second SIGTERM does not cut that cleanup short."""

    def __enter__(self):
        self.fired, self.installed, self.old = False, False, None
        if threading.current_thread() is threading.main_thread():
            try:
                self.old, self.installed = signal.signal(signal.SIGTERM, self._handler), True
            except (ValueError, OSError):
                pass
        return self

    def _handler(self, signum, frame):
        if not self.fired:
            self.fired = True
            raise Terminated()

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.old if self.old is not None else signal.SIG_DFL)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # e.g. the UNet evaluations a run costs
    commands = {"weights": _cmd_weights, "make-random-weights": _cmd_random, "animate": _cmd_animate,
                "motion": _cmd_motion}
    loop_hint = "Point the link at the real file, or give the file's own path."
    with _SigtermAsInterrupt():
        try:
            if args.command == "animate" and all(isinstance(getattr(args, k, None), int) and getattr(args, k) > 0
                                                 for k in ("size", "window", "decode_chunk")):
                _check_device(args.device)
                device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
                dtypes = precision_dtypes(args.dtype, device)
                check_host_memory(args.preset, (args.size, args.size), device, window=args.window,
                                  decode_chunk=args.decode_chunk, unet_dtype=dtypes["unet"], vae_dtype=dtypes["vae"])
            return commands[args.command](args)
        except HPError as err:
            sys.stderr.write(f"error: {err}\n")
            return 1
        except Terminated:
            sys.stderr.write("error: terminated (SIGTERM); unfinished outputs were removed\n")
            return 143
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            return 130
        except MemoryError:
            sys.stderr.write("error: out of memory. Try fewer frames (--max-frames) or a smaller --size.\n")
            return 1
        except OSError as err:
            dirs = getattr(args, "models_dir", None)
            name = err.filename or getattr(args, "out", None) or (dirs[0] if dirs else "the output folder")
            if err.errno == errno.ELOOP:
                sys.stderr.write(f"error: {name} is a symbolic link that leads back to itself (a loop of links). "
                                 f"{loop_hint}\n")
                return 1
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                sys.stderr.write(f"error: cannot write {name}: no space left on the disk (or the quota is used "
                                 "up). Free some space, or choose a folder on another disk.\n")
                return 1
            if err.errno == errno.EROFS:
                sys.stderr.write(f"error: cannot write {name}: the file system is read-only. Choose a folder you "
                                 "can write to.\n")
                return 1
            if err.errno in (errno.EACCES, errno.EPERM):
                sys.stderr.write(f"error: permission denied: {name}. Use a file or folder you can read and write "
                                 "to, or fix its permissions.\n")
                return 1
            raise
        except RuntimeError as err:
            text = str(err)
            if text.startswith("Symlink loop from"):  # pathlib's resolve() on a loop of links
                sys.stderr.write(f"error: {text.removeprefix('Symlink loop from').strip()} is a symbolic link that "
                                 f"leads back to itself (a loop of links). {loop_hint}\n")
                return 1
            if "PytorchStreamWriter failed" in text or "file write failed" in text:  # torch.save on a full disk
                where = getattr(args, "out", None) or "the output folder"
                sys.stderr.write(f"error: cannot write into {where}: the disk is full or the folder is not "
                                 "writable. Free some space, or choose a folder you can write to.\n")
                return 1
            if "DefaultCPUAllocator" in text or "can't allocate memory" in text or "not enough memory" in text:
                asked = re.search(r"allocate (\d+) bytes", text)
                what = f"{int(asked.group(1)) / 1024 ** 3:.1f} GiB more" if asked else "more memory"
                sys.stderr.write(f"error: the computer ran out of memory (it could not give {what}). Try a smaller "
                                 "--size (the release: 512), a smaller --decode-chunk or fewer frames "
                                 "(--max-frames).\n")
                return 1
            if type(err).__name__ != "OutOfMemoryError" and "out of memory" not in text:
                raise
            sys.stderr.write("error: the GPU ran out of memory. Try fewer frames (--max-frames), a smaller --size, "
                             "or close other programs using the GPU.\n")
            return 1
