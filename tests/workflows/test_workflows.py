"""The example workflows: both formats well formed against the node declarations (the pack's classes, and
ComfyUI core nodes as a real ComfyUI's /object_info lists them), the UI and API files describe the same
graph, the generator reproduces them, and every API workflow runs end to end on tiny weights in a small
executor that calls the node classes in graph order (core video/image nodes stubbed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import nodes
from hp_core.sampling import get_sigmas
from nodes import core
from nodes_env import FakeDWPose, FakeKSampler, driving_video, source_image

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "workflows"
NAMES = sorted(p.stem for p in FOLDER.glob("*.json"))
OURS = nodes.NODE_CLASS_MAPPINGS
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}

# ComfyUI core nodes used by the workflows, as /object_info of ComfyUI (Comfy-Org/ComfyUI, Oct 2025) lists
# them: inputs in order (name, type, section, constraints) and output types. None = a file list of the
# user's input folder (any file name is valid here).
CORE = {
    "LoadImage": {"inputs": [("image", "COMBO", "required", None)], "upload": True, "outputs": ["IMAGE", "MASK"]},
    "LoadVideo": {"inputs": [("file", "COMBO", "required", None)], "upload": True, "outputs": ["VIDEO"]},
    "GetVideoComponents": {"inputs": [("video", "VIDEO", "required", None)], "outputs": ["IMAGE", "AUDIO", "FLOAT"]},
    "CreateVideo": {"inputs": [("images", "IMAGE", "required", None), ("fps", "FLOAT", "required", (1.0, 120.0)),
                               ("audio", "AUDIO", "optional", None)], "outputs": ["VIDEO"]},
    "SaveVideo": {"inputs": [("video", "VIDEO", "required", None), ("filename_prefix", "STRING", "required", None),
                             ("format", "COMBO", "required", ["auto", "mp4"]),
                             ("codec", "COMBO", "required", ["auto", "h264"])], "outputs": []},
    "PreviewImage": {"inputs": [("images", "IMAGE", "required", None)], "outputs": []},
    "KSamplerSelect": {"inputs": [("sampler_name", "COMBO", "required",
                                   ["euler", "euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_sde",
                                    "dpmpp_3m_sde", "lcm", "ddim", "uni_pc", "uni_pc_bh2"])], "outputs": ["SAMPLER"]},
    "AlignYourStepsScheduler": {"inputs": [("model_type", "COMBO", "required", ["SD1", "SDXL", "SVD"]),
                                           ("steps", "INT", "required", (1, 10000)),
                                           ("denoise", "FLOAT", "required", (0.0, 1.0))], "outputs": ["SIGMAS"]},
}
UI_ONLY = {"Note": [("text", "STRING")]}
# Dropdowns that list the user's files (any name is valid here): the saved performances.
FILE_LISTS = {("HunyuanPortraitLoadPerformance", "performance_file")}
# Where a graph ends: nodes that save or show what reaches them (they feed nothing).
SINKS = {"SaveVideo", "PreviewImage"} | {k for k, cls in OURS.items() if getattr(cls, "OUTPUT_NODE", False)}
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def _declared(class_type: str) -> list[tuple[str, str, str, object]]:
    """(name, type, section, constraint) for every input, in order; constraint: options list or (min, max)."""
    if class_type in CORE:
        return CORE[class_type]["inputs"]
    out = []
    for section in ("required", "optional"):
        for name, (kind, opts) in OURS[class_type].INPUT_TYPES().get(section, {}).items():
            if isinstance(kind, list):
                out.append((name, "COMBO", section, None if (class_type, name) in FILE_LISTS else kind))
            elif kind in ("INT", "FLOAT"):
                out.append((name, kind, section, (opts["min"], opts["max"])))
            else:
                out.append((name, kind, section, None))
    return out


def _outputs(class_type: str) -> list[str]:
    return CORE[class_type]["outputs"] if class_type in CORE else list(OURS[class_type].RETURN_TYPES)


def _ui_widgets(class_type: str) -> list[tuple[str, str, object]]:
    """The frontend's widget list: widget inputs in order, control_after_generate after a seed, upload last."""
    if class_type in UI_ONLY:
        return [(n, k, None) for n, k in UI_ONLY[class_type]]
    widgets = []
    for name, kind, _, constraint in _declared(class_type):
        if kind in WIDGET_KINDS:
            widgets.append((name, kind, constraint))
            if class_type in OURS and OURS[class_type].INPUT_TYPES()["required"].get(name, (0, {}))[1].get(
                    "control_after_generate"):
                widgets.append(("control_after_generate", "CONTROL", CONTROL_VALUES))
    if CORE.get(class_type, {}).get("upload"):
        widgets.append(("upload", "UPLOAD", None))
    return widgets


def _check_value(where: str, kind: str, constraint, value) -> None:
    if kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif kind in ("STRING", "UPLOAD"):
        assert isinstance(value, str), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    if kind in ("INT", "FLOAT") and constraint:
        assert constraint[0] <= value <= constraint[1], f"{where}: {value} outside {constraint}"
    if kind in ("COMBO", "CONTROL") and constraint is not None:
        assert value in constraint, f"{where}: {value!r} not among the options"
    if kind == "UPLOAD":
        assert value == "image"


def _load(name: str) -> tuple[dict, dict]:
    ui = json.loads((FOLDER / f"{name}.json").read_text(encoding="utf-8"))
    api = json.loads((FOLDER / "api" / f"{name}.json").read_text(encoding="utf-8"))
    return ui, api


def test_the_promised_workflows_exist_in_both_formats():
    for wanted in ("basic", "long_video", "dwpose", "fast", "comfy_sampler", "pose_edit", "performance"):
        assert f"hunyuan_portrait_{wanted}" in NAMES
    assert sorted(p.stem for p in (FOLDER / "api").glob("*.json")) == NAMES


# --------------------------------------------------------------------------------------- UI format

@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_well_formed(name):
    ui, _ = _load(name)
    assert ui["version"] == 0.4
    by_id = {n["id"]: n for n in ui["nodes"]}
    assert len(by_id) == len(ui["nodes"]) and ui["last_node_id"] >= max(by_id)
    links = {lk[0]: lk for lk in ui["links"]}
    assert len(links) == len(ui["links"]) and (not links or ui["last_link_id"] >= max(links))
    for node in ui["nodes"]:
        kind = node["type"]
        where = f"{name} node {node['id']} ({kind})"
        assert kind in OURS or kind in CORE or kind in UI_ONLY, f"{where}: unknown node type"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2 and node["mode"] == 0
        declared = {n: (k, s, c) for n, k, s, c in _declared(kind)} if kind not in UI_ONLY else {}
        sockets = [n for n, (k, _, _) in declared.items() if k not in WIDGET_KINDS]
        listed = [i["name"] for i in node["inputs"]]
        assert listed[:len(sockets)] == sockets, f"{where}: socket inputs {listed} vs {sockets}"
        for slot, inp in enumerate(node["inputs"]):
            assert inp["name"] in declared, f"{where}: no input {inp['name']}"
            dkind, section, _ = declared[inp["name"]]
            assert inp["type"] == dkind
            assert ("widget" in inp) == (dkind in WIDGET_KINDS)
            if section == "required" and dkind not in WIDGET_KINDS:
                assert inp["link"] is not None, f"{where}: required input {inp['name']} is not connected"
            if inp["link"] is not None:
                lk = links[inp["link"]]
                assert (lk[3], lk[4]) == (node["id"], slot), f"{where}: link {lk} does not end here"
                assert lk[5] == dkind, f"{where}: {lk[5]} link into {dkind} input {inp['name']}"
        assert [o["type"] for o in node["outputs"]] == ([] if kind in UI_ONLY else _outputs(kind))
        for slot, out in enumerate(node["outputs"]):
            for link_id in out["links"] or []:
                lk = links[link_id]
                assert (lk[1], lk[2], lk[5]) == (node["id"], slot, out["type"]), f"{where}: link {lk}"
        widgets = _ui_widgets(kind)
        assert len(node["widgets_values"]) == len(widgets), f"{where}: widgets_values {node['widgets_values']}"
        for (wname, wkind, constraint), value in zip(widgets, node["widgets_values"]):
            _check_value(f"{where}.{wname}", wkind, constraint, value)
    for lk in ui["links"]:  # every link is listed by both of its ends
        assert lk[0] in (by_id[lk[1]]["outputs"][lk[2]]["links"] or [])
        assert by_id[lk[3]]["inputs"][lk[4]]["link"] == lk[0]


# -------------------------------------------------------------------------------------- API format

@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_is_runnable_by_post_prompt(name):
    _, api = _load(name)
    for nid, node in api.items():
        kind = node["class_type"]
        where = f"{name} node {nid} ({kind})"
        assert kind in OURS or kind in CORE, f"{where}: unknown or frontend-only node type"
        declared = {n: (k, s, c) for n, k, s, c in _declared(kind)}
        assert set(node["inputs"]) <= set(declared), f"{where}: unknown inputs"
        for iname, (dkind, section, constraint) in declared.items():
            if section == "required":
                assert iname in node["inputs"], f"{where}: required input {iname} missing"
            if iname not in node["inputs"]:
                continue
            value = node["inputs"][iname]
            if isinstance(value, list):
                src, slot = value
                assert src in api, f"{where}: {iname} links to missing node {src}"
                assert _outputs(api[src]["class_type"])[slot] == dkind, f"{where}: {iname} type"
            else:
                assert dkind in WIDGET_KINDS, f"{where}: socket {iname} needs a link"
                _check_value(f"{where}.{iname}", dkind, constraint, value)


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_files_describe_the_same_graph(name):
    ui, api = _load(name)
    ui_nodes = {str(n["id"]): n for n in ui["nodes"] if n["type"] not in UI_ONLY}
    assert set(ui_nodes) == set(api)
    ui_links = {(str(lk[3]), ui_nodes[str(lk[3])]["inputs"][lk[4]]["name"]): [str(lk[1]), lk[2]] for lk in ui["links"]}
    for nid, node in api.items():
        assert node["class_type"] == ui_nodes[nid]["type"]
        widgets = [w for w in _ui_widgets(node["class_type"]) if w[1] not in ("CONTROL", "UPLOAD")]
        values = [v for w, v in zip(_ui_widgets(node["class_type"]), ui_nodes[nid]["widgets_values"])
                  if w[1] not in ("CONTROL", "UPLOAD")]
        for (wname, _, _), value in zip(widgets, values):
            if (nid, wname) not in ui_links:
                assert node["inputs"][wname] == value, f"{name} node {nid}.{wname}"
        for iname, value in node["inputs"].items():
            if isinstance(value, list):
                assert ui_links[(nid, iname)] == value


@pytest.mark.parametrize("name", NAMES)
def test_every_ui_link_is_in_the_api_twin(name):
    ui, api = _load(name)
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link_id, src, slot, dst, dst_slot, _ in ui["links"]:
        input_name = by_id[dst]["inputs"][dst_slot]["name"]
        assert api[str(dst)]["inputs"].get(input_name) == [str(src), slot], \
            f"{name}: UI link {link_id} into {by_id[dst]['type']}.{input_name} is not in the API file"
    assert len(ui["links"]) == sum(isinstance(v, list) for n in api.values() for v in n["inputs"].values())


@pytest.mark.parametrize("name", NAMES)
def test_every_node_but_the_outputs_feeds_something(name):
    """No dead ends: every node with outputs (loaders included) is read by another node, in both formats."""
    ui, api = _load(name)
    feeding = {lk[1] for lk in ui["links"]}
    for node in ui["nodes"]:
        if node["type"] in SINKS or node["type"] in UI_ONLY:
            continue
        assert node["id"] in feeding, f"{name}: {_title(node)} (UI node {node['id']}) feeds nothing"
    read = {v[0] for n in api.values() for v in n["inputs"].values() if isinstance(v, list)}
    for nid, node in api.items():
        if node["class_type"] not in SINKS:
            assert nid in read, f"{name}: API node {nid} ({node['class_type']}) feeds nothing"


def test_comfy_sampler_example_feeds_sampler_and_sigmas_to_the_sampler():
    for data in _load("hunyuan_portrait_comfy_sampler"):
        nodes_ = ({str(n["id"]): {"class_type": n["type"]} for n in data["nodes"]} if "nodes" in data else data)
        kinds = {nid: n["class_type"] for nid, n in nodes_.items()}
        if "nodes" in data:  # UI: links into the sampler's sampler / sigmas sockets
            sampler = next(n for n in data["nodes"] if n["type"] == "HunyuanPortraitSampler")
            links = {lk[0]: lk for lk in data["links"]}
            sources = {i["name"]: kinds[str(links[i["link"]][1])] for i in sampler["inputs"] if i["link"] is not None}
        else:
            sampler = next(n for n in data.values() if n["class_type"] == "HunyuanPortraitSampler")
            sources = {k: kinds[v[0]] for k, v in sampler["inputs"].items() if isinstance(v, list)}
        assert sources.get("sampler") == "KSamplerSelect", sources
        assert sources.get("sigmas") == "AlignYourStepsScheduler", sources


def test_driving_side_never_reads_the_portrait():
    """One driving performance drives many portraits: nothing upstream of the Motion Extractor reads the
    source image, and the portrait reaches only the Appearance Extractor and Paste Back."""
    for name in NAMES:
        _, api = _load(name)

        def upstream(nid, seen=None):
            seen = set() if seen is None else seen
            for v in api[nid]["inputs"].values():
                if isinstance(v, list) and v[0] not in seen:
                    seen.add(v[0])
                    upstream(v[0], seen)
            return seen

        for nid, node in api.items():
            if node["class_type"] == "HunyuanPortraitMotionExtractor":
                assert "LoadImage" not in {api[u]["class_type"] for u in upstream(nid)}, name
        image = next(k for k, v in api.items() if v["class_type"] == "LoadImage")
        readers = {n["class_type"] for n in api.values()
                   if any(isinstance(v, list) and v[0] == image for v in n["inputs"].values())}
        assert readers == {"HunyuanPortraitAppearanceExtractor", "HunyuanPortraitPasteBack"}, (name, readers)


def test_motion_edit_only_in_the_pose_edit_example():
    for name in NAMES:
        _, api = _load(name)
        edits = [n["inputs"] for n in api.values() if n["class_type"] == "HunyuanPortraitMotionEdit"]
        if name != "hunyuan_portrait_pose_edit":
            assert not edits, name
            continue
        (edit,) = edits
        assert edit["pose_mode"] == "relative" and edit["pose_smoothing"] == 2 and edit["expression_strength"] == 1
        assert isinstance(edit["appearance"], list) and isinstance(edit["performance"], list)
        sampler = next(n["inputs"] for n in api.values() if n["class_type"] == "HunyuanPortraitSampler")
        assert api[sampler["performance"][0]]["class_type"] == "HunyuanPortraitMotionEdit"


def test_performance_example_saves_and_loads():
    ui, api = _load("hunyuan_portrait_performance")
    kinds = {k: v["class_type"] for k, v in api.items()}
    save = next(v["inputs"] for v in api.values() if v["class_type"] == "HunyuanPortraitSavePerformance")
    assert kinds[save["performance"][0]] == "HunyuanPortraitMotionExtractor"
    load = next(k for k, v in kinds.items() if v == "HunyuanPortraitLoadPerformance")
    sampler = next(v["inputs"] for v in api.values() if v["class_type"] == "HunyuanPortraitSampler")
    assert sampler["performance"] == [load, 0]
    # The file a first run saves (prefix + the first counter) is the one Load Performance names.
    assert api[load]["inputs"]["performance_file"] == f"{save['filename_prefix']}_00001.safetensors"
    note = next(n for n in ui["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "Load Performance" in note and "cached" in note


def test_generator_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("hp_workflow_build", FOLDER / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # dataclasses look their module up there
    try:
        spec.loader.exec_module(build)
        written = build.write_all(tmp_path)
    finally:
        del sys.modules[spec.name]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        [f"{n}.json" for n in NAMES] + [f"api/{n}.json" for n in NAMES])
    for path in written:
        committed = FOLDER / path.relative_to(tmp_path)
        assert json.loads(path.read_text()) == json.loads(committed.read_text()), \
            f"{committed.name} is stale: run python workflows/build.py"


def test_basic_workflow_has_the_release_settings():
    _, api = _load("hunyuan_portrait_basic")
    sampler = next(n["inputs"] for n in api.values() if n["class_type"] == "HunyuanPortraitSampler")
    assert {k: sampler[k] for k in ("sampler_name", "scheduler", "steps", "appearance_cfg_min", "appearance_cfg_max",
                                    "motion_cfg_min", "motion_cfg_max", "seed", "denoise", "context_window",
                                    "context_overlap", "shift", "padding")} == {
        "sampler_name": "euler", "scheduler": "karras", "steps": 25, "appearance_cfg_min": 2.0,
        "appearance_cfg_max": 2.0, "motion_cfg_min": 2.0, "motion_cfg_max": 2.0, "seed": 72580, "denoise": 1.0,
        "context_window": 25, "context_overlap": 3, "shift": 3, "padding": 15}
    fast = next(n["inputs"] for n in _load("hunyuan_portrait_fast")[1].values()
                if n["class_type"] == "HunyuanPortraitSampler")
    assert fast["steps"] <= 10 and fast["scheduler"] == "ays_svd"


# --------------------------------------------------------------------------------------- execution

class Stubs:
    """ComfyUI core nodes reduced to what the workflows need from them."""

    AUDIO = {"waveform": torch.zeros(1, 1, 100), "sample_rate": 100}

    def __init__(self):
        self.saved, self.previews = [], []

    def LoadImage(self, image):
        return source_image(), torch.zeros(1, 240, 320)

    def LoadVideo(self, file):
        return ({"file": file},)

    def GetVideoComponents(self, video):
        return driving_video(4), self.AUDIO, 25.0

    def CreateVideo(self, images, fps, audio=None):
        return ({"images": images, "fps": fps, "audio": audio},)

    def SaveVideo(self, video, filename_prefix, format, codec):
        self.saved.append((filename_prefix, video))
        return ()

    def PreviewImage(self, images):
        self.previews.append(images)
        return ()

    def KSamplerSelect(self, sampler_name):
        return (FakeKSampler(),)

    def AlignYourStepsScheduler(self, model_type, steps, denoise):
        assert model_type == "SVD" and denoise == 1.0
        return (get_sigmas("ays_svd", steps),)


def execute(prompt: dict, stubs: Stubs) -> dict:
    """Run an API-format prompt: each node once, after the nodes it reads from."""
    results: dict[str, tuple] = {}

    def run(nid: str):
        if nid in results:
            return results[nid]
        node = prompt[nid]
        inputs = {}
        for key, value in node["inputs"].items():
            inputs[key] = run(value[0])[value[1]] if isinstance(value, list) else value
        kind = node["class_type"]
        if kind in OURS:
            cls = OURS[kind]
            results[nid] = getattr(cls(), cls.FUNCTION)(**inputs)  # an output node's: {"ui": ...}
        else:
            results[nid] = getattr(stubs, kind)(**inputs)
        return results[nid]

    for nid in prompt:
        run(nid)
    return results


def tiny(prompt: dict) -> dict:
    """The workflow's graph and settings, shrunk to the tiny preset and a few small steps."""
    for node in prompt.values():
        inputs = node["inputs"]
        kind = node["class_type"]
        if kind == "HunyuanPortraitModelLoader":
            inputs["preset"] = "tiny"
        elif kind == "HunyuanPortraitAppearanceExtractor":
            inputs["resolution"] = 64
        elif kind == "HunyuanPortraitSampler":
            inputs.update(steps=2, padding=2, context_window=6, context_overlap=2)
        elif kind == "AlignYourStepsScheduler":
            inputs["steps"] = 3
    return prompt


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_end_to_end_on_tiny_weights(name, models_dir, monkeypatch):
    monkeypatch.setenv("HP_MODELS_DIR", str(models_dir))
    monkeypatch.setattr(core, "dwpose", lambda: FakeDWPose())
    prompt = tiny(_load(name)[1])
    stubs = Stubs()
    results = execute(prompt, stubs)
    assert stubs.saved, "nothing reached Save Video"
    for prefix, video in stubs.saved:
        assert prefix.startswith("HunyuanPortrait/")
        assert video["fps"] == 25.0 and video["audio"] is Stubs.AUDIO  # the driving clip's fps and audio
        assert video["images"].shape[0] == 4 and torch.isfinite(video["images"]).all()
    shapes = {tuple(v["images"].shape[1:]) for _, v in stubs.saved}
    assert (240, 320, 3) in shapes  # pasted back into the full source
    sampler_id = next(k for k, v in prompt.items() if v["class_type"] == "HunyuanPortraitSampler")
    assert results[sampler_id][0]["samples"].shape == (4, 4, 8, 8)
    for nid, node in prompt.items():  # Save Performance ran first (a lower id) and wrote what Load reads
        if node["class_type"] == "HunyuanPortraitSavePerformance":
            load = next(v for v in prompt.values() if v["class_type"] == "HunyuanPortraitLoadPerformance")
            assert results[nid]["ui"]["text"] == [load["inputs"]["performance_file"]]
            assert (models_dir / "performances" / load["inputs"]["performance_file"]).is_file()


# ------------------------------------------------------------------------------------------ layout

WINDOW = (1600, 900)
SIDE_BAR, MENU, ZOOM_BAR = 64, 78, 50  # px of a 1600x900 window the frontend 1.27 keeps: side bar, tabs + menu
CANVAS = (WINDOW[0] - SIDE_BAR, WINDOW[1] - MENU)  # the graph canvas; its zoom bar covers the bottom
# The minimap (on by default): 250x200 px, 44 px from the window's right edge, 66 px above its bottom.
MINIMAP = (WINDOW[0] - 44 - 250 - SIDE_BAR, WINDOW[1] - 66 - 200 - MENU, WINDOW[0] - 44 - SIDE_BAR, WINDOW[1] - 66 - MENU)
LOW_QUALITY_BELOW = 8 / 14         # MinFontSizeForLOD / LiteGraph.NODE_TEXT_SIZE at devicePixelRatio 1
NODE_TITLE = 30                    # LiteGraph.NODE_TITLE_HEIGHT: the title bar sits above pos
STAGES = ("Inputs", "Motion and appearance", "Sampling", "Decode and paste back", "Video out")


def _box(node) -> tuple[float, float, float, float]:
    x, y = node["pos"]
    w, h = node["size"]
    return x, y - NODE_TITLE, x + w, y + h


def _title(node) -> str:
    return node.get("title") or node["type"]


@pytest.mark.parametrize("name", NAMES)
def test_default_view_shows_every_node_readably(name):
    ui, _ = _load(name)
    scale, (ox, oy) = ui["extra"]["ds"]["scale"], ui["extra"]["ds"]["offset"]
    assert LOW_QUALITY_BELOW < 0.6 <= scale <= 1.0  # widget text is drawn at this zoom
    for node in ui["nodes"]:
        x0, y0, x1, y1 = _box(node)
        sx0, sy0, sx1, sy1 = ((x0 + ox) * scale, (y0 + oy) * scale, (x1 + ox) * scale, (y1 + oy) * scale)
        assert sx0 >= 0 and sy0 >= 0 and sx1 <= CANVAS[0] and sy1 <= CANVAS[1] - ZOOM_BAR, \
            f"{name}: {_title(node)} at screen {sx0:.0f},{sy0:.0f}..{sx1:.0f},{sy1:.0f} is outside the view"
        mx0, my0, mx1, my1 = MINIMAP
        assert sx1 <= mx0 or mx1 <= sx0 or sy1 <= my0 or my1 <= sy0, \
            f"{name}: {_title(node)} at screen {sx0:.0f},{sy0:.0f}..{sx1:.0f},{sy1:.0f} is under the minimap"


@pytest.mark.parametrize("name", NAMES)
def test_no_two_nodes_overlap_and_media_nodes_keep_room(name):
    ui, _ = _load(name)
    boxes = [(_title(n), _box(n)) for n in ui["nodes"]]
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(boxes):
        for b, (bx0, by0, bx1, by1) in boxes[i + 1:]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{name}: {a} overlaps {b}"
    for node in ui["nodes"]:  # room for the image / video that appears after a run, inside the node
        if node["type"] in ("PreviewImage", "SaveVideo", "LoadImage", "LoadVideo"):
            assert node["size"][1] >= 240, f"{name}: {_title(node)} leaves no room for its preview"


@pytest.mark.parametrize("name", NAMES)
def test_graph_reads_left_to_right_in_titled_stages(name):
    ui, _ = _load(name)
    groups = ui["groups"]
    assert [g["title"].split(". ", 1)[1] for g in groups] == list(STAGES)
    lefts = [g["bounding"][0] for g in groups]
    assert lefts == sorted(lefts)
    stage_of = {}
    for node in ui["nodes"]:
        x0, y0, x1, y1 = _box(node)
        inside = [i for i, g in enumerate(groups)
                  if g["bounding"][0] <= x0 and x1 <= g["bounding"][0] + g["bounding"][2]
                  and g["bounding"][1] + 30 <= y0 and y1 <= g["bounding"][1] + g["bounding"][3]]
        assert len(inside) == 1, f"{name}: {_title(node)} is in groups {inside}"
        stage_of[node["id"]] = inside[0]
    for link in ui["links"]:  # data never flows back to an earlier stage
        assert stage_of[link[1]] <= stage_of[link[3]], f"{name}: link {link} flows right to left"
    types = {n["type"]: stage_of[n["id"]] for n in ui["nodes"]}
    assert types["HunyuanPortraitModelLoader"] == 0 and types["Note"] == 0
    assert types["HunyuanPortraitSampler"] == 2 and types["SaveVideo"] == 4


@pytest.mark.parametrize("name", NAMES)
def test_titles_fit_and_the_note_is_short(name):
    ui, _ = _load(name)
    for node in ui["nodes"]:
        # Title font: 14 px sans; about 8.5 px a character at most, plus the collapse dot and padding.
        assert len(_title(node)) * 8.5 + 40 <= node["size"][0], f"{name}: title {_title(node)!r} is cut"
    note = next(n for n in ui["nodes"] if n["type"] == "Note")
    assert note["widgets_values"][0].startswith("Set:") and len(note["widgets_values"][0]) <= 330
