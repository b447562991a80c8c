"""Networks: official key/shape equality, tiny forwards, and closed-form checks derived by hand."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hp_core.models import COMPONENTS, PRESET_DIMS, build_component
from hp_core.models.appearance import IMAdapter, interpolate_pos_table
from hp_core.models.motion_encoder import HeadPoseEncoder
from hp_core.models.motion_refiner import AdaLN, motion_tokens
from hp_core.models.unet import AdapterAttnProcessor

KEYS = json.loads((Path(__file__).resolve().parents[1] / "data" / "official_checkpoint_keys.json").read_text())


def _official(name):
    keys = KEYS[f"{name}.pth"]["keys"]
    return {k: list(v) for k, v in (keys.items() if isinstance(keys, dict) else keys)}


@pytest.mark.parametrize("name", COMPONENTS)
def test_official_keys_and_shapes_match_release(name):
    module = build_component(name, "official", device="meta")
    ours = {k: list(v.shape) for k, v in module.state_dict().items()}
    expected = _official(name)
    assert len(expected) == KEYS[f"{name}.pth"]["tensors"]
    assert set(ours) == set(expected), (sorted(set(ours) ^ set(expected)))[:5]
    assert {k: ours[k] for k in expected} == expected
    # nothing real allocated (diffusers' AlphaBlender makes its scalar mix factors on the CPU regardless)
    assert sum(p.numel() for p in module.parameters() if not p.is_meta) < 100


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return {n: build_component(n, "tiny") for n in COMPONENTS}


@pytest.mark.parametrize("frames", [1, 5, 8])
def test_tiny_forward_shapes(tiny, frames):
    d = PRESET_DIMS["tiny"]
    with torch.no_grad():
        crops = torch.rand(frames, 3, 64, 64)
        assert tiny["expression"](crops).shape == (frames, d.expression_dim)
        rot, trans = tiny["headpose"].encode(crops)
        assert rot.shape == trans.shape == (frames, 3)
        refined = tiny["motion_proj"](torch.randn(frames, d.expression_dim), 3, 100)
        assert refined.shape == (frames, d.motion_tokens, d.motion_width)
        tokens = motion_tokens(refined, rot)
        assert tokens.shape == (frames, d.motion_tokens, d.context_dim)
        dino = tiny["dino"](torch.randn(3, 3, d.appearance_size, d.appearance_size), torch.randn(3, 512))
        grid = d.appearance_size // 14
        assert dino.shape == (3, 1 + 4 + grid * grid, 32)
        assert tiny["image_proj"](dino).shape == (3, d.appearance_tokens, d.context_dim)
        pose = tiny["pose_guider"](torch.rand(3 * frames, 3, 64, 80))
        assert pose.shape == (3 * frames, 32, 8, 10)
        ctx = torch.randn(3, frames, d.appearance_tokens + d.motion_tokens, d.context_dim)
        out = tiny["unet"](torch.randn(3, frames, 8, 8, 10), torch.tensor(0.5), ctx,
                           torch.tensor([[12.5, 0.0, 0.0]] * 3), pose.reshape(3, frames, 32, 8, 10))
        assert out.shape == (3, frames, 4, 8, 10)
        assert torch.isfinite(out).all()


def test_pose_features_enter_after_conv_in(tiny):
    unet = tiny["unet"]
    args = (torch.randn(1, 2, 8, 8, 8), torch.tensor(0.1), torch.randn(1, 2, 16, 32), torch.tensor([[12.5, 0, 0]]))
    pose = torch.randn(1, 2, 32, 8, 8)
    seen = {}

    def at_conv_in(module, inputs, out):
        seen["conv_in_in"], seen["conv_in_out"] = inputs[0].clone(), out.clone()

    def at_first_block(module, args, kwargs):
        seen["block_in"] = kwargs["hidden_states"].clone()

    hooks = [unet.conv_in.register_forward_hook(at_conv_in),
             unet.down_blocks[0].register_forward_pre_hook(at_first_block, with_kwargs=True)]
    try:
        with torch.no_grad():
            a = unet(*args, pose_features=torch.zeros(1, 2, 32, 8, 8))
            b = unet(*args)
            seen.clear()
            unet(*args, pose_features=pose)
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(a, b)
    # conv_in sees the plain latents; the first block sees conv_in's output plus the pose features
    torch.testing.assert_close(seen["conv_in_in"], args[0].flatten(0, 1))
    torch.testing.assert_close(seen["block_in"], seen["conv_in_out"] + pose.flatten(0, 1))


def test_headpose_output_mapping_closed_form():
    raw = torch.tensor([[0.0, 100.0, -100.0, 0.0, math.log(3.0), -math.log(3.0)]])
    rot, trans = HeadPoseEncoder.map_outputs(raw)
    # sigmoid(0)=.5 -> 0 deg; sigmoid(+inf)->1 -> 180; sigmoid(-inf) -> -180
    torch.testing.assert_close(rot, torch.tensor([[0.0, 180.0, -180.0]]))
    # sigmoid(ln 3) = 3/4 -> 4*.75-2 = 1; sigmoid(-ln 3) = 1/4 -> -1
    torch.testing.assert_close(trans, torch.tensor([[0.0, 1.0, -1.0]]))


def test_headpose_encode_uses_release_input_shift():
    enc = build_component("headpose", "tiny")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc.encode(x)[0], enc(x * 2 + 1)[0])


def test_adaln_modulation_closed_form():
    torch.manual_seed(1)
    ln = AdaLN(4, 3)
    x, cond = torch.randn(2, 5, 4), torch.randn(2, 3)
    with torch.no_grad():
        got = ln(x, cond)
    w, b = ln.linear.weight, ln.linear.bias
    silu = cond * torch.sigmoid(cond)
    emb = silu @ w.T + b
    shift, scale = emb[:, :4], emb[:, 4:]
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + 1e-6)
    torch.testing.assert_close(got, normed * (1 + scale[:, None]) + shift[:, None])


def test_motion_tokens_layout():
    refined = torch.randn(2, 3, 5)
    rot = torch.tensor([[10.0, -20.0, 30.0], [1.0, 2.0, 3.0]])
    tok = motion_tokens(refined, rot)
    assert tok.shape == (2, 3, 11)
    torch.testing.assert_close(tok[..., :5], refined)
    torch.testing.assert_close(tok[1, 2, 5:8], rot[1])
    assert (tok[..., 8:] == 0).all()


def _cubic(t, a=-0.75):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def _bicubic_reference(img, out_size, scale):
    """Plain-loop bicubic (Keys, a=-0.75, half-pixel, border clamp) with the sampling ratio 1/scale."""
    m = img.shape[0]
    out = np.zeros((out_size, out_size, img.shape[2]))
    for oy in range(out_size):
        sy = (oy + 0.5) / scale - 0.5
        y0 = math.floor(sy)
        for ox in range(out_size):
            sx = (ox + 0.5) / scale - 0.5
            x0 = math.floor(sx)
            acc = 0.0
            for j in range(-1, 3):
                for i in range(-1, 3):
                    yy, xx = min(max(y0 + j, 0), m - 1), min(max(x0 + i, 0), m - 1)
                    acc = acc + _cubic(sy - (y0 + j)) * _cubic(sx - (x0 + i)) * img[yy, xx]
            out[oy, ox] = acc
    return out


def test_dino_position_table_interpolation_37_to_16():
    torch.manual_seed(0)
    table = torch.randn(37 * 37, 3, dtype=torch.float64)
    got = interpolate_pos_table(table, (16, 16)).numpy().reshape(16, 16, 3)
    want = _bicubic_reference(table.numpy().reshape(37, 37, 3), 16, (16 + 0.1) / 37)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=3e-5)  # the release interpolates in fp32
    # the offset matters: sampling with the plain size would put points elsewhere
    plain = _bicubic_reference(table.numpy().reshape(37, 37, 3), 16, 16 / 37)
    assert np.abs(plain - want).max() > 1e-3


def test_imadapter_keeps_cls_and_register_tokens_in_front():
    torch.manual_seed(0)
    ad = IMAdapter(width=12, dim=16, id_dim=6, attn_dim=8, attn_heads=2).eval()
    tokens, identity = torch.randn(2, 5 + 9, 12), torch.randn(2, 1, 6)
    with torch.no_grad():
        out = ad(tokens, identity, prefix=5, grid=(3, 3))
        x0 = F.relu(ad.D_fc1(tokens[:, :5]))
        expected_front = ad.D_fc2(2 * x0)
        torch.testing.assert_close(out[:, :5], expected_front)
        # patch tokens do depend on the identity; the front tokens do not
        out2 = ad(tokens, identity + 1, prefix=5, grid=(3, 3))
    torch.testing.assert_close(out2[:, :5], out[:, :5])
    assert not torch.allclose(out2[:, 5:], out[:, 5:])


class _FakeAttn(torch.nn.Module):
    """The parts of a diffusers Attention the processor uses."""

    def __init__(self, hidden, cross, heads):
        super().__init__()
        self.heads = heads
        self.to_q = torch.nn.Linear(hidden, hidden, bias=False)
        self.to_k = torch.nn.Linear(cross, hidden, bias=False)
        self.to_v = torch.nn.Linear(cross, hidden, bias=False)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(hidden, hidden), torch.nn.Dropout(0.0)])
        self.rescale_output_factor = 1.0


def _softmax_attention(q, k, v, heads):
    b, nq, c = q.shape
    d = c // heads
    out = torch.empty(b, nq, c)
    for h in range(heads):
        qs, ks, vs = q[..., h * d:(h + 1) * d], k[..., h * d:(h + 1) * d], v[..., h * d:(h + 1) * d]
        w = torch.softmax(qs @ ks.transpose(1, 2) / math.sqrt(d), dim=-1)
        out[..., h * d:(h + 1) * d] = w @ vs
    return out


def test_adapter_attention_is_sum_of_two_attention_terms():
    torch.manual_seed(0)
    attn = _FakeAttn(8, 6, 2)
    proc = AdapterAttnProcessor(8, 6, num_motion_tokens=3, motion_scale=0.7)
    x, app, motion = torch.randn(2, 5, 8), torch.randn(2, 4, 6), torch.randn(2, 3, 6)
    with torch.no_grad():
        got = proc(attn, x, encoder_hidden_states=torch.cat([app, motion], 1))
        q = attn.to_q(x)
        term_app = _softmax_attention(q, attn.to_k(app), attn.to_v(app), 2)
        term_mot = _softmax_attention(q, proc.to_k_ip[0](motion), proc.to_v_ip[0](motion), 2)
        want = attn.to_out[0](term_app + 0.7 * term_mot)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,batch,frames,h,w,tol", [
    (torch.float64, 3, 5, 8, 12, 1e-10),   # non-square latents, three guidance branches
    (torch.float64, 3, 3, 6, 10, 1e-10),
    (torch.float32, 2, 4, 6, 10, 1e-5),    # fp32, the tolerance the issue asks for
])
def test_shared_temporal_context_equals_per_position_copies(dtype, batch, frames, h, w, tol):
    torch.manual_seed(0)
    unet = build_component("unet", "tiny").to(dtype)
    args = (torch.randn(batch, frames, 8, h, w, dtype=dtype), torch.tensor(0.7),
            torch.randn(batch, frames, 16, 32, dtype=dtype), torch.tensor([[12.5, 0, 0]] * batch))
    with torch.no_grad():
        unet.set_context_mode("shared")
        fast = unet(*args)
        unet.set_context_mode("per_position")
        slow = unet(*args)
    torch.testing.assert_close(fast, slow, rtol=tol, atol=tol)


def test_temporal_blocks_see_the_mean_context_not_the_first_frame():
    """The temporal blocks receive the mean over the window's frames (the release), once per window."""
    torch.manual_seed(2)
    unet = build_component("unet", "tiny").double()
    frames = 4
    sample = torch.randn(1, frames, 8, 8, 8, dtype=torch.float64)
    ctx = torch.randn(1, frames, 16, 32, dtype=torch.float64)
    ids = torch.tensor([[12.5, 0, 0]])
    from hp_core.models import unet as unet_mod
    seen = []

    def spy(module, inputs, kwargs, output):
        seen.append(kwargs["encoder_hidden_states"].clone())
    handles = [m.register_forward_hook(spy, with_kwargs=True)
               for m in unet.modules() if type(m).__name__ == "TemporalBasicTransformerBlock"]
    with torch.no_grad():
        unet(sample, torch.tensor(0.3), ctx, ids)
    for h in handles:
        h.remove()
    assert seen and unet_mod.CONTEXT_SHARED
    torch.testing.assert_close(seen[0], ctx.mean(dim=1))
