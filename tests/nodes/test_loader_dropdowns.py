"""The loader's dropdowns guide: each weight input lists the files that are that network first (official
name, then recognised by file name, then by safetensors header), then files of unknown kind, and never a
file that is another network or a detector; the VAE input lists only files that exist."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from nodes import bridge, loader


def _safetensors(path, names):
    """A .safetensors file whose header lists ``names`` (written by hand: 8-byte length + JSON header)."""
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(names))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "hyportrait").mkdir()
    torch.save({"down_blocks.0.w": torch.zeros(1)}, tmp_path / "hyportrait" / "unet.pth")
    _safetensors(tmp_path / "my_unet_v2.safetensors", ["conv_in.weight"])
    _safetensors(tmp_path / "renamed.safetensors", ["down_blocks.0.w", "mid_block.w", "up_blocks.0.w"])
    _safetensors(tmp_path / "projector.safetensors", ["weight", "bias"])
    _safetensors(tmp_path / "vae" / "diffusion_pytorch_model.safetensors", ["encoder.a", "decoder.b"])
    _safetensors(tmp_path / "svd_decoder_copy.safetensors", ["encoder.a", "decoder.b", "quant_conv.w"])
    (tmp_path / "yoloface_v5m.pt").write_bytes(b"x")
    (tmp_path / "mystery.ckpt").write_bytes(b"x")
    (tmp_path / "arcface.onnx").write_bytes(b"x")
    monkeypatch.setenv("HP_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_a_file_is_named_by_its_name_then_its_header(folder):
    assert bridge.component_of("renamed.safetensors") == "unet"  # header only: the tensors are 4 bytes each
    assert bridge.component_of("my_unet_v2.safetensors") == "unet"  # the name decides before the header
    assert bridge.component_of("projector.safetensors") == "image_proj"
    assert bridge.component_of("mystery.ckpt") is None  # not a safetensors file: its header is not read


def test_each_dropdown_offers_its_network_first(folder):
    spec = loader.HunyuanPortraitModelLoader.INPUT_TYPES()["required"]
    assert spec["unet"][0] == ["hyportrait/unet.pth", "my_unet_v2.safetensors", "renamed.safetensors",
                               "mystery.ckpt"]
    assert spec["unet"][1]["default"] == "hyportrait/unet.pth"
    # No DINO file: the official name leads (the run says how to download it), unknown files follow.
    assert spec["dino"][0] == ["hyportrait/dino.pth", "mystery.ckpt"]
    assert spec["image_proj"][0] == ["projector.safetensors", "mystery.ckpt"]  # recognised by its header
    for name in ("unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider"):
        assert "yoloface_v5m.pt" not in spec[name][0] and "arcface.onnx" not in spec[name][0]
        assert not any("vae" in f or "decoder" in f for f in spec[name][0])


def test_vae_lists_only_files_that_exist(folder):
    spec = loader.HunyuanPortraitModelLoader.INPUT_TYPES()["required"]["vae"]
    assert spec[0] == ["vae/diffusion_pytorch_model.safetensors", "svd_decoder_copy.safetensors", "mystery.ckpt"]
    assert "vae/diffusion_pytorch_model.fp16.safetensors" not in spec[0]
    assert spec[1]["default"] == "vae/diffusion_pytorch_model.safetensors"
