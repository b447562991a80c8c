"""Every setting an artist can set, declared once: the field it sets (of the sampling Settings, or of the
MotionEdit), its help text, its command-line flag and its node widget(s), its range or choices. Defaults are
those dataclasses' own. The CLI's flags (``add_flags`` / ``settings_from_flags`` / ``edit_from_flags``), the
nodes' widgets (``widget_inputs`` / ``settings_from_widgets`` / ``edit_from_widgets``), the queue-time check
and the docs' settings table are all made from ``OPTIONS`` and ``EDIT_OPTIONS``, so adding a setting is one
entry here plus the code that uses it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .models.sdpa import SDPA_BACKENDS
from .motion_edit import EXPRESSION_MODES, LOOP_MODES, MAX_SMOOTHING, POSE_MODES, MotionEdit
from .pipeline import SEED_MAX, Settings
from .sampling.denoiser import BRANCH_MODES
from .sampling.samplers import SAMPLERS
from .sampling.schedules import SCHEDULES

RELEASE = Settings()
NO_EDIT = MotionEdit()


@dataclass(frozen=True)
class Option:
    """One setting. ``kind``: int, float, choice, bool, pair (a (first step, last step) pair of floats: two
    widgets, one flag of two numbers), triple (three floats, one per head angle: three widgets, one flag of
    three numbers) or interval (an optional (low, high) pair; off when high is 0). ``defaults``: the dataclass
    instance whose field holds the default (the release's Settings, or the MotionEdit that changes nothing)."""

    field: str
    kind: str
    help: str
    flag: str | None = None
    widgets: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    widget_optional: bool = False   # an optional node input (hidden in the basic graph's default)
    metavar: Any = None
    defaults: Any = None            # None: the release's Settings

    @property
    def default(self):
        return getattr(RELEASE if self.defaults is None else self.defaults, self.field)


OPTIONS: tuple[Option, ...] = (
    Option("sampler", "choice", "Sampler. euler = the release; dpmpp_2m or lcm reach good results in fewer steps. "
           "On the node: ignored when a SAMPLER is connected.", "--sampler", ("sampler_name",), choices=SAMPLERS),
    Option("schedule", "choice", "Noise levels: karras (700 -> 0.002, rho 7) = the release; ays_svd = Align Your "
           "Steps for SVD, good at 8-12 steps; exponential. On the node: ignored when SIGMAS is connected.",
           "--scheduler", ("scheduler",), choices=SCHEDULES),
    Option("steps", "int", "Denoising steps (the release: 25); 10 gives a quick look.", "--steps", ("steps",), 1, 200),
    Option("appearance_cfg", "pair", "Guidance towards the portrait's appearance, ramped from the first step's "
           "value to the last's (the release: 2 and 2).", "--appearance-cfg",
           ("appearance_cfg_min", "appearance_cfg_max"), 0.0, 20.0, 0.05, metavar=("FIRST", "LAST")),
    Option("motion_cfg", "pair", "Guidance towards the driving expressions and head pose, ramped from the first "
           "step's value to the last's (the release: 2 and 2).", "--motion-cfg",
           ("motion_cfg_min", "motion_cfg_max"), 0.0, 20.0, 0.05, metavar=("FIRST", "LAST")),
    Option("seed", "int", "Seed of the starting noise (and of the noise stochastic samplers add); the same seed "
           "and settings give the same video.", "--seed", ("seed",), 0, SEED_MAX),
    Option("denoise", "float", "Fraction of the schedule run, starting from the portrait's latents (1.0 = the "
           "release).", "--denoise", ("denoise",), 0.01, 1.0, 0.01),
    Option("window", "int", "Frames the UNet sees at once (the release: 25). Lower it if you run out of memory; "
           "long videos are covered by overlapping windows.", "--window", ("context_window",), 1, 128),
    Option("overlap", "int", "Frames shared by neighbouring windows (the release: 3); more overlap is smoother "
           "and slower. Must be smaller than the window.", "--overlap", ("context_overlap",), 0, 127),
    Option("shift", "int", "How far the windows move each step (the release: 3), so window seams never stay "
           "put.", "--shift", ("shift",), 0, 128),
    Option("pad", "int", "Frames added before and after the video (the motion ramps in and out of the portrait's "
           "pose; the release: 15); cut from the result.", "--padding", ("padding",), 0, 64),
    Option("motion_scale", "float", "Strength of the motion adapters' attention (1.0 = the release); below 1 calms "
           "the motion, above 1 exaggerates it.", "--motion-scale", ("motion_scale",), 0.0, 3.0, 0.05),
    Option("noise_aug", "float", "Noise added to the portrait before its conditioning latents are encoded (seeded "
           "by the seed) and told to the UNet (0 = the release); higher loosens the likeness.", "--noise-aug",
           ("noise_aug",), 0.0, 1.0, 0.01, metavar="STRENGTH"),
    Option("branch_mode", "choice", "The three guidance branches as one batch, or one after another (a third of "
           "the activation memory, the same result); auto: sequential when the memory estimate says the batch "
           "will not fit.", "--branch-mode", ("branch_mode",), choices=("auto", *BRANCH_MODES),
           widget_optional=True),
    Option("guidance_interval", "interval", "Guidance only on steps whose sigma lies in [low, high]; other steps "
           "run one UNet evaluation instead of three. Off by default (the release).", "--guidance-interval",
           ("guidance_sigma_low", "guidance_sigma_high"), 0.0, 1000.0, 0.01, widget_optional=True,
           metavar=("LOW", "HIGH")),
    Option("sdpa_backend", "choice", "PyTorch attention backend for the UNet (auto lets PyTorch choose; math uses "
           "the most memory).", "--attention", ("attention",), choices=SDPA_BACKENDS, widget_optional=True),
    Option("compile_unet", "bool", "torch.compile the UNet (CUDA): faster steps after a slow first one.",
           "--compile", ("compile_unet",), widget_optional=True),
    Option("channels_last", "bool", "channels_last UNet weights (CUDA convolutions).", "--channels-last"),
    Option("decode_chunk", "int", "Frames the temporal VAE decodes at once (8 = the release); fewer use less "
           "memory but change the result slightly.", "--decode-chunk", minimum=1, maximum=64),
)

ANGLE_HELP = ("The release does not name the order of its three head angles: set one angle's scale to 0 and "
              "watch which turn of the head stops.")
EDIT_OPTIONS: tuple[Option, ...] = (
    Option("pose_mode", "choice", "absolute = the driver's head pose as it is (the release); relative = the portrait "
           "keeps its own pose and follows the driver's movement from the first frame on (best when another person "
           "drives); still = the head stays as in the portrait, only the face moves. relative and still need the "
           "portrait.", "--pose-mode", ("pose_mode",), choices=POSE_MODES, defaults=NO_EDIT),
    Option("pose_scale", "triple", "How much of the driver's movement each head angle keeps (1 = all, 0 = none, "
           "negative = mirrored). " + ANGLE_HELP, "--pose-scale", ("angle1_scale", "angle2_scale", "angle3_scale"),
           -3.0, 3.0, 0.05, metavar=("A1", "A2", "A3"), defaults=NO_EDIT),
    Option("pose_offset", "triple", "Degrees added to each head angle on every frame. " + ANGLE_HELP,
           "--pose-offset", ("angle1_offset", "angle2_offset", "angle3_offset"), -90.0, 90.0, 0.5,
           metavar=("A1", "A2", "A3"), defaults=NO_EDIT),
    Option("expression_strength", "float", "Experimental: how far expressions move from the first frame's (1 = the "
           "release, 0 = frozen, above 1 = exaggerated). It scales learned features: judge the result by eye.",
           "--expression-strength", ("expression_strength",), 0.0, 2.0, 0.05, defaults=NO_EDIT),
    Option("expression_mode", "choice", "Experimental: driving = expressions start from the driver's first frame "
           "(the release); relative = from the portrait's own expression (needs the portrait).",
           "--expression-mode", ("expression_mode",), choices=EXPRESSION_MODES, defaults=NO_EDIT),
    Option("pose_smoothing", "float", "Calms head jitter: smoothing strength in frames (0 = off, the release; 2-4 "
           "removes jitter). Zero-phase: no lag.", "--pose-smoothing", ("pose_smoothing",), 0.0, MAX_SMOOTHING, 0.5,
           metavar="FRAMES", defaults=NO_EDIT),
    Option("expression_smoothing", "float", "Calms expression flicker: smoothing strength in frames (0 = off).",
           "--expression-smoothing", ("expression_smoothing",), 0.0, MAX_SMOOTHING, 0.5, metavar="FRAMES",
           defaults=NO_EDIT),
    Option("start", "int", "First driving frame used.", "--start", ("start_frame",), 0, 1_000_000, metavar="FRAME",
           defaults=NO_EDIT),
    Option("length", "int", "Frames in the result (0 = every frame from the start frame); longer than the clip "
           "needs a loop.", "--length", ("length",), 0, 1_000_000, metavar="FRAMES", defaults=NO_EDIT),
    Option("loop", "choice", "How a length longer than the clip is filled: repeat (the seam is crossfaded, no "
           "jump) or pingpong (back and forth).", "--loop", ("loop",), choices=LOOP_MODES, defaults=NO_EDIT),
)


# ------------------------------------------------------------------------------------------ the CLI

def add_flags(parser, options: tuple[Option, ...] = OPTIONS) -> None:
    """One flag per option that has one, with its help, range and default (``parser``: a parser or group)."""
    for o in options:
        if o.flag is None:
            continue
        text = f"{o.help} (default {_shown(o)})"
        if o.kind == "bool":
            parser.add_argument(o.flag, dest=o.field, action="store_true", help=o.help)
        elif o.kind == "choice":
            parser.add_argument(o.flag, dest=o.field, choices=o.choices, default=o.default, help=text)
        elif o.kind in ("pair", "interval", "triple"):
            parser.add_argument(o.flag, dest=o.field, type=float, nargs=len(o.widgets), metavar=o.metavar,
                                default=o.default, help=text)
        else:
            parser.add_argument(o.flag, dest=o.field, type=int if o.kind == "int" else float, default=o.default,
                                metavar=o.metavar, help=text)


def _shown(o: Option) -> str:
    value = o.default
    if value is None:
        return "off"
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def settings_from_flags(args: argparse.Namespace, **extra) -> Settings:
    """Settings from the flags ``add_flags`` made, plus ``extra`` fields (e.g. the size)."""
    return Settings(**_values(OPTIONS, args), **extra)


def _values(options: tuple[Option, ...], args: argparse.Namespace) -> dict:
    return {o.field: tuple(v) if isinstance(v := getattr(args, o.field), list) else v for o in options if o.flag}


def edit_from_flags(args: argparse.Namespace) -> MotionEdit:
    """The MotionEdit of the flags ``add_flags(parser, EDIT_OPTIONS)`` made."""
    return MotionEdit(**_values(EDIT_OPTIONS, args))


BY_FIELD = {o.field: o for o in (*OPTIONS, *EDIT_OPTIONS)}


def flags_of(field_names) -> str:
    """The flags that set these fields, for messages ('--window/--overlap')."""
    extra = {"height": "--size", "width": "--size"}
    return "/".join(dict.fromkeys((BY_FIELD[f].flag if f in BY_FIELD and BY_FIELD[f].flag else extra.get(f, f))
                                  for f in field_names))


# ------------------------------------------------------------------------------------------ the node

def _widget(o: Option, name: str, default) -> tuple:
    if o.kind == "choice":
        return (list(o.choices), {"default": default, "tooltip": o.help})
    if o.kind == "bool":
        return ("BOOLEAN", {"default": default, "tooltip": o.help})
    spec = {"default": default, "min": o.minimum, "max": o.maximum, "tooltip": o.help}
    if o.kind == "int":
        return ("INT", {**spec, **({"control_after_generate": True} if o.field == "seed" else {})})
    return ("FLOAT", {**spec, "step": o.step, **({"round": 0.01} if o.kind == "pair" else {})})


def widget_inputs(optional: bool = False, options: tuple[Option, ...] = OPTIONS) -> dict[str, tuple]:
    """A node's widgets (INPUT_TYPES entries) of the required or the optional options, in order."""
    out = {}
    for o in options:
        if not o.widgets or o.widget_optional != optional:
            continue
        if o.kind in ("pair", "triple"):
            for name, value in zip(o.widgets, o.default):
                out[name] = _widget(o, name, value)
        elif o.kind == "interval":
            low, high = o.default or (0.0, 0.0)
            for name, value in zip(o.widgets, (low, high)):
                out[name] = _widget(o, name, value)
        else:
            out[o.widgets[0]] = _widget(o, o.widgets[0], o.default)
    return out


def _from_widgets(options: tuple[Option, ...], values: dict) -> dict:
    """Fields from a node's widget values; a missing optional widget leaves its field at the default."""
    out = {}
    for o in options:
        if not o.widgets:
            continue
        got = [values.get(name) for name in o.widgets]
        if o.kind in ("pair", "triple"):
            out[o.field] = tuple(float(v if v is not None else d) for v, d in zip(got, o.default))
        elif o.kind == "interval":
            low, high = (float(v or 0.0) for v in got)
            out[o.field] = (low, high) if high else None
        elif got[0] is not None:
            out[o.field] = {"int": int, "float": float, "bool": bool}.get(o.kind, str)(got[0])
    return out


def settings_from_widgets(values: dict, **extra) -> Settings:
    """Settings from the sampler node's widget values (missing optional ones take their defaults)."""
    return Settings(**_from_widgets(OPTIONS, values), **extra)


def edit_from_widgets(values: dict) -> MotionEdit:
    """The MotionEdit of the Motion Edit node's widget values."""
    return MotionEdit(**_from_widgets(EDIT_OPTIONS, values))


def widget_fields(options: tuple[Option, ...] = OPTIONS) -> dict[str, str]:
    """Node widget name -> the field it sets (a pair's or triple's widgets all name its field)."""
    return {name: o.field for o in options for name in o.widgets}


# ------------------------------------------------------------------------------------------ the docs

def settings_table() -> str:
    """The settings as a Markdown table: flag, node widget(s), default, range or choices, what it does."""
    rows = ["| Setting | Flag | Node widget | Default | Range | What it does |", "|---|---|---|---|---|---|"]
    for o in (*OPTIONS, *EDIT_OPTIONS):
        span = (", ".join(o.choices) if o.kind == "choice" else "on/off" if o.kind == "bool"
                else f"{o.minimum:g} to {o.maximum:g}")
        rows.append(f"| {o.field} | {f'`{o.flag}`' if o.flag else ''} | {', '.join(o.widgets)} | {_shown(o)} | "
                    f"{span} | {o.help} |")
    return "\n".join(rows)


__all__ = ["BY_FIELD", "EDIT_OPTIONS", "OPTIONS", "Option", "add_flags", "edit_from_flags", "edit_from_widgets",
           "flags_of", "settings_from_flags", "settings_from_widgets", "settings_table", "widget_fields",
           "widget_inputs"]
