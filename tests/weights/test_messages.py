"""Messages lead with the action: the sampler's impossible widgets (one message naming both widgets), the
queue-time handler that refuses a whole prompt, and the wrong-preset message (loader and CLI), short."""

from __future__ import annotations

import pytest

from hp_core.errors import HPError
from hp_core.weights import get_entry
from hp_core.weights.messages import (LOADER_PRESET_ACTION, other_preset, problems_message,
                                      wrong_preset_message)
from nodes import validate
from nodes.sampler import HunyuanPortraitSampler as S


def test_overlap_not_below_window_is_one_message_that_says_what_to_set():
    msg = S.VALIDATE_INPUTS(steps=2, denoise=1.0, seed=1, context_window=8, context_overlap=8, shift=3, padding=2)
    assert isinstance(msg, str)
    assert msg.startswith("Set context_overlap below context_window")
    assert msg.count("must be smaller") == 1 and ";" not in msg  # not repeated
    assert "context_window" in msg and "context_overlap" in msg and "(8)" in msg


def test_inside_comfyui_the_check_raises_so_comfyui_reports_it_once(monkeypatch):
    monkeypatch.setattr(validate, "RAISE_IN_COMFYUI", True)
    with pytest.raises(HPError, match="^Set context_overlap below context_window"):
        S.VALIDATE_INPUTS(context_window=4, context_overlap=6)
    assert S.VALIDATE_INPUTS(context_window=8, context_overlap=2) is True


PROMPT = {  # loader -> sampler -> decode -> save; the loader also feeds a preview that needs no sampler
    "1": {"class_type": "Loader", "inputs": {}},
    "2": {"class_type": "HunyuanPortraitSampler", "inputs": {"models": ["1", 0], "context_window": 8,
                                                              "context_overlap": 8, "steps": 2}},
    "3": {"class_type": "Decode", "inputs": {"latent": ["2", 0]}},
    "4": {"class_type": "SaveVideo", "inputs": {"images": ["3", 0]}},
    "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


def _is_output(node_id):
    return PROMPT[node_id]["class_type"] in ("SaveVideo", "PreviewImage")


def test_the_prompt_handler_queues_only_the_outputs_of_a_failing_sampler():
    import copy

    data = validate.narrow_to_failing({"prompt": copy.deepcopy(PROMPT)}, _is_output)
    assert data["partial_execution_targets"] == ["4"]  # ComfyUI then refuses the prompt as a whole
    ok = copy.deepcopy(PROMPT)
    ok["2"]["inputs"]["context_overlap"] = 2
    assert "partial_execution_targets" not in validate.narrow_to_failing({"prompt": ok}, _is_output)
    # a run of chosen outputs that do not need the failing sampler is left alone
    data = validate.narrow_to_failing({"prompt": copy.deepcopy(PROMPT), "partial_execution_targets": ["5"]},
                                      _is_output)
    assert data["partial_execution_targets"] == ["5"]
    # a linked window is unknown at queue time: no false alarm
    linked = copy.deepcopy(PROMPT)
    linked["2"]["inputs"]["context_window"] = ["1", 1]
    assert "partial_execution_targets" not in validate.narrow_to_failing({"prompt": linked}, _is_output)


def _tiny_bad(tmp_path):
    names = ("unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider")
    return [(get_entry(n), tmp_path / "hyportrait" / f"{n}.pth",
             f"it is not the {n} checkpoint of the 'official' preset: 3 have other shapes (e.g. x: (8,) instead "
             f"of (64,)); it is the {n} checkpoint of the 'tiny' preset") for n in names]


def test_wrong_preset_message_leads_with_the_action_and_is_short(tmp_path):
    bad = _tiny_bad(tmp_path)
    assert other_preset(bad) == "tiny"
    loader = wrong_preset_message("tiny", bad, LOADER_PRESET_ACTION)
    lines = loader.splitlines()
    assert lines[0].startswith("Set the loader's preset to 'tiny':") and len(lines) <= 6
    assert "unet.pth" in lines[1] and str(tmp_path / "hyportrait") in lines[1]
    cli = problems_message([], bad, [tmp_path])
    assert cli.splitlines()[0].startswith("Run with --preset tiny ") and len(cli.splitlines()) <= 6
    # not all of one other preset: the full listing stands
    mixed = bad[:1] + [(get_entry("dino"), tmp_path / "dino.pth", "it is damaged")]
    assert other_preset(mixed) is None
    assert problems_message([], mixed, [tmp_path]).startswith("2 weight files cannot be used")


def test_loader_wrong_preset_error_is_a_few_lines_action_first(models_dir, monkeypatch):
    from hp_core.models import COMPONENTS
    from nodes import core, loader

    monkeypatch.setenv("HP_MODELS_DIR", str(models_dir))
    values = {n: core.manifest_path(n) for n in COMPONENTS}
    values.update(vae=core.manifest_path("svd_vae"), preset="official", precision="auto", keep_on_gpu="all")
    with pytest.raises(HPError) as err:
        loader.HunyuanPortraitModelLoader().load(**values)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("Set the loader's preset to 'tiny'"), lines
    assert len(lines) <= 6 and "unet.pth" in str(err.value), lines


def test_cli_wrong_preset_error_names_the_flag(models_dir):
    from hp_core import weights as W

    with pytest.raises(HPError) as err:
        W.preflight(["unet", "dino"], [models_dir], preset="official")
    lines = str(err.value).splitlines()
    assert "--preset tiny" in lines[0] and lines[0].index("--preset tiny") < 20, lines  # the action leads
    assert len(lines) <= 6, lines


def test_hperror_action_comes_first():
    err = HPError("The performance was made with the tiny models.", action="Set the loader's preset to tiny.")
    assert str(err).splitlines()[0] == "Set the loader's preset to tiny." and err.action and err.detail
    assert str(HPError("a", hint="b")) == "a b"
