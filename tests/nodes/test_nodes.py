"""The ComfyUI nodes on the tiny preset, without ComfyUI: declarations, every node's function on small
synthetic images, the loader's files and messages, sampler inputs (own sampler, SIGMAS, SAMPLER, pose),
cancel, out-of-memory, decode and paste-back."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nodes
from fakes import driving_frames, write_fake_dwpose
from hp_core.errors import HPError
from hp_core.models import COMPONENTS
from hp_core.pipeline import Settings, build_conditions, encode_motion, sample_latents
from hp_core.preprocess import prepare_source
from hp_core.preprocess.identity import align_arcface
from hp_core.sampling import Cancelled, get_sigmas
from nodes import bridge, core, loader
from nodes_env import FakeDWPose, FakeKSampler, as_image, driving_video, source_image
from release_reference import release_decode

M = nodes.NODE_CLASS_MAPPINGS
WIDGETS = ("INT", "FLOAT", "STRING", "BOOLEAN")
ROOT = Path(__file__).resolve().parents[2]
RES = 64  # generated side: the tiny VAE gives 8x8 latents


# ---------------------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("HP_MODELS_DIR", str(models_dir))


def _load(**change):
    values = {n: core.manifest_path(n) for n in COMPONENTS}
    values.update(vae=core.manifest_path("svd_vae"), preset="tiny", precision="auto", keep_on_gpu="all")
    values.update(change)
    return M["HunyuanPortraitModelLoader"]().load(**values)[0]


@pytest.fixture(scope="module")
def models(models_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HP_MODELS_DIR", str(models_dir))
        return _load()


def _face_crop(frames=None, **change):
    values = dict(driving_frames=driving_video(4) if frames is None else frames,
                  detector="yolo", frame_limit=0, driving_face_index=-1, smoothing=0, edge_mode="auto")
    values.update(change)
    return M["HunyuanPortraitFaceCropMotionEncoder"]().encode(**values)


@pytest.fixture(scope="module")
def features(models_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HP_MODELS_DIR", str(models_dir))
        return _face_crop()[0]


@pytest.fixture(scope="module")
def motion(models, features):
    return M["HunyuanPortraitMotionExtractor"]().extract(models, features, -1, -1)[0]


@pytest.fixture(scope="module")
def appearance(models, models_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HP_MODELS_DIR", str(models_dir))
        return M["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), True, RES, "yolo")[0]


SAMPLE = dict(sampler_name="euler", scheduler="karras", steps=2, appearance_cfg_min=1.5, appearance_cfg_max=2.5,
              motion_cfg_min=2.0, motion_cfg_max=3.0, seed=3, denoise=1.0, context_window=6, context_overlap=2,
              shift=3, padding=2, motion_scale=1.0, noise_aug=0.0)


def _sample(models, appearance, motion, **change):
    values = {**SAMPLE, **change}
    return M["HunyuanPortraitSampler"]().sample(models, appearance, motion, **values)[0]["samples"]


# ------------------------------------------------------------------------------------ declarations

def _specs(cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"} and spec["required"]
    return [(section, name, s) for section in ("required", "optional") for name, s in spec.get(section, {}).items()]


@pytest.mark.parametrize("name", sorted(M))
def test_every_node_declares_valid_inputs_outputs_and_function(name):
    cls = M[name]
    for section, input_name, s in _specs(cls):
        assert isinstance(s, tuple) and len(s) == 2, input_name
        kind, opts = s
        assert opts.get("tooltip"), f"{name}.{input_name} has no tooltip"
        if isinstance(kind, list):
            assert kind and opts.get("default", kind[0]) in kind
        elif kind in ("INT", "FLOAT"):
            assert opts["min"] <= opts["default"] <= opts["max"], input_name
        elif kind == "BOOLEAN":
            assert isinstance(opts["default"], bool)
        else:
            assert isinstance(kind, str) and kind.isupper()  # a socket type
    n = len(cls.RETURN_TYPES)
    assert n or getattr(cls, "OUTPUT_NODE", False)  # a node without outputs must be an output node
    if n:
        assert len(cls.RETURN_NAMES) == n and len(cls.OUTPUT_TOOLTIPS) == n
        assert all(isinstance(t, str) and t for t in cls.OUTPUT_TOOLTIPS)
    assert cls.CATEGORY == "HunyuanPortrait" and len(cls.DESCRIPTION) > 40
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("HunyuanPortrait")
    # ComfyUI calls FUNCTION with every input as a keyword: the names must match, optional ones default None
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    names = [p for p, v in params.items() if p != "self" and v.kind != v.VAR_KEYWORD]
    declared = [input_name for _, input_name, _ in _specs(cls)]
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        # the settings declared in hp_core.options arrive as **widgets: exactly those names, nothing else
        from hp_core.options import widget_fields
        assert set(declared) - set(names) == set(widget_fields(cls.OPTIONS))
        declared = [n for n in declared if n in names]
    assert names == declared
    for section, input_name, _ in _specs(cls):
        if input_name in params:
            assert (params[input_name].default is None) == (section == "optional")


def test_seed_gets_the_control_after_generate_widget():
    seed = M["HunyuanPortraitSampler"].INPUT_TYPES()["required"]["seed"]
    assert seed[0] == "INT" and seed[1]["control_after_generate"] is True
    assert seed[1]["default"] == Settings().seed


def test_pack_entry_point_exports_the_nodes():
    spec = importlib.util.spec_from_file_location("hp_pack_under_test", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert set(module.NODE_CLASS_MAPPINGS) == set(M) and len(M) == 11
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(M)
    finally:
        for key in [k for k in sys.modules if k.startswith(spec.name)]:
            del sys.modules[key]


# ------------------------------------------------------------------------------------------ loader

def test_loader_loads_the_files_strictly_and_reuses_them(models, models_dir, tmp_path, monkeypatch):
    assert models.preset == "tiny" and models.device.type == "cpu"
    for name in COMPONENTS:
        state = getattr(models, name).state_dict()
        saved = torch.load(models_dir / "hyportrait" / f"{name}.pth", weights_only=True)
        assert set(state) == set(saved), name  # every key, no more, no fewer
        for key, tensor in saved.items():
            torch.testing.assert_close(state[key], tensor.to(state[key].dtype), rtol=0, atol=0, msg=key)
        assert next(getattr(models, name).parameters()).dtype == torch.float32  # 'auto' on the CPU
    assert _load() is models  # same files and settings: no second load
    # strict: a file that lacks one key of its network is refused, naming the key
    saved = torch.load(models_dir / "hyportrait" / "pose_guider.pth", weights_only=True)
    dropped = sorted(saved)[-1]
    del saved[dropped]
    (tmp_path / "broken").mkdir()
    torch.save(saved, tmp_path / "broken" / "pose_guider.pth")
    monkeypatch.setenv("HP_MODELS_DIR", f"{models_dir}{os.pathsep}{tmp_path}")
    with pytest.raises(HPError, match=r"pose_guider checkpoint .* 1 of its \d+ tensors are missing") as err:
        _load(pose_guider="broken/pose_guider.pth")
    assert dropped in str(err.value)


def test_loader_dropdowns_list_the_folder_with_the_manifest_files_first(models, models_dir):
    spec = M["HunyuanPortraitModelLoader"].INPUT_TYPES()["required"]
    for name in COMPONENTS:  # each dropdown: the file that is that network, not the others
        assert spec[name][0] == [f"hyportrait/{name}.pth"] and spec[name][1]["default"] == spec[name][0][0]
    assert spec["vae"][0] == ["vae/diffusion_pytorch_model.safetensors"]  # only the fp32 file exists
    listed = bridge.model_files()
    assert any((models_dir / ".hp_cache").iterdir())  # loading wrote its safetensors cache ...
    assert not any(n.startswith(".hp_cache/") for n in listed)  # ... which is no choice
    assert spec["preset"][0] == ["official", "tiny"] and spec["keep_on_gpu"][0] == ["all", "unet", "none"]


def test_loader_names_a_missing_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HP_MODELS_DIR", str(tmp_path))
    with pytest.raises(HPError) as err:
        _load()
    text = str(err.value)
    assert "hyportrait/unet.pth" in text and "python -m hp_core weights download" in text
    with pytest.raises(HPError, match="nope.pth"):
        _load(dino="nope.pth")


def test_loader_tells_which_preset_the_files_need():
    with pytest.raises(HPError) as err:
        _load(preset="official")
    assert "unet.pth" in str(err.value) and "preset to 'tiny'" in str(err.value)


def test_precision_choices():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert set(loader.precision_dtypes("auto", cpu).values()) == {torch.float32}
    assert set(loader.precision_dtypes("fp32", cuda).values()) == {torch.float32}
    fp16 = loader.precision_dtypes("fp16", cuda)
    assert fp16["unet"] == fp16["dino"] == fp16["pose_guider"] == fp16["vae"] == torch.float16
    assert fp16["expression"] == fp16["headpose"] == fp16["motion_proj"] == torch.float32
    auto = loader.precision_dtypes("auto", cuda)  # the release: fp16 networks, fp32 motion and VAE
    assert auto["unet"] == torch.float16 and auto["vae"] == torch.float32
    assert loader.precision_dtypes("bf16", cuda)["unet"] == torch.bfloat16
    half = _load(precision="bf16")
    assert next(half.unet.parameters()).dtype == torch.bfloat16
    assert next(half.expression.parameters()).dtype == torch.float32


def test_keep_on_gpu_rules(models):
    mods = {n: getattr(models, n) for n in COMPONENTS}
    unet_only = loader.keep_rule("unet", mods)
    assert unet_only(models.unet) and unet_only(models.pose_guider)
    assert not unet_only(models.dino) and not unet_only(models.vae)
    assert loader.keep_rule("all", mods)(models.vae) and not loader.keep_rule("none", mods)(models.unet)


# -------------------------------------------------------------------------------------- face crop

def test_face_crop_encodes_driving_frames_and_previews(features, caplog):
    assert features.num_frames == 4 and len(features.missing_frames) == 1
    with caplog.at_level(logging.WARNING, logger="HunyuanPortrait"):
        feats, crops, faces = _face_crop(frame_limit=3, smoothing=3)
    assert feats.num_frames == 3
    assert crops.shape == faces.shape == (3, 256, 256, 3) and crops.dtype == torch.float32
    torch.testing.assert_close(crops, torch.from_numpy(feats.pose_crops).float() / 255)
    torch.testing.assert_close(faces, torch.from_numpy(feats.motion_crops).float() / 255)
    assert "had no face" in caplog.text


def test_face_crop_reports_bad_face_index_and_missing_detector(models):
    with pytest.raises(HPError, match="Face index 3"):
        M["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), False, RES, "yolo", face_index=3)
    with pytest.raises(HPError) as err:
        _face_crop(detector="scrfd")
    assert "det_10g.onnx" in str(err.value) and "weights download" in str(err.value)


# ----------------------------------------------------------------------------------------- motion

def test_motion_extractor_matches_one_pass_over_all_frames(models, monkeypatch):
    feats = _face_crop(as_image(driving_frames(30)))[0]
    monkeypatch.setattr(nodes.motion, "CHUNKS_PER_PASS", 1)  # 30 frames -> two passes of one chunk
    out = M["HunyuanPortraitMotionExtractor"]().extract(models, feats, -1, -1)[0]
    ids = feats.intensity(25)
    assert len(ids) == 2 and out.ids == [tuple(i) for i in ids]
    whole = encode_motion(models, feats.motion_crops, feats.pose_crops, ids, chunk=25)
    assert out.tokens.shape == (30, models.dims.motion_tokens, models.dims.context_dim)
    torch.testing.assert_close(out.tokens, whole.tokens, rtol=1e-5, atol=1e-5)


def test_intensity_override(models, features, motion):
    fixed = M["HunyuanPortraitMotionExtractor"]().extract(models, features, 7, 100)[0]
    assert fixed.ids == [(7, 100)]
    assert motion.ids != fixed.ids and not torch.allclose(fixed.tokens, motion.tokens)
    head_only = M["HunyuanPortraitMotionExtractor"]().extract(models, features, 7, -1)[0]
    assert head_only.ids == [(7, motion.ids[0][1])]


# ------------------------------------------------------------------------------------- appearance

def test_appearance_uses_arcface_identity_of_the_crop(models, appearance):
    # The fake ArcFace outputs the aligned face's channel means times a fixed matrix (fakes.py, seed 0).
    weight = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    source = prepare_source(source_image()[0], core.face_detector("yolo"))
    aligned = align_arcface(source.source_crop_512, source.source_landmarks)
    expected = aligned.reshape(-1, 3).mean(axis=0) @ weight
    np.testing.assert_allclose(appearance.identity, expected / np.linalg.norm(expected), rtol=1e-4, atol=1e-5)
    assert appearance.tokens.shape == (1, models.dims.appearance_tokens, models.dims.context_dim)
    assert appearance.ref_latents.shape == appearance.cond_latents.shape == (1, 4, RES // 8, RES // 8)
    assert appearance.crop_box == tuple(source.crop_bbox) and appearance.source_hw == (240, 320)
    np.testing.assert_array_equal(appearance.source_crop, source.source_crop_512)
    no_id, crop = M["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), False, 128, "yolo")
    assert not no_id.identity.any() and not torch.allclose(no_id.tokens, appearance.tokens)
    assert no_id.ref_latents.shape == (1, 4, 16, 16)
    assert crop.shape == (1, 512, 512, 3)


def test_appearance_reads_the_portraits_own_pose_as_a_driving_frame(models, appearance):
    """The portrait's rotation and expression are those of a one-frame driving clip of the same image."""
    frame = driving_video(1)
    feats = _face_crop(frame)[0]
    as_clip = M["HunyuanPortraitMotionExtractor"]().extract(models, feats, 0, 0)[0]
    own = M["HunyuanPortraitAppearanceExtractor"]().extract(models, frame, False, RES, "yolo")[0].motion
    torch.testing.assert_close(own.rotation, as_clip.rotation[0], rtol=0, atol=0)
    torch.testing.assert_close(own.expression, as_clip.expression[0], rtol=1e-5, atol=1e-5)
    assert appearance.motion.rotation.shape == (3,)
    with pytest.raises(HPError, match="multiple of 64"):
        M["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), True, 100, "yolo")


# ----------------------------------------------------------------------------------------- DWPose

def test_dwpose_alignment_draws_one_skeleton_per_frame(features, appearance, monkeypatch):
    fake = FakeDWPose()
    monkeypatch.setattr(core, "dwpose", lambda: fake)
    pose, preview = M["HunyuanPortraitDWPoseAlignment"]().align(features, appearance, True)
    assert fake.calls == features.num_frames + 1  # the source crop + every driving crop
    assert pose.images.shape == (4, 512, 512, 3) and pose.images.dtype == np.uint8
    assert [bool(frame.any()) for frame in pose.images] == [True, True, False, True]  # frame 2 shows nobody
    assert preview.shape == (4, 256, 256, 3) and 0 < float(preview.max()) <= 1
    with_eyes = M["HunyuanPortraitDWPoseAlignment"]().align(features, appearance, False)[0]
    assert (with_eyes.images > 0).sum() > (pose.images > 0).sum()  # cross-reenactment drops the eyes


def test_dwpose_node_opens_the_onnx_files_of_the_models_folder(features, appearance, models_dir, tmp_path,
                                                              monkeypatch):
    write_fake_dwpose(tmp_path / "dwpose")
    monkeypatch.setenv("HP_MODELS_DIR", f"{models_dir}{os.pathsep}{tmp_path}")  # a second models folder
    pose, _ = M["HunyuanPortraitDWPoseAlignment"]().align(features, appearance, True)
    assert pose.images.shape == (4, 512, 512, 3)
    assert all(frame.any() for frame in pose.images)  # the stub sees a person in every crop


def test_dwpose_missing_files_are_named(features, appearance):
    with pytest.raises(HPError, match="dwpose/yolox_l.onnx"):
        M["HunyuanPortraitDWPoseAlignment"]().align(features, appearance, True)


# ---------------------------------------------------------------------------------------- sampler

def test_sampler_is_seeded_and_follows_the_settings(models, appearance, motion):
    a = _sample(models, appearance, motion)
    b = _sample(models, appearance, motion)
    assert a.shape == (4, 4, RES // 8, RES // 8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, _sample(models, appearance, motion, seed=4))
    settings = Settings(steps=2, appearance_cfg=(1.5, 2.5), motion_cfg=(2.0, 3.0), seed=3, window=6, overlap=2,
                        pad=2, height=RES, width=RES)
    cond = build_conditions(appearance.tokens, motion.tokens, appearance.cond_latents, None, settings)
    direct = sample_latents(models, cond, appearance.ref_latents, settings)
    # the LATENT socket holds raw VAE latents, as ComfyUI's VAE Encode/Decode and samplers expect
    torch.testing.assert_close(a, direct / 0.18215)


def test_motion_scale_widget_reaches_the_unet(models, appearance, motion):
    # 0 drops the motion attention term: the same as zero motion tokens (to_v_ip has no bias)
    none = _sample(models, appearance, motion, motion_scale=0.0)
    still = dataclasses.replace(motion, expression=torch.zeros_like(motion.expression),
                                rotation=torch.zeros_like(motion.rotation))
    torch.testing.assert_close(none, _sample(models, appearance, still), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(none, _sample(models, appearance, motion), rtol=1e-4, atol=1e-4)


def test_sampler_previews_the_middle_frame_each_step_without_changing_the_result(models, appearance, motion,
                                                                                   monkeypatch):
    plain = _sample(models, appearance, motion, steps=3)
    updates, seen = [], []

    class Bar:  # comfy.utils.ProgressBar: update_absolute(value, total, preview)
        def __init__(self, total):
            pass

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, total, preview))

    class Previewer:  # what latent_preview.get_previewer returns
        def decode_latent_to_preview_image(self, fmt, x0):
            seen.append(x0.clone())
            return ("JPEG", f"image {len(seen)}", 512)

    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_cu", type("cu", (), {"ProgressBar": Bar}))
    monkeypatch.setattr(bridge, "_mm", type("mm", (), {"processing_interrupted": staticmethod(lambda: False),
                                                        "get_torch_device": staticmethod(lambda: torch.device("cpu"))}))
    monkeypatch.setattr(bridge, "latent_previewer", lambda: Previewer())
    shown = _sample(models, appearance, motion, steps=3)
    torch.testing.assert_close(shown, plain, rtol=0, atol=0)  # previews change nothing
    assert [(v, t, p) for v, t, p in updates if p] == [(i, 3, ("JPEG", f"image {i}", 512)) for i in (1, 2, 3)]
    assert all(x0.shape == (1, 4, RES // 8, RES // 8) for x0 in seen)
    # The last Euler step lands on its denoised estimate: the last preview is the middle of the 4 + 2 * 2
    # padded frames (index 4 = output frame 2), in the sampler's scaled latents.
    torch.testing.assert_close(seen[-1][0], plain[2] * 0.18215, rtol=1e-4, atol=1e-4)


def test_preview_goes_to_the_previewers_device_and_a_failing_previewer_only_costs_previews(
        models, appearance, motion, monkeypatch, caplog):
    """TAESD sits on ComfyUI's device while the step's estimate waits on the CPU: the frame is moved there.
    A previewer that raises (a missing TAESD file, a device mismatch) turns previews off with one warning,
    and sampling goes on to the same result with its progress bar."""
    plain = _sample(models, appearance, motion, steps=3)
    updates, devices = [], []

    class Bar:
        def __init__(self, total):
            pass

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, preview))

    class BrokenPreviewer:
        def decode_latent_to_preview_image(self, fmt, x0):
            devices.append(x0.device.type)
            raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_cu", type("cu", (), {"ProgressBar": Bar}))
    monkeypatch.setattr(bridge, "_mm", type("mm", (), {"processing_interrupted": staticmethod(lambda: False)}))
    monkeypatch.setattr(bridge, "latent_previewer", lambda: BrokenPreviewer())
    monkeypatch.setattr(bridge, "torch_device", lambda: torch.device("meta"))  # ComfyUI's device, seen apart
    with caplog.at_level("WARNING"):
        shown = _sample(models, appearance, motion, steps=3)
    torch.testing.assert_close(shown, plain, rtol=0, atol=0)
    assert devices == ["meta"]  # moved to the previewer's device; after the failure it is not asked again
    assert [v for v, p in updates] == [1, 2, 3] and not any(p for v, p in updates)
    warnings = [r.getMessage() for r in caplog.records if "previews are off" in r.getMessage()]
    assert len(warnings) == 1 and "same device" in warnings[0]


def test_sigmas_input_replaces_the_schedule(models, appearance, motion):
    ours = _sample(models, appearance, motion, steps=3, scheduler="exponential")
    given = _sample(models, appearance, motion, steps=25, sigmas=get_sigmas("exponential", 3))
    torch.testing.assert_close(given, ours, rtol=0, atol=0)
    with pytest.raises(HPError):
        _sample(models, appearance, motion, sigmas=torch.tensor([]))


class Recorder:
    instances: list = []

    def __init__(self, total):
        self.total, self.calls = total, []
        Recorder.instances.append(self)

    def __call__(self, done, total=None):
        self.calls.append(done)

    def preview(self, done, total, denoised):  # bridge.Progress's preview hook; nothing to show here
        pass


def test_comfy_sampler_input_drives_the_denoiser(models, appearance, motion, monkeypatch):
    monkeypatch.setattr(bridge, "Progress", Recorder)
    Recorder.instances.clear()
    ksampler = FakeKSampler()
    theirs = _sample(models, appearance, motion, steps=3, sampler=ksampler)
    ours = _sample(models, appearance, motion, steps=3)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)  # the same Euler steps
    assert ksampler.seen == {"sigma_max": 700.0, "patcher": 0.002, "seed": 3}
    assert Recorder.instances[0].calls == [1, 2, 3] and Recorder.instances[1].calls == [1, 2, 3]


def test_cfg_pp_samplers_are_refused_readably(models, appearance, motion):
    class CfgPP(FakeKSampler):
        def sampler_function(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
            extra_args = {**extra_args, "model_options": {"sampler_post_cfg_function": [lambda a: a["denoised"]]}}
            return model(x, sigmas[0] * x.new_ones([1]), **extra_args)

    with pytest.raises(HPError, match="_cfg_pp"):
        _sample(models, appearance, motion, sampler=CfgPP())


def test_pose_input_reaches_the_pose_guider(models, appearance, motion, features, monkeypatch):
    monkeypatch.setattr(core, "dwpose", lambda: FakeDWPose())
    pose = M["HunyuanPortraitDWPoseAlignment"]().align(features, appearance, True)[0]
    blank = _sample(models, appearance, motion)
    posed = _sample(models, appearance, motion, pose=pose)
    assert posed.shape == blank.shape and not torch.allclose(posed, blank)
    full = nodes.sampler.pose_frames(pose, 3, 512)  # at the skeletons' own size they stay uint8
    assert full.dtype == torch.uint8 and torch.equal(full, torch.from_numpy(pose.images[:3]).permute(0, 3, 1, 2))
    small = nodes.sampler.pose_frames(pose, 4, RES)  # resized, still uint8 (the denoiser scales to [0, 1])
    assert small.shape == (4, 3, RES, RES) and small.dtype == torch.uint8 and 0 == small.min() < small.max()
    short = type(pose)(pose.images[:2])
    with pytest.raises(HPError, match="2 frames"):
        _sample(models, appearance, motion, pose=short)


def test_cancel_stops_between_steps_and_the_next_run_works(models, appearance, motion, monkeypatch):
    before = _sample(models, appearance, motion)
    monkeypatch.setattr(bridge, "interrupted", lambda: True)
    with pytest.raises(Cancelled):
        _sample(models, appearance, motion)
    monkeypatch.setattr(bridge, "interrupted", lambda: False)
    torch.testing.assert_close(_sample(models, appearance, motion), before, rtol=0, atol=0)


def test_out_of_memory_names_the_settings_to_lower(models, appearance, motion, monkeypatch):
    def oom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(nodes.sampler, "sample_latents", oom)
    core._PREPROCESS_CACHE.get(("detector", "probe"), lambda: "a face detector holding GPU memory")
    with pytest.raises(HPError) as err:
        _sample(models, appearance, motion)
    assert ("detector", "probe") not in core._PREPROCESS_CACHE._items  # freed with the models
    text = str(err.value)
    assert "Out of memory during sampling" in text and "context_window" in text and "keep_on_gpu" in text
    assert err.value.__suppress_context__  # one message, not the torch traceback
    assert err.value.__context__.__traceback__ is None  # the failed allocation's frames are let go


def test_impossible_windows_fail_before_the_unet_runs(models, appearance, motion):
    calls = []
    handle = models.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(HPError, match="overlap"):
            _sample(models, appearance, motion, context_window=4, context_overlap=4)
    finally:
        handle.remove()
    assert not calls


# ------------------------------------------------------------------------------- decode / paste back

def test_decode_chunks_and_matches_the_vae(models, monkeypatch):
    monkeypatch.setattr(bridge, "Progress", Recorder)
    Recorder.instances.clear()
    lat = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    frames = M["HunyuanPortraitDecode"]().decode(models, {"samples": lat}, 2)[0]
    assert frames.shape == (5, RES, RES, 3) and 0 <= float(frames.min()) and float(frames.max()) <= 1
    torch.testing.assert_close(frames, release_decode(models.vae, lat * 0.18215, chunk=2), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(frames, release_decode(models.vae, lat * 0.18215, chunk=5), rtol=1e-3, atol=1e-3)  # chunks matter
    assert Recorder.instances[0].calls == [2, 4, 5]
    with pytest.raises(HPError, match="frames, 4, h, w"):
        M["HunyuanPortraitDecode"]().decode(models, {"samples": lat[None]}, 2)


def test_paste_back_blends_into_the_full_source(appearance):
    src = source_image()
    gen = torch.zeros(2, RES, RES, 3)
    gen[..., 1] = 1.0  # pure green
    out = M["HunyuanPortraitPasteBack"]().paste(gen, src, appearance, 0.0)[0]
    assert out.shape == (2, 240, 320, 3)
    x1, y1, x2, y2 = appearance.crop_box
    inside = out[:, max(y1, 0):y2, max(x1, 0):x2]
    torch.testing.assert_close(inside, torch.tensor([0.0, 1.0, 0.0]).expand_as(inside))
    outside = torch.ones(240, 320, dtype=torch.bool)
    outside[max(y1, 0):y2, max(x1, 0):x2] = False
    expected = (src[0] * 255).round() / 255
    torch.testing.assert_close(out[0][outside], expected[outside], rtol=0, atol=1e-6)
    soft = M["HunyuanPortraitPasteBack"]().paste(gen, src, appearance, 0.1)[0]
    cy = (max(y1, 0) + y2) // 2
    torch.testing.assert_close(soft[0, cy, max(x1, 0)], expected[cy, max(x1, 0)], rtol=0, atol=1e-6)  # edge: source
    torch.testing.assert_close(soft[0, cy, (x1 + x2) // 2], torch.tensor([0.0, 1.0, 0.0]))      # centre: generated


def test_paste_back_of_an_odd_sized_source_has_even_sides_for_save_video(features, models, caplog):
    """ComfyUI's Save Video encodes H.264 in yuv420p, which refuses odd sides: a 225 px wide portrait gets one
    edge column (every source pixel kept, as the CLI's writer does). The browser test runs the workflows on a
    225 px wide portrait through the real Save Video."""
    from fakes import portrait

    src = as_image(portrait(240, 225)[None])
    app = M["HunyuanPortraitAppearanceExtractor"]().extract(models, src, False, RES, "yolo")[0]
    gen = torch.zeros(2, RES, RES, 3)
    with caplog.at_level("INFO", logger="HunyuanPortrait"):
        out = M["HunyuanPortraitPasteBack"]().paste(gen, src, app, 0.1)[0]
    assert out.shape == (2, 240, 226, 3)
    x1, y1, x2, y2 = app.crop_box
    keep = torch.ones(240, 225, dtype=torch.bool)
    keep[max(y1, 0):y2, max(x1, 0):x2] = False
    torch.testing.assert_close(out[0, :, :225][keep], ((src[0] * 255).round() / 255)[keep], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, :, 225], out[:, :, 224], rtol=0, atol=0)  # the edge column repeated
    assert any("odd side" in r.getMessage() for r in caplog.records)


def test_paste_back_masks_and_size_checks(appearance):
    src = source_image()
    gen = torch.ones(2, RES, RES, 3)
    zero = torch.zeros(1, 240, 320)  # a mask over the source that keeps everything of the source
    kept = M["HunyuanPortraitPasteBack"]().paste(gen, src, appearance, 0.1, zero)[0]
    torch.testing.assert_close(kept[1], (src[0] * 255).round() / 255, rtol=0, atol=1e-6)
    with pytest.raises(HPError, match="3 masks for 2 frames"):
        M["HunyuanPortraitPasteBack"]().paste(gen, src, appearance, 0.1, torch.zeros(3, 240, 320))
    with pytest.raises(HPError, match="same source image"):
        M["HunyuanPortraitPasteBack"]().paste(gen, src[:, :200], appearance, 0.1)


def test_the_sampler_queue_check_names_what_comfyui_passes_it():
    """ComfyUI hands VALIDATE_INPUTS the inputs its signature names: they are the queue-checked widgets."""
    from nodes.validate import QUEUE_CHECKED
    params = list(inspect.signature(M["HunyuanPortraitSampler"].VALIDATE_INPUTS).parameters)
    assert tuple(params) == QUEUE_CHECKED
