"""Queue-time checks of the sampler's widgets (ComfyUI's VALIDATE_INPUTS convention).

ComfyUI calls ``VALIDATE_INPUTS`` with the inputs its signature names, before anything runs, and shows a
returned string as the node's error. For the inputs it names, ComfyUI skips its own min/max checks, so they
are checked here against the node's INPUT_TYPES; a linked input arrives as None (unknown yet) and is given
a value that cannot clash. The rules themselves are hp_core's Settings.problems.
"""

from __future__ import annotations

from hp_core.pipeline import Settings

# sampler widget -> Settings field
WIDGET_FIELDS = {"steps": "steps", "denoise": "denoise", "seed": "seed", "context_window": "window",
                 "context_overlap": "overlap", "shift": "shift", "padding": "pad"}


def widget_problems(spec: dict, values: dict) -> str | bool:
    """True, or one sentence naming every impossible widget value or combination among ``values``."""
    known = {k: v for k, v in values.items() if v is not None}
    errors = []
    for name, value in known.items():
        opts = spec[name][1] if len(spec.get(name, ())) > 1 else {}
        if "min" in opts and value < opts["min"]:
            errors.append(f"{name} {value} is below its minimum {opts['min']}")
        elif "max" in opts and value > opts["max"]:
            errors.append(f"{name} {value} is above its maximum {opts['max']}")
    fields = {WIDGET_FIELDS[k]: v for k, v in known.items()}
    # unknown (linked) inputs take values that cannot clash with the known ones
    fields.setdefault("overlap", 0)
    fields.setdefault("window", max(Settings.window, int(fields["overlap"]) + 1))
    fields.setdefault("steps", Settings.steps if "denoise" not in fields else 200)
    found = Settings(**fields).problems()
    names = {v: k for k, v in WIDGET_FIELDS.items()}
    for involved, err in found:
        if set(involved) & {f for f in fields if names.get(f) in known}:
            errors.append(str(err))
    return True if not errors else "; ".join(dict.fromkeys(errors))
