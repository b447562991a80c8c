"""Queue-time checks of the sampler's widgets (ComfyUI's VALIDATE_INPUTS convention).

ComfyUI calls ``VALIDATE_INPUTS`` with the inputs its signature names, before anything runs. For the inputs it
names, ComfyUI skips its own min/max checks, so they are checked here against the node's INPUT_TYPES; a linked
input arrives as None (unknown yet) and is given a value that cannot clash. The rules themselves are hp_core's
Settings.problems; the messages here name the widgets and lead with what to set.

What the artist sees depends on how ComfyUI (0.3.64, frontend 1.27.x) reports a failed check:

* A returned string is copied once per input the signature names (seven identical lines), and a prompt
  whose other outputs do not depend on the failing node is still queued: ComfyUI runs those outputs (the
  model loader and appearance extractor included), history says success, and the frontend only outlines
  the node in red, without a dialog.
* An exception raised by the check is reported once, on the node, and a prompt none of whose outputs
  validates is refused with HTTP 400, which the frontend shows in its error dialog.

So inside ComfyUI (``register`` ran) the check raises, and an on-prompt handler narrows the prompt's
outputs to those that depend on a sampler with impossible widgets: the whole prompt is refused before
anything runs, with the message once. Called directly (tests, scripts), VALIDATE_INPUTS returns the
message as ComfyUI's convention says.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

from hp_core.errors import HPError
from hp_core.options import widget_fields
from hp_core.pipeline import Settings

from . import bridge

# The sampler widgets checked when a prompt is queued (the numbers whose combinations can be impossible),
# each with the Settings field it sets (hp_core.options declares the mapping).
QUEUE_CHECKED = ("steps", "denoise", "seed", "context_window", "context_overlap", "shift", "padding")
WIDGET_FIELDS = {name: widget_fields()[name] for name in QUEUE_CHECKED}
RELEASE = Settings()

# True once the on-prompt handler is registered, i.e. inside a running ComfyUI: checks raise (see above).
RAISE_IN_COMFYUI = False
# node class name -> its widget check (values -> True or a message), for the on-prompt handler
QUEUE_CHECKS: dict[str, Callable[[dict], "str | bool"]] = {}


def _window_message(values: dict) -> str | None:
    """The action-first sentence for overlap >= window (the one combination artists meet), or None."""
    window, overlap = values.get("context_window"), values.get("context_overlap")
    if window is None or overlap is None or not 1 <= window <= overlap:
        return None
    return (f"Set context_overlap below context_window: the overlap ({overlap}) must be smaller than the "
            f"window ({window}) (the release: context_window {RELEASE.window}, context_overlap {RELEASE.overlap}).")


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
    window_rule = _window_message(known)
    for involved, err in found:
        if set(involved) & {f for f in fields if names.get(f) in known}:
            errors.append(window_rule if window_rule and "overlap" in involved else str(err))
    return True if not errors else "; ".join(dict.fromkeys(errors))


def report(problems: str | bool) -> str | bool:
    """What VALIDATE_INPUTS gives ComfyUI: True, or inside ComfyUI an HPError (reported once, see above);
    elsewhere the message itself."""
    if problems is not True and RAISE_IN_COMFYUI:
        raise HPError(str(problems))
    return problems


# ------------------------------------------------------------------------------------ on-prompt handler

def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def failing_nodes(prompt: Mapping[str, dict]) -> dict[str, str]:
    """{node id: message} of the nodes whose widget values (links unknown) already fail their queue check."""
    out = {}
    for node_id, node in prompt.items():
        check = QUEUE_CHECKS.get(node.get("class_type")) if isinstance(node, dict) else None
        if check is None:
            continue
        values = {k: v for k, v in (node.get("inputs") or {}).items() if not _is_link(v)}
        try:
            result = check(values)
        except Exception as err:  # noqa: BLE001 - malformed values: ComfyUI's own validation reports them
            logging.getLogger("HunyuanPortrait").debug("queue check of node %s: %s", node_id, err)
            continue
        if result is not True:
            out[node_id] = str(result)
    return out


def dependent_outputs(prompt: Mapping[str, dict], nodes: set[str], is_output: Callable[[str], bool]) -> list[str]:
    """The output nodes of ``prompt`` that consume (directly or not) any of ``nodes``."""
    consumers: dict[str, set[str]] = {}
    for node_id, node in prompt.items():
        for value in ((node.get("inputs") or {}).values() if isinstance(node, dict) else ()):
            if _is_link(value):
                consumers.setdefault(str(value[0]), set()).add(node_id)
    seen, todo = set(nodes), list(nodes)
    while todo:
        for nxt in consumers.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return sorted(n for n in seen if is_output(n))


def narrow_to_failing(json_data: dict, is_output: Callable[[str], bool]) -> dict:
    """ComfyUI on-prompt handler body: when a node's widgets are impossible, queue only the outputs that
    depend on it, so ComfyUI refuses the prompt as a whole (its error dialog, nothing run) rather than
    running the other outputs and dropping these silently. A run of chosen outputs that do not depend on
    the failing node is left alone."""
    prompt = json_data.get("prompt")
    if not isinstance(prompt, dict):
        return json_data
    failing = failing_nodes(prompt)
    if not failing:
        return json_data
    outputs = dependent_outputs(prompt, set(failing), is_output)
    chosen = json_data.get("partial_execution_targets")
    if chosen is not None:
        outputs = [o for o in outputs if o in chosen]
    if outputs:
        json_data["partial_execution_targets"] = outputs
    return json_data


def register(node_class_name: str, check: Callable[[dict], "str | bool"]) -> bool:
    """Inside a running ComfyUI: check ``node_class_name``'s widgets when a prompt is posted (see above) and
    let VALIDATE_INPUTS raise. True when registered; elsewhere nothing happens (False)."""
    global RAISE_IN_COMFYUI
    QUEUE_CHECKS[node_class_name] = check
    if RAISE_IN_COMFYUI:
        return True
    if not bridge.COMFY:
        return False

    def handler(data: dict) -> dict:
        prompt = data.get("prompt") or {}
        return narrow_to_failing(data, lambda node_id: bridge.is_output_node(prompt, node_id))

    RAISE_IN_COMFYUI = bridge.on_prompt(handler)
    return RAISE_IN_COMFYUI
