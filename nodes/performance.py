"""Performances as artists handle them: Motion Edit (pose mode, strengths, smoothing, length), Save
Performance and Load Performance (models/hunyuan_portrait/performances)."""

from __future__ import annotations

import os
import re
from pathlib import PureWindowsPath

from hp_core.errors import HPError
from hp_core.motion_edit import edit_performance
from hp_core.options import EDIT_OPTIONS, edit_from_widgets, widget_inputs
from hp_core.performance import SUFFIX, load_performance, save_performance

from . import bridge
from .sockets import APPEARANCE, PERFORMANCE

CATEGORY = "HunyuanPortrait"
NONE_SAVED = "(no saved performances yet)"
class HunyuanPortraitMotionEdit:
    """Node: reshape a performance (head pose mode, per-angle scale and offset, expression strength, smoothing,
    start and length) with arithmetic only; no encoder runs again. The defaults change nothing."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "performance": (PERFORMANCE, {"tooltip": "From the Motion Extractor or Load Performance."}),
                **widget_inputs(options=EDIT_OPTIONS),  # declared once in hp_core.options
            },
            "optional": {
                "appearance": (APPEARANCE, {"tooltip": "From the Appearance Extractor: the portrait's own head "
                                                       "pose and expression, for the relative and still modes."}),
            },
        }

    RETURN_TYPES = (PERFORMANCE,)
    RETURN_NAMES = ("performance",)
    OUTPUT_TOOLTIPS = ("The edited performance, for the Sampler or Save Performance.",)
    FUNCTION = "edit"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Shapes the motion: relative or still head pose (so another person's performance fits the "
                   "portrait), per-angle strength and offset, expression strength, smoothing of jitter, and the "
                   "part and length of the clip used. Every default reproduces the release.")

    OPTIONS = EDIT_OPTIONS  # the widgets that arrive as **widgets

    def edit(self, performance, appearance=None, **widgets):
        edit = edit_from_widgets(widgets)
        portrait = appearance.motion if appearance is not None else None
        if edit.needs_portrait and portrait is None:
            raise HPError(f"Connect the Appearance Extractor's appearance to Motion Edit: pose mode {edit.pose_mode} "
                          f"/ expression mode {edit.expression_mode} starts from the portrait's own pose.",
                          hint="Or set pose_mode to absolute and expression_mode to driving.")
        return (edit_performance(performance, edit, portrait),)


def _next_free(folder, prefix: str) -> str:
    """``<prefix>_00001.safetensors``, counting up past every existing file (saving never overwrites)."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"_(\d+)" + re.escape(SUFFIX) + "$")
    taken = [int(m.group(1)) for name in (os.listdir(folder) if folder.is_dir() else [])
             if (m := pattern.match(name))]
    return f"{os.path.basename(prefix)}_{max(taken, default=0) + 1:05d}{SUFFIX}"


class HunyuanPortraitSavePerformance:
    """Node: write a performance to models/hunyuan_portrait/performances, never over an existing file."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "performance": (PERFORMANCE, {"tooltip": "The performance to keep (edited or not)."}),
            "filename_prefix": ("STRING", {"default": "performance", "tooltip":
                                "File name start; a counter is added (performance_00001.safetensors), so nothing "
                                "is overwritten. A subfolder may be given (e.g. actors/anna)."}),
        }}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Saves the performance (expression tokens, head pose, intensity, fps) as a .safetensors file "
                   "in models/hunyuan_portrait/performances, to drive other portraits later with Load "
                   "Performance, without the driving clip or the motion encoders.")

    def save(self, performance, filename_prefix):
        prefix = (filename_prefix or "performance").strip().replace("\\", "/")
        if prefix.startswith("/") or ".." in prefix.split("/") or PureWindowsPath(prefix).drive:
            raise HPError(f"filename_prefix {filename_prefix!r} leaves the performances folder.",
                          hint="Use a plain name, or a subfolder such as actors/anna.")
        base = bridge.performance_dirs()[0]
        folder = base / os.path.dirname(prefix)
        for _ in range(100):  # another save may take the same number between the look and the write
            target = folder / _next_free(folder, prefix)
            try:
                save_performance(performance, target)
                break
            except HPError:
                if not target.exists():
                    raise
        else:
            raise HPError(f"Could not find a free file name for {prefix} in {folder}.")
        name = target.relative_to(base).as_posix()
        return {"ui": {"text": [name]}}


class HunyuanPortraitLoadPerformance:
    """Node: a saved performance from models/hunyuan_portrait/performances."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "performance_file": (bridge.performance_files() or [NONE_SAVED], {"tooltip":
                                 "A file saved by Save Performance (or `python -m hp_core motion extract`) in "
                                 "models/hunyuan_portrait/performances."}),
        }}

    RETURN_TYPES = (PERFORMANCE,)
    RETURN_NAMES = ("performance",)
    OUTPUT_TOOLTIPS = ("The saved performance, for Motion Edit or the Sampler.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a saved performance: the portrait can change freely, no driving clip or motion "
                   "encoder is needed.")

    @classmethod
    def IS_CHANGED(cls, performance_file):
        path = bridge.performance_path(performance_file)
        if path is None:
            return performance_file
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"

    def load(self, performance_file):
        path = bridge.performance_path(performance_file)
        if path is None:
            where = ", ".join(str(d) for d in bridge.performance_dirs())
            raise HPError(f"The performance {performance_file!r} is not in {where}.",
                          hint="Save one with Save Performance first, or refresh the page to update the list.")
        return (load_performance(path),)


NODE_CLASS_MAPPINGS = {
    "HunyuanPortraitMotionEdit": HunyuanPortraitMotionEdit,
    "HunyuanPortraitSavePerformance": HunyuanPortraitSavePerformance,
    "HunyuanPortraitLoadPerformance": HunyuanPortraitLoadPerformance,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HunyuanPortraitMotionEdit": "HunyuanPortrait Motion Edit",
    "HunyuanPortraitSavePerformance": "HunyuanPortrait Save Performance",
    "HunyuanPortraitLoadPerformance": "HunyuanPortrait Load Performance",
}
