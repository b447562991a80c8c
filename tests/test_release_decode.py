"""Frames equal to the release's: the padded latents decoded in chunks counted from padded frame 0 with the
padding cut afterwards, on every path (the CLI's hp_core.run, the node graph), by release_reference.release_decode;
and the release's noise augmentation of the reference before the conditioning latents are encoded.

The expected frames are derived by hand from the VAE (vae.decode of latents / 0.18215, num_frames = chunk,
* 0.5 + 0.5 clamped), never from decode_latents."""

import numpy as np
import pytest
import torch

import nodes
from fakes import driving_frames, portrait, write_clip
from hp_core import pipeline as P
from hp_core import video as V
from nodes_env import as_image, source_image
from release_reference import release_decode

M = nodes.NODE_CLASS_MAPPINGS
CASES = [(15, 5), (2, 7)]  # (pad, frames): frame counts not multiples of 8; pad 2 ends in a partial chunk


def plain_decode(vae, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """What we used to do: the padding cut first, chunks counted from output frame 0."""
    return release_decode(vae, latents, 0, chunk)


class Spy:
    """Wraps a sample_latents to keep what it returned (and the models it ran with)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, models, *args, **kwargs):
        out = self.fn(models, *args, **kwargs)
        self.calls.append((models, out))
        return out


def test_decode_chunks_skip_only_padding():
    # pad 15, 5 frames: padded 0..34, output 15..19 -> chunks [8, 16) and [16, 24) only
    assert P.decode_chunks(35, 15, 8) == [(8, 16), (16, 24)]
    assert P.decode_chunks(11, 2, 8) == [(0, 8), (8, 11)]  # the release's partial last chunk
    assert P.decode_chunks(5, 0, 2) == [(0, 2), (2, 4), (4, 5)]


@pytest.mark.parametrize("pad,frames", CASES)
def test_cli_and_library_path_decode_as_the_release(pad, frames, models_dir, tmp_path, monkeypatch):
    from hp_core import run as R
    image = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(portrait()).save(image)
    clip = write_clip(tmp_path / "drive.mp4", driving_frames(frames))
    spy = Spy(R.sample_latents)
    monkeypatch.setattr(R, "sample_latents", spy)
    written = []  # the uint8 frames handed to the output video's writer (before lossy encoding)
    real_write = V.VideoWriter.write

    def keep(self, chunk):
        if self.path.name == "out.mp4":
            written.append(np.asarray(chunk))
        return real_write(self, chunk)

    monkeypatch.setattr(V.VideoWriter, "write", keep)
    settings = P.Settings(steps=1, height=64, width=64, pad=pad, window=8, overlap=2)
    R.run(R.RunRequest(image=image, video=clip, out=tmp_path / "out.mp4", models_dirs=[models_dir],
                       settings=settings, preset="tiny", device="cpu", audio=False, use_arcface=False))
    out = {"frames": np.concatenate(written)}
    (models, padded), = spy.calls
    assert padded.shape[0] == frames + 2 * pad  # the padding reached the decode stage
    want = release_decode(models.vae, padded, pad)
    got = out["frames"].astype(np.int16)
    assert got.shape == (frames, 64, 64, 3)
    expected = (want.numpy() * 255).astype(np.int16)  # the release truncates to uint8
    assert np.abs(got - expected).max() <= 1
    # and the old order (cut first, chunk from output frame 0) is measurably different here
    old = (plain_decode(models.vae, P.unpad(padded, pad)).numpy() * 255).astype(np.int16)
    assert np.abs(old - expected).max() > 1


@pytest.mark.parametrize("pad,frames", CASES)
def test_node_path_decodes_as_the_release(pad, frames, models_dir, monkeypatch):
    monkeypatch.setenv("HP_MODELS_DIR", str(models_dir))
    loader = {n: f"hyportrait/{n}.pth" for n in ("unet", "dino", "image_proj", "motion_proj", "expression",
                                                 "headpose", "pose_guider")}
    models = M["HunyuanPortraitModelLoader"]().load(**loader, vae="vae/diffusion_pytorch_model.fp16.safetensors",
                                                    preset="tiny", precision="auto", keep_on_gpu="all")[0]
    feats = M["HunyuanPortraitFaceCropMotionEncoder"]().encode(
        driving_frames=as_image(driving_frames(frames)), detector="yolo", frame_limit=0, driving_face_index=-1,
        smoothing=0, edge_mode="auto")[0]
    motion = M["HunyuanPortraitMotionExtractor"]().extract(models, feats, -1, -1)[0]
    appearance = M["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), False, 64, "yolo")[0]
    spy = Spy(nodes.sampler.sample_latents)
    monkeypatch.setattr(nodes.sampler, "sample_latents", spy)
    latent = M["HunyuanPortraitSampler"]().sample(
        models, appearance, motion, sampler_name="euler", scheduler="karras", steps=1, appearance_cfg_min=2.0,
        appearance_cfg_max=2.0, motion_cfg_min=2.0, motion_cfg_max=2.0, seed=7, denoise=1.0, context_window=8,
        context_overlap=2, shift=3, padding=pad, motion_scale=1.0, noise_aug=0.0)[0]
    (_, padded), = spy.calls
    assert padded.shape[0] == frames + 2 * pad
    # core VAE Decode sees exactly the output frames' raw latents
    torch.testing.assert_close(latent["samples"], P.unpad(padded, pad) / 0.18215)
    got = M["HunyuanPortraitDecode"]().decode(models, latent, 8)[0]
    want = release_decode(models.vae, padded, pad)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain_decode(models.vae, P.unpad(padded, pad)), rtol=1e-3, atol=1e-3)
    # a LATENT without the padding (e.g. from core nodes) decodes as it is
    alone = M["HunyuanPortraitDecode"]().decode(models, {"samples": latent["samples"]}, 8)[0]
    torch.testing.assert_close(alone, plain_decode(models.vae, P.unpad(padded, pad)), rtol=1e-5, atol=1e-5)

    # noise augmentation on the node path: the conditioning latents of the noised reference, seeded by seed
    settings = P.Settings(noise_aug=0.25, seed=7, height=64, width=64)
    cond = M["HunyuanPortraitSampler"].conditioning_latents(models, appearance, settings)
    torch.testing.assert_close(cond, _noised_mode(models.vae, appearance.reference, 0.25, 7), rtol=1e-5, atol=1e-5)


def _noised_mode(vae, reference, strength, seed):
    """By hand, from the documented convention: randn like the reference from a CPU generator seeded
    seed + 2, times the strength, added to the reference, then the VAE encoder's mode."""
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        return vae.encode(reference + strength * noise).latent_dist.mode()


def test_noise_augmentation_noises_the_conditioning_latents_only(tiny_models):
    models = tiny_models
    ref = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    start, cond = P.encode_reference(models, ref, 0.3, seed=11)
    with torch.no_grad():
        clean = models.vae.encode(ref).latent_dist
    torch.testing.assert_close(start, clean.mean * 0.18215)  # the start latents stay clean (the release)
    torch.testing.assert_close(cond, _noised_mode(models.vae, ref, 0.3, 11), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, clean.mode(), rtol=1e-3, atol=1e-3)
    start0, cond0 = P.encode_reference(models, ref)  # 0 = the release: nothing added
    torch.testing.assert_close(cond0, clean.mode())
    # the portrait stage of every run passes the setting and the seed, and the UNet is told the strength
    from types import SimpleNamespace
    source = SimpleNamespace(
        appearance_224=torch.randn(1, 3, models.dims.appearance_size, models.dims.appearance_size),
        vae_reference=ref, identity=np.zeros(512, np.float32))
    settings = P.Settings(noise_aug=0.3, seed=11, height=64, width=64, pad=1)
    portrait = P.encode_portrait(models, source, (64, 64), settings.noise_aug, settings.seed)
    torch.testing.assert_close(portrait.cond_latents, cond)
    torch.testing.assert_close(portrait.ref_latents, start)
    conditions = P.build_conditions(portrait.tokens, torch.zeros(2, 4, 8), portrait.cond_latents, None, settings)
    assert float(conditions.added_time_ids[2]) == pytest.approx(0.3)
