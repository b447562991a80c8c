"""SVD VAE in its three forms: diffusers folder, original (SGM) single file, full SGM checkpoint.

The SGM layout is produced here by a separate, explicit diffusers -> SGM renaming (the inverse of what
the code under test does), from the facts of the Stability layout: encoder.down.{i}.block.{j},
decoder.up.{i} numbered from the full-resolution end, VideoResBlock time_stack in/out_layers,
1x1-conv attention q/k/v/proj_out, conv_out.time_mix_conv, and no quant_conv in the first stage.
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from hp_core import svd_vae as S
from hp_core.errors import HPError
from hp_core.identify import vae_layout
from hp_core.weights.vae import load_vae

LEVELS = 3


def tiny_vae(seed=0):
    from diffusers import AutoencoderKLTemporalDecoder
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64, 64), layers_per_block=2, latent_channels=4,
                                       down_block_types=("DownEncoderBlock2D",) * LEVELS)
    with torch.no_grad():  # GroupNorm/mix factors start at constants; make every tensor distinct
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
_TEMPORAL = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}


def _sgm_resnet(parts):
    if parts[0] == "time_mixer":
        return "mix_factor"
    if parts[0] == "temporal_res_block":
        return f"time_stack.{_TEMPORAL[parts[1]]}.{parts[2]}"
    if parts[0] == "spatial_res_block":
        parts = parts[1:]
    name = "nin_shortcut" if parts[0] == "conv_shortcut" else parts[0]
    return f"{name}.{parts[1]}"


def diffusers_to_sgm(state):
    out = {}
    for key, value in state.items():
        p = key.split(".")
        if p[0] == "quant_conv":
            continue
        side = p[0]
        if p[1] in ("conv_in", "conv_out"):
            out[key] = value
        elif p[1] == "time_conv_out":
            out[f"decoder.conv_out.time_mix_conv.{p[2]}"] = value
        elif p[1] == "conv_norm_out":
            out[f"{side}.norm_out.{p[2]}"] = value
        elif p[1] == "down_blocks":
            if p[3] == "resnets":
                out[f"encoder.down.{p[2]}.block.{p[4]}.{_sgm_resnet(p[5:])}"] = value
            else:
                out[f"encoder.down.{p[2]}.downsample.conv.{p[-1]}"] = value
        elif p[1] == "mid_block" and p[2] == "attentions":
            name = _ATTN[p[4]]
            out[f"{side}.mid.attn_1.{name}.{p[-1]}"] = (value[:, :, None, None] if name != "norm" and p[-1] == "weight"
                                                       else value)
        elif p[1] == "mid_block":
            out[f"{side}.mid.block_{int(p[3]) + 1}.{_sgm_resnet(p[4:])}"] = value
        elif p[1] == "up_blocks":
            level = LEVELS - 1 - int(p[2])
            if p[3] == "upsamplers":
                out[f"decoder.up.{level}.upsample.conv.{p[-1]}"] = value
            else:
                out[f"decoder.up.{level}.block.{p[4]}.{_sgm_resnet(p[5:])}"] = value
        else:
            raise AssertionError(key)
    return out


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def _decode(model, z):
    with torch.no_grad():
        return model.decode(z, num_frames=z.shape[0]).sample


def _encode(model, x):
    with torch.no_grad():
        return model.encode(x).latent_dist.mean


def test_bare_sgm_vae_converts_to_diffusers_keys(vae):
    ref = vae.state_dict()
    sgm = diffusers_to_sgm(ref)
    assert "decoder.up.0.block.0.nin_shortcut.weight" in sgm  # 64 -> 32 at the full-resolution end
    assert vae_layout(sgm) == "sgm"
    out = S.convert_sgm_vae_to_diffusers(sgm)
    assert set(out) == set(ref)
    for k in ref:
        if not k.startswith("quant_conv"):
            assert torch.equal(out[k], ref[k]), k
    # The SGM first stage has no quant_conv: identity is what it computes.
    assert torch.equal(out["quant_conv.weight"][:, :, 0, 0], torch.eye(8))
    assert torch.equal(out["quant_conv.bias"], torch.zeros(8))


def test_full_sgm_checkpoint_uses_its_conditioning_quant_conv(vae):
    ref = vae.state_dict()
    ckpt = {"first_stage_model." + k: v for k, v in diffusers_to_sgm(ref).items()}
    ckpt["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(3)
    ckpt["conditioner.embedders.3.encoder.quant_conv.weight"] = ref["quant_conv.weight"]
    ckpt["conditioner.embedders.3.encoder.quant_conv.bias"] = ref["quant_conv.bias"]
    assert vae_layout(ckpt) == "sgm_checkpoint"
    out = S.convert_sgm_vae_to_diffusers(ckpt)
    assert set(out) == set(ref)
    assert all(torch.equal(out[k], ref[k]) for k in ref)


def test_single_file_sgm_checkpoint_loads_and_decodes_like_the_original(vae, tmp_path):
    ref = vae.state_dict()
    ckpt = {"first_stage_model." + k: v.contiguous() for k, v in diffusers_to_sgm(ref).items()}
    ckpt["model.diffusion_model.out.2.weight"] = torch.ones(4)
    ckpt["conditioner.embedders.3.encoder.quant_conv.weight"] = ref["quant_conv.weight"].clone()
    ckpt["conditioner.embedders.3.encoder.quant_conv.bias"] = ref["quant_conv.bias"].clone()
    path = tmp_path / "checkpoints" / "svd_xt.safetensors"
    path.parent.mkdir()
    save_file(ckpt, str(path))
    loaded = load_vae([tmp_path / "nothing"], vae=path)
    assert list(loaded.config.block_out_channels) == [32, 64, 64]
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_decode(loaded, z), _decode(vae, z), atol=1e-5)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert torch.allclose(_encode(loaded, x), _encode(vae, x), atol=1e-5)


def test_diffusers_folder_in_models_dir(vae, tmp_path):
    copy.deepcopy(vae).to(torch.float16).save_pretrained(str(tmp_path / "vae"), variant="fp16")
    assert (tmp_path / "vae" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = load_vae([tmp_path])
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(_decode(loaded, z), _decode(vae, z), atol=2e-2)
    assert loaded.dtype == torch.float32


def test_image_vae_and_unrelated_files_are_refused(tmp_path):
    image_vae = {"decoder.mid.block_1.conv1.weight": torch.zeros(1), "encoder.conv_in.weight": torch.zeros(1)}
    save_file(image_vae, str(tmp_path / "sd_vae.safetensors"))
    with pytest.raises(HPError, match="image VAE"):
        S.read_vae_state_dict(tmp_path / "sd_vae.safetensors")
    save_file({"foo": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(HPError, match="does not contain"):
        S.read_vae_state_dict(tmp_path / "other.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes()[:-3])
    with pytest.raises(HPError, match="truncated or corrupted"):
        S.read_vae_state_dict(tmp_path / "cut.safetensors")


def test_missing_vae_says_how_to_get_it(tmp_path):
    with pytest.raises(HPError) as err:
        load_vae([tmp_path])
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in str(err.value)
