"""Every sampling setting an artist can set, declared once: the Settings field it sets, its help text, its
command-line flag and its node widget(s), its range or choices. Defaults are Settings' own. The CLI's flags
(``add_flags`` / ``settings_from_flags``), the sampler node's widgets (``widget_inputs`` /
``settings_from_widgets``), the queue-time check and the docs' settings table are all made from ``OPTIONS``,
so adding a setting is one entry here plus the code that uses it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .models.sdpa import SDPA_BACKENDS
from .pipeline import SEED_MAX, Settings
from .sampling.denoiser import BRANCH_MODES
from .sampling.samplers import SAMPLERS
from .sampling.schedules import SCHEDULES

RELEASE = Settings()


@dataclass(frozen=True)
class Option:
    """One setting. ``kind``: int, float, choice, bool, pair (a (first step, last step) pair of floats: two
    widgets, one flag of two numbers) or interval (an optional (low, high) pair; off when high is 0)."""

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

    @property
    def default(self):
        return getattr(RELEASE, self.field)


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
BY_FIELD = {o.field: o for o in OPTIONS}


# ------------------------------------------------------------------------------------------ the CLI

def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option that has one, with its help, range and the release's default."""
    for o in OPTIONS:
        if o.flag is None:
            continue
        text = f"{o.help} (default {_shown(o)})"
        if o.kind == "bool":
            parser.add_argument(o.flag, dest=o.field, action="store_true", help=o.help)
        elif o.kind == "choice":
            parser.add_argument(o.flag, dest=o.field, choices=o.choices, default=o.default, help=text)
        elif o.kind in ("pair", "interval"):
            parser.add_argument(o.flag, dest=o.field, type=float, nargs=2, metavar=o.metavar,
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
    values = {}
    for o in OPTIONS:
        if o.flag is not None:
            value = getattr(args, o.field)
            values[o.field] = tuple(value) if isinstance(value, list) else value
    return Settings(**values, **extra)


def flags_of(field_names) -> str:
    """The flags that set these Settings fields, for messages ('--window/--overlap')."""
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


def widget_inputs(optional: bool = False) -> dict[str, tuple]:
    """The sampler node's widgets (INPUT_TYPES entries) of the required or the optional options, in order."""
    out = {}
    for o in OPTIONS:
        if not o.widgets or o.widget_optional != optional:
            continue
        if o.kind == "pair":
            for name, value in zip(o.widgets, o.default):
                out[name] = _widget(o, name, value)
        elif o.kind == "interval":
            low, high = o.default or (0.0, 0.0)
            for name, value in zip(o.widgets, (low, high)):
                out[name] = _widget(o, name, value)
        else:
            out[o.widgets[0]] = _widget(o, o.widgets[0], o.default)
    return out


def settings_from_widgets(values: dict, **extra) -> Settings:
    """Settings from the sampler node's widget values (missing optional ones take their defaults)."""
    out = {}
    for o in OPTIONS:
        if not o.widgets:
            continue
        got = [values.get(name) for name in o.widgets]
        if o.kind == "pair":
            out[o.field] = tuple(float(v if v is not None else d) for v, d in zip(got, o.default))
        elif o.kind == "interval":
            low, high = (float(v or 0.0) for v in got)
            out[o.field] = (low, high) if high else None
        elif got[0] is None:
            continue
        else:
            out[o.field] = {"int": int, "float": float, "bool": bool}.get(o.kind, str)(got[0])
    return Settings(**out, **extra)


def widget_fields() -> dict[str, str]:
    """Node widget name -> the Settings field it sets (a pair's two widgets both name the pair's field)."""
    return {name: o.field for o in OPTIONS for name in o.widgets}


# ------------------------------------------------------------------------------------------ the docs

def settings_table() -> str:
    """The settings as a Markdown table: flag, node widget(s), default, range or choices, what it does."""
    rows = ["| Setting | Flag | Node widget | Default | Range | What it does |", "|---|---|---|---|---|---|"]
    for o in OPTIONS:
        span = (", ".join(o.choices) if o.kind == "choice" else "on/off" if o.kind == "bool"
                else f"{o.minimum:g} to {o.maximum:g}")
        rows.append(f"| {o.field} | {f'`{o.flag}`' if o.flag else ''} | {', '.join(o.widgets)} | {_shown(o)} | "
                    f"{span} | {o.help} |")
    return "\n".join(rows)


__all__ = ["BY_FIELD", "OPTIONS", "Option", "add_flags", "flags_of", "settings_from_flags", "settings_from_widgets",
           "settings_table", "widget_fields", "widget_inputs"]
