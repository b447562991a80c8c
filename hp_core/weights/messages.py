"""What to tell a user about missing or unusable files: where they go (absolute folder), where they come
from, how to get the gated SVD VAE or use one already on disk. Messages never ask the user to run again
the command that just failed; they name what to do instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from . import locations
from .manifest import WeightEntry

DOWNLOAD_COMMAND = "python -m hp_core weights download"


def _dest(search_dirs) -> Path:
    dirs = locations.as_dirs(search_dirs)
    return (dirs[0] if dirs else locations.DEFAULT_MODELS_DIR).resolve()


def vae_alternatives() -> str:
    """How to use an SVD VAE the user already has instead of the gated download."""
    return ("Or use an SVD VAE already on disk: a diffusers vae/ folder (config.json + "
            "diffusion_pytorch_model(.fp16).safetensors), a VAE file or a single-file SVD checkpoint "
            "(e.g. ComfyUI's models/checkpoints/svd_xt.safetensors), passed with --vae PATH on the command line, "
            "or picked from ComfyUI's models/vae in the loader node's VAE list.")


def gated_message(entry: WeightEntry, dest: Path) -> str:
    """How to get a file from a gated repository (licence, token), or use a copy the user already has."""
    text = (f"{entry.repo} is gated: open {entry.page} while logged in to Hugging Face and accept the licence; "
            f"create a read token at https://huggingface.co/settings/tokens and give it to the download with "
            f"HF_TOKEN=hf_... or --token hf_... .")
    if entry.component == "vae":
        text += f" The VAE goes to {Path(dest).resolve() / 'vae'}. " + vae_alternatives()
    return text


def missing_message(entries: Sequence[WeightEntry], search_dirs, reason: str | None = None, *,
                    suggest_download: bool = True) -> str:
    """Which files are missing, the absolute folder they go to, where to fetch each, and the gated VAE's
    options. ``suggest_download=False`` where the download itself just failed (offline, no connection)."""
    dirs = locations.as_dirs(search_dirs)
    dest = _dest(dirs)
    lines = [f"{'Missing weights' if reason is None else reason}: " + ", ".join(e.local_path for e in entries) + "."]
    if suggest_download:
        lines.append(f"Get them with `{DOWNLOAD_COMMAND} --models-dir \"{dest}\"`, or put them by hand into {dest}:")
    else:
        lines.append(f"Put them by hand into {dest}:")
    for e in entries:
        lines.append(f"  {e.local_path}  <-  {e.url}" + ("  (gated: accept the licence first)" if e.gated else ""))
    for e in {e.repo: e for e in entries if e.gated}.values():
        lines.append(gated_message(e, dest))
    lines.append(f"Files you already have are found where the release's README puts them: point --models-dir "
                 f"(or a hunyuan_portrait entry of extra_model_paths.yaml) at your {locations.RELEASE_DIR}/ folder, or "
                 f"at the folder `huggingface-cli download tencent/HunyuanPortrait --local-dir` filled.")
    if len(dirs) > 1:
        lines.append("Searched: " + ", ".join(str(d.resolve()) for d in dirs) + ".")
    return "\n".join(lines)


# structure.compare_checkpoint ends its reason so when the file fits another preset's networks
_OTHER_PRESET = re.compile(r"it is the \w+ checkpoint of the '(\w+)' preset$")
CLI_PRESET_ACTION = "Run with --preset {preset} (or leave --preset out: a random-weights folder says its own)"
LOADER_PRESET_ACTION = "Set the loader's preset to '{preset}'"


def other_preset(bad: Sequence[tuple[WeightEntry, Path, str]]) -> str | None:
    """The preset every unusable file belongs to, when they are all whole checkpoints of one other preset
    (e.g. tiny random weights checked as 'official'); else None."""
    found = {m.group(1) if m else None for m in (_OTHER_PRESET.search(why) for _, _, why in bad)}
    return found.pop() if bad and len(found) == 1 and None not in found else None


def wrong_preset_message(preset: str, bad: Sequence[tuple[WeightEntry, Path, str]],
                         action: str = CLI_PRESET_ACTION) -> str:
    """Two short lines: what to set (``action`` with {preset}), then the files, by folder."""
    folders: dict[Path, list[str]] = {}
    for entry, path, _ in bad:
        folders.setdefault(Path(path).parent, []).append(Path(path).name)
    where = "; ".join(f"{', '.join(names)} in {folder}" for folder, names in folders.items())
    return (f"{action.format(preset=preset)}: these weight files are of the '{preset}' preset; nothing was run.\n"
            f"Files: {where}.")


def problems_message(missing: Sequence[WeightEntry], bad: Sequence[tuple[WeightEntry, Path, str]],
                     search_dirs, *, suggest_download: bool = True, preset_action: str = CLI_PRESET_ACTION) -> str:
    """One message for every missing and every unusable file (preflight). Files that are all another
    preset's come as two lines that lead with ``preset_action`` (a format string with {preset})."""
    preset = None if missing else other_preset(bad)
    if preset:
        return wrong_preset_message(preset, bad, preset_action)
    n = len(missing) + len(bad)
    parts = [f"{n} weight file{'s' if n != 1 else ''} cannot be used; nothing was run."]
    if bad:
        parts.append("Unusable (damaged or not the right file; none was loaded):")
        parts += [f"  {entry.id}: {path}: {why}" for entry, path, why in bad]
        parts.append(f"Replace them with the published files ({', '.join(e.url for e, _, _ in bad)}); "
                     f"`{DOWNLOAD_COMMAND}` fetches damaged ones again, and "
                     f"`python -m hp_core weights verify --repin` accepts a file replaced on purpose.")
    if missing:
        parts.append(missing_message(missing, search_dirs, suggest_download=suggest_download))
    return "\n".join(parts)
