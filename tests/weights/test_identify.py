"""One answer to "which network is this file" (hp_core.identify), checked against the recorded key lists
of the official checkpoints and the SVD VAE's three layouts, and the same answer at every door: the
loader's key errors, `weights verify` and the ComfyUI dropdowns."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from hp_core import identify
from hp_core.checkpoint import check_state_dict
from hp_core.errors import HPError

OFFICIAL = json.loads((Path(__file__).resolve().parents[1] / "data" / "official_checkpoint_keys.json").read_text())
VAE_DIFFUSERS = ["encoder.conv_in.weight", "decoder.conv_out.weight",
                 "decoder.mid_block.resnets.0.time_mixer.mix_factor"]
VAE_SGM = ["encoder.conv_in.weight", "decoder.conv_out.weight", "decoder.mid.block_1.mix_factor"]


@pytest.mark.parametrize("file", sorted(OFFICIAL))
def test_every_official_checkpoint_is_named_by_its_keys(file):
    keys = list(OFFICIAL[file]["keys"])
    assert identify.network_of_keys(keys) == file.removesuffix(".pth")


@pytest.mark.parametrize("file", sorted(set(OFFICIAL) - {"image_proj.pth"}))
def test_a_copy_without_the_telltale_key_is_named_by_its_key_groups(file):
    network = file.removesuffix(".pth")
    telltale = identify.NETWORK_KEYS[network][0]
    keys = [k for k in OFFICIAL[file]["keys"] if k != telltale]
    assert len(keys) == len(OFFICIAL[file]["keys"]) - 1  # the recorded file has the telltale key
    assert identify.network_of_keys(keys) == network


def test_vae_layouts_and_other_files():
    assert identify.vae_layout(VAE_DIFFUSERS) == "diffusers"
    assert identify.vae_layout(VAE_SGM) == "sgm"
    assert identify.vae_layout(["first_stage_model." + k for k in VAE_SGM]) == "sgm_checkpoint"
    assert identify.vae_layout(["encoder.conv_in.weight", "decoder.conv_out.weight"]) is None  # no temporal mix
    assert identify.network_of_keys(VAE_SGM) == "vae"
    assert identify.network_of_keys(["encoder.conv_in.weight", "decoder.conv_out.weight"]) == "vae"
    assert identify.network_of_keys(["model.diffusion_model.input_blocks.0.0.weight"]) is None
    assert identify.network_of_keys(["weight"]) is None


@pytest.mark.parametrize("name, network", [
    ("my_pose_guider_v2.safetensors", "pose_guider"), ("models/HeadPose.pth", "headpose"),
    ("unet/weights.safetensors", "unet"), ("det_10g.onnx", "face_detector"), ("mystery.ckpt", None)])
def test_file_names_that_say_what_they_are(name, network):
    assert identify.network_of_name(name) == network


def _safetensors(path: Path, names: list[str], announced: int | None = None) -> Path:
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", announced or len(raw)) + raw + b"\0" * 4 * len(names))
    return path


def test_a_file_is_named_from_its_header_alone(tmp_path):
    renamed = _safetensors(tmp_path / "a.safetensors", ["down_blocks.0.w", "mid_block.w", "up_blocks.0.w"])
    assert identify.network_of_file(renamed) == "unet"
    header, n = identify.safetensors_header(renamed)
    assert n == len(renamed.read_bytes()) - 8 - 12 and set(header) == {"down_blocks.0.w", "mid_block.w", "up_blocks.0.w"}
    cut = _safetensors(tmp_path / "b.safetensors", ["connector.latents"], announced=10**6)
    with pytest.raises(ValueError, match="cut short"):
        identify.safetensors_header(cut)
    assert identify.network_of_file(cut) is None
    assert identify.network_of_file(tmp_path / "missing.safetensors") is None


def test_the_loader_names_the_file_it_was_given_instead():
    conv = torch.nn.Conv2d(3, 8, 3)
    state = {k: torch.zeros(1) for k in OFFICIAL["headpose.pth"]["keys"]}
    with pytest.raises(HPError) as err:
        check_state_dict(conv, state, component="expression")
    assert "looks like the 'headpose' checkpoint" in err.value.hint
