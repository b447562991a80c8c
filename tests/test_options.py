"""Every sampling setting is declared once (hp_core.options): the CLI's flags, the sampler node's widgets,
the queue-time check and the docs' table are made from that declaration and agree with Settings' defaults."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from hp_core import cli
from hp_core.options import (OPTIONS, RELEASE, settings_from_flags, settings_from_widgets, settings_table,
                             widget_fields, widget_inputs)
from hp_core.pipeline import SEED_MAX, Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def test_every_option_sets_a_settings_field_once():
    names = [o.field for o in OPTIONS]
    assert len(names) == len(set(names)) and set(names) <= {f.name for f in fields(Settings)}
    flags = [o.flag for o in OPTIONS if o.flag]
    widgets = [w for o in OPTIONS for w in o.widgets]
    assert len(flags) == len(set(flags)) and len(widgets) == len(set(widgets))


def test_defaults_everywhere_are_the_release_settings():
    args = cli.build_parser().parse_args(["animate", "--image", "i.png", "--video", "v.mp4", "--out", "o.mp4"])
    assert settings_from_flags(args, height=args.size, width=args.size) == RELEASE
    widgets = {**widget_inputs(), **widget_inputs(optional=True)}
    defaults = {name: spec[1]["default"] for name, spec in widgets.items()}
    assert settings_from_widgets(defaults) == RELEASE
    assert settings_from_widgets({}) == RELEASE  # optional widgets left out take their defaults


def test_one_seed_limit_for_every_door():
    assert widget_inputs()["seed"][1]["max"] == SEED_MAX == 2**64 - 1
    assert Settings(seed=SEED_MAX).problems() == [] and Settings(seed=SEED_MAX + 1).problems()
    args = cli.build_parser().parse_args(["animate", "--image", "i", "--video", "v", "--out", "o.mp4", "--seed",
                                          str(SEED_MAX)])
    assert settings_from_flags(args, height=64, width=64).seed == SEED_MAX


def test_a_flag_and_its_widget_set_the_same_field():
    parser = cli.build_parser()
    args = parser.parse_args(["animate", "--image", "i", "--video", "v", "--out", "o.mp4", "--window", "16",
                              "--overlap", "4", "--appearance-cfg", "1.5", "3", "--guidance-interval", "0.3", "15",
                              "--padding", "5", "--motion-scale", "0.5", "--denoise", "0.8"])
    from_flags = settings_from_flags(args, height=512, width=512)
    from_widgets = settings_from_widgets(dict(context_window=16, context_overlap=4, appearance_cfg_min=1.5,
                                              appearance_cfg_max=3.0, guidance_sigma_low=0.3,
                                              guidance_sigma_high=15.0, padding=5, motion_scale=0.5, denoise=0.8))
    assert from_flags == from_widgets
    assert from_flags.guidance_interval == (0.3, 15.0) and from_flags.pad == 5
    assert widget_fields()["context_overlap"] == "overlap"


def test_motion_edit_flags_and_widgets_set_the_same_edit_and_default_to_no_edit():
    from hp_core.motion_edit import MotionEdit
    from hp_core.options import EDIT_OPTIONS, edit_from_flags, edit_from_widgets

    parser = cli.build_parser()
    base = ["animate", "--image", "i", "--video", "v", "--out", "o.mp4"]
    assert edit_from_flags(parser.parse_args(base)) == MotionEdit()
    widgets = widget_inputs(options=EDIT_OPTIONS)
    assert edit_from_widgets({n: spec[1]["default"] for n, spec in widgets.items()}) == MotionEdit()
    flags = edit_from_flags(parser.parse_args(base + ["--pose-mode", "relative", "--pose-scale", "1", "0.5", "0",
                                                      "--start", "3", "--loop", "pingpong", "--length", "40"]))
    nodes = edit_from_widgets(dict(pose_mode="relative", angle1_scale=1.0, angle2_scale=0.5, angle3_scale=0.0,
                                   start_frame=3, loop="pingpong", length=40))
    assert flags == nodes and flags.pose_scale == (1.0, 0.5, 0.0) and flags.start == 3


def test_a_settings_problem_names_the_users_own_flag(capsys):
    code = cli.main(["animate", "--image", "i.png", "--video", "v.mp4", "--out", "o.mp4", "--window", "4",
                     "--overlap", "4"])
    assert code == 1 and capsys.readouterr().err.startswith("error: --window/--overlap/--shift:")


def test_the_docs_settings_table_is_the_declaration():
    text = DOC.read_text(encoding="utf-8")
    assert text.split(BEGIN, 1)[1].split(END, 1)[0].strip() == settings_table(), \
        "run: PYTHONPATH=. python tests/test_options.py --write"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text:
        text += f"\n## Settings\n\nEvery sampling setting, its flag and node widget (made from `hp_core/options.py`):\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + BEGIN + "\n" + settings_table() + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
