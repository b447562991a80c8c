"""The release's denoising loop and decode written plainly, as a second implementation to check ours against.

Per-window Euler stepping with the stepped latents averaged per frame, pose features for the whole video
computed up front, everything on one device: what the release does, without any of our reuse. The decode:
every chunk of the padded sequence from its first frame, the padding cut after. Used by the sampling,
decode and node tests and by benchmarks/bench_pipeline.py as the reference path.
"""

import math

import torch


@torch.no_grad()
def release_loop(models, cond, ref, settings, noise, per_step=None):
    """The release's loop, written plainly: per-window Euler steps, stepped latents averaged per frame."""
    sig = settings.sigma_schedule().tolist()
    steps = len(sig) - 1
    g1 = torch.linspace(*settings.appearance_cfg, steps).tolist()
    g2 = torch.linspace(*settings.motion_cfg, steps).tolist()
    length, win, stride = cond.length, settings.window, settings.window - settings.overlap
    unet, pg = models.unet, models.pose_guider
    h, w = ref.shape[-2:]
    pose = cond.pose if cond.pose is not None else torch.zeros(length, 3, h * 8, w * 8)
    pose_fea = pg(pose)  # the release runs the guider on the whole video at once
    lat_all = ref.unsqueeze(1) + sig[0] * noise
    image_latents = torch.cat([torch.zeros_like(cond.cond_latents), cond.cond_latents, cond.cond_latents])
    app = cond.appearance
    shift = 0
    for i in range(steps):
        s, s_next = sig[i], sig[i + 1]
        pred = torch.zeros_like(lat_all)
        counter = torch.zeros(length)
        for start in range(0, length, stride):
            start -= shift
            idx = [(start + j) % length for j in range(win)]
            lat = lat_all[:, idx]
            inp = torch.cat([lat] * 3) / math.sqrt(s * s + 1)
            inp = torch.cat([inp, image_latents.unsqueeze(1).repeat(1, win, 1, 1, 1)], dim=2)
            mot = cond.motion[idx]
            zero_app, zero_mot = torch.zeros(win, *app.shape[1:]), torch.zeros_like(mot)
            ctx = torch.stack([torch.cat([zero_app, zero_mot], 1),
                               torch.cat([app.expand(win, -1, -1), zero_mot], 1),
                               torch.cat([app.expand(win, -1, -1), mot], 1)])
            ids = cond.added_time_ids.reshape(1, 3).repeat(3, 1)
            v = unet(inp, 0.25 * math.log(s), ctx, ids, pose_fea[idx].unsqueeze(0).repeat(3, 1, 1, 1, 1))
            vu, va, vf = v.chunk(3)
            vg = vu + g1[i] * (va - vu) + g2[i] * (vf - va)
            den = vg * (-s / math.sqrt(s * s + 1)) + lat / (s * s + 1)
            lat_next = lat + (lat - den) / s * (s_next - s)
            for j, p in enumerate(idx):
                pred[:, p] += lat_next[:, j]
                counter[p] += 1
        shift = (shift + settings.shift) % win
        lat_all = pred / counter.view(1, -1, 1, 1, 1)
        if per_step is not None:
            per_step(i)
    return lat_all[0, settings.pad:length - settings.pad]


@torch.no_grad()
def release_decode(vae, padded: torch.Tensor, pad: int = 0, chunk: int = 8) -> torch.Tensor:
    """The release's decode of scaled latents (F, 4, h, w): vae.decode of latents / 0.18215, ``chunk``
    frames at a time from padded frame 0 (num_frames = the chunk's length), * 0.5 + 0.5 clamped, the
    ``pad`` frames on each side cut after; (F - 2 pad, H, W, 3)."""
    z = padded / 0.18215
    out = [vae.decode(z[i:i + chunk], num_frames=z[i:i + chunk].shape[0]).sample for i in range(0, z.shape[0], chunk)]
    frames = (torch.cat(out).float() * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    return frames[pad:z.shape[0] - pad]
