"""Integration: a real ComfyUI server loads the pack, lists every node, and runs the example API workflows on
tiny random weights (CPU): a second portrait reuses the cached driving side, and a performance is saved and
loaded again. Needs a ComfyUI checkout in $COMFYUI_PATH (and its requirements installed for
$COMFYUI_PYTHON, default: this interpreter); skipped otherwise.

The pack is linked into a temporary --base-directory's custom_nodes, and the weights live in a folder that
only an extra_model_paths.yaml names, so the test also shows that folder is honoured.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from comfy_server import OTHER_PORTRAIT, TINY_INPUTS

pytestmark = [pytest.mark.comfyui]

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
ROOT = Path(__file__).resolve().parents[2]
FRAMES = 6
USED_FRAMES = TINY_INPUTS["HunyuanPortraitFaceCropMotionEncoder"]["frame_limit"]

if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set (path of a ComfyUI checkout)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from comfy_server import comfyui_server, write_inputs

    tmp = tmp_path_factory.mktemp("comfy")
    with comfyui_server(tmp, COMFYUI_PATH, os.environ.get("COMFYUI_PYTHON", sys.executable),
                        lambda base: write_inputs(base / "input", frames=FRAMES)) as srv:
        yield srv


# The driving side: none of it reads the portrait, so ComfyUI's cache serves it to every other portrait.
DRIVING_SIDE = ("LoadVideo", "GetVideoComponents", "HunyuanPortraitFaceCropMotionEncoder",
                "HunyuanPortraitMotionExtractor")


def _ids(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


def _cached(result: dict) -> set[str]:
    """The nodes ComfyUI served from its cache (the execution_cached message of the history entry)."""
    return {n for m in result["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]}


def _tiny_prompt(workflow: str = "basic", **sampler) -> dict:
    prompt = json.loads((ROOT / "workflows" / "api" / f"hunyuan_portrait_{workflow}.json").read_text())
    for node in prompt.values():
        node["inputs"].update(TINY_INPUTS.get(node["class_type"], {}))
        if node["class_type"] == "HunyuanPortraitSampler":
            node["inputs"].update(sampler)
    return prompt


def test_object_info_lists_every_node_as_declared(server):
    import nodes

    info = server.get("/object_info")
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        assert name in info, f"{name} missing from /object_info"
        declared = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            assert list(info[name]["input"].get(section, {})) == list(declared.get(section, {}))
        assert info[name]["output"] == list(cls.RETURN_TYPES)
        assert info[name]["category"] == "HunyuanPortrait"
    # The weights folder is known only through extra_model_paths.yaml: its files fill the dropdowns.
    # Each dropdown offers its own network's file and only files that exist (the tiny VAE is fp32 only).
    loader = info["HunyuanPortraitModelLoader"]["input"]["required"]
    assert loader["vae"][0] == ["vae/diffusion_pytorch_model.safetensors"]
    for name in ("unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider"):
        assert loader[name][0] == [f"hyportrait/{name}.pth"], (name, loader[name][0])


def test_basic_workflow_runs_and_second_run_is_cached(server):
    from helpers import read_video

    result = server.run(_tiny_prompt())
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:3000]
    videos = sorted((server.base / "output" / "HunyuanPortrait").glob("*.mp4"))
    assert len(videos) == 2
    sizes = {}
    for v in videos:
        clip = read_video(v)
        assert clip.frames.shape[0] == USED_FRAMES
        assert clip.fps == pytest.approx(25.0)
        sizes["crop" if "_crop_" in v.name else "full"] = clip.frames.shape[1:3]
    assert sizes == {"full": (240, 320),    # pasted back into the source image
                     "crop": (64, 64)}      # the generated crop at the chosen resolution

    again = server.run(_tiny_prompt())
    assert again["status"]["status_str"] == "success"
    cached = [set(m[1]["nodes"]) for m in again["status"]["messages"] if m[0] == "execution_cached"]
    loader = next(k for k, v in _tiny_prompt().items() if v["class_type"] == "HunyuanPortraitModelLoader")
    sampler = next(k for k, v in _tiny_prompt().items() if v["class_type"] == "HunyuanPortraitSampler")
    assert cached and loader in cached[0] and sampler in cached[0]


@pytest.mark.parametrize("workflow", ["fast", "comfy_sampler", "long_video", "dwpose", "pose_edit"])
def test_other_workflows_run(server, workflow):
    result = server.run(_tiny_prompt(workflow))
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:3000]
    names = {Path(o["filename"]).name for out in result["outputs"].values() for o in out.get("images", [])}
    assert any(n.startswith(f"hunyuan_portrait_{workflow}_0") and n.endswith(".mp4") for n in names), names


def test_another_portrait_reuses_the_cached_driving_side(server):
    first = server.run(_tiny_prompt(seed=21))
    assert first["status"]["status_str"] == "success", json.dumps(first["status"])[:3000]
    prompt = _tiny_prompt(seed=21)
    for node in prompt.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = OTHER_PORTRAIT
    second = server.run(prompt)
    assert second["status"]["status_str"] == "success", json.dumps(second["status"])[:3000]
    cached = _cached(second)
    for kind in DRIVING_SIDE:
        (nid,) = _ids(prompt, kind)
        assert nid in cached, f"{kind} (node {nid}) ran again for another portrait: cached {sorted(cached)}"
    # ... and the portrait side did run again, with the other portrait.
    for kind in ("LoadImage", "HunyuanPortraitAppearanceExtractor", "HunyuanPortraitSampler"):
        (nid,) = _ids(prompt, kind)
        assert nid not in cached, f"{kind} was cached although the portrait changed"


def test_performance_is_saved_then_loaded_to_drive_a_portrait(server):
    """As the performance example's note says: the first run saves (Load Performance's file is not there yet,
    so ComfyUI runs only the outputs that validate), the second loads the saved file and samples."""
    prompt = _tiny_prompt("performance", seed=31)
    (save,) = _ids(prompt, "HunyuanPortraitSavePerformance")
    (load,) = _ids(prompt, "HunyuanPortraitLoadPerformance")
    wanted = prompt[load]["inputs"]["performance_file"]
    folder = server.base / "models" / "hunyuan_portrait" / "performances"
    assert not (folder / wanted).exists()
    answer = server.post("/prompt", {"prompt": prompt, "client_id": "hp-test"})
    assert load in answer.get("node_errors", {}), answer  # reported, not run
    first = server.wait(answer["prompt_id"])
    assert first["status"]["status_str"] == "success", json.dumps(first["status"])[:3000]
    assert first["outputs"][save]["text"] == [wanted], first["outputs"]
    assert (folder / wanted).is_file()
    videos = [o["filename"] for out in first["outputs"].values() for o in out.get("images", [])
              if o["filename"].endswith(".mp4")]
    assert videos == []  # nothing sampled yet (the source crop preview, which needs no performance, ran)

    second = server.run(_tiny_prompt("performance", seed=31))
    assert second["status"]["status_str"] == "success", json.dumps(second["status"])[:3000]
    assert load not in _cached(second) and save in _cached(second)  # the saved file is not written again
    assert sorted(p.name for p in folder.iterdir()) == [wanted]
    names = {Path(o["filename"]).name for out in second["outputs"].values() for o in out.get("images", [])}
    assert any(n.startswith("hunyuan_portrait_performance_0") and n.endswith(".mp4") for n in names), names

    # A saved performance drives another portrait without the driving clip's nodes running again.
    other = _tiny_prompt("performance", seed=31)
    for node in other.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = OTHER_PORTRAIT
    third = server.run(other)
    assert third["status"]["status_str"] == "success", json.dumps(third["status"])[:3000]
    assert {load, *(i for kind in DRIVING_SIDE for i in _ids(other, kind))} <= _cached(third)


def test_cancel_stops_sampling_and_next_run_works(server):
    prompt = _tiny_prompt(steps=200, seed=5)
    for node in prompt.values():
        if node["class_type"] == "HunyuanPortraitAppearanceExtractor":
            node["inputs"]["resolution"] = 256  # slow enough (minutes) that Cancel lands mid-sampling
    pid = server.post("/prompt", {"prompt": prompt, "client_id": "hp-test"})["prompt_id"]
    end = time.time() + 120
    while time.time() < end and not any(item[1] == pid for item in server.get("/queue")["queue_running"]):
        time.sleep(0.1)
    time.sleep(4)
    started = time.time()
    server.post("/interrupt", {})
    result = server.wait(pid, 120)
    kinds = [m[0] for m in result["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    assert time.time() - started < 60  # stopped between steps, not after 200 of them
    after = server.run(_tiny_prompt(seed=6))
    assert after["status"]["status_str"] == "success", json.dumps(after["status"])[:3000]


def test_errors_reach_the_user_as_one_readable_message(server):
    prompt = _tiny_prompt(seed=7)
    for node in prompt.values():
        if node["class_type"] == "HunyuanPortraitModelLoader":
            node["inputs"]["preset"] = "official"  # tiny files do not fit the official networks
    result = server.run(prompt)
    assert result["status"]["status_str"] == "error"
    err = next(m[1] for m in result["status"]["messages"] if m[0] == "execution_error")
    assert err["exception_type"].endswith("HPError")
    assert "preset" in err["exception_message"] and "tiny" in err["exception_message"]


def test_sampler_previews_arrive_over_the_websocket(server):
    from comfy_server import Messages

    socket = Messages(server.url, "hp-preview")
    try:
        result = server.run(_tiny_prompt(seed=11, steps=3), client_id="hp-preview")
        time.sleep(1)
    finally:
        socket.close()
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:3000]
    previews = socket.previews()
    assert len(previews) >= 3, [(op, p[:16]) for op, p in socket.frames][:20]  # one per sampling step
    assert all(b"\xff\xd8" in p[:200] for p in previews)  # JPEG images (latent2rgb of the middle frame)


def test_impossible_sampler_widgets_refuse_the_whole_prompt_with_one_message(server):
    """context_overlap >= context_window: /prompt is refused (HTTP 400, which the frontend shows in its error
    dialog) before anything runs, the message once, and no history entry claims success: not even the
    source-crop preview, which does not depend on the sampler, runs without the videos."""
    import urllib.error
    import urllib.request

    prompt = _tiny_prompt(seed=41, context_window=8, context_overlap=8)
    (sampler,) = _ids(prompt, "HunyuanPortraitSampler")
    before = set(server.get("/history"))
    req = urllib.request.Request(server.url + "/prompt", data=json.dumps({"prompt": prompt, "client_id": "hp-test"})
                                 .encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.code == 400
    answer = json.loads(refused.value.read())
    assert list(answer["node_errors"]) == [sampler], answer
    errors = answer["node_errors"][sampler]["errors"]
    assert len(errors) == 1, errors  # once, not once per widget VALIDATE_INPUTS names
    text = errors[0]["details"]
    assert text.startswith("Set context_overlap below context_window"), text
    assert text.count("context_overlap below") == 1 and "(8)" in text
    time.sleep(1)
    assert set(server.get("/history")) == before  # nothing ran, nothing claims success
    # Fixed, the same graph runs whole.
    fixed = server.run(_tiny_prompt(seed=41, context_window=8, context_overlap=2))
    assert fixed["status"]["status_str"] == "success", json.dumps(fixed["status"])[:3000]
