"""Sigma schedules against hand-derived values and the release's own 25 sigmas."""

import math

import pytest
import torch

from hp_core import pipeline as P
from hp_core.errors import HPError
from hp_core.sampling import SCHEDULES, custom_sigmas, get_sigmas
from hp_core.sampling.v_prediction import c_noise

# The release's scheduler (EulerDiscreteScheduler subclass under diffusers 0.29.0, SVD-XT scheduler config)
# after set_timesteps(25): its float32 sigmas and UNet timesteps, recorded from a run of the release code.
RELEASE_SIGMAS_25 = [
    700.0, 545.729248046875, 421.5691223144531, 322.45367431640625, 244.0230712890625,
    182.54713439941406, 134.8544464111328, 98.26713562011719, 70.54084014892578, 49.809791564941406,
    34.536739349365234, 23.467512130737305, 15.589967727661133, 10.097129821777344, 6.3542656898498535,
    3.869697332382202, 2.2691164016723633, 1.2731772661209106, 0.6781460046768188, 0.33937814831733704,
    0.15740464627742767, 0.06639907509088516, 0.02480258047580719, 0.007882495410740376,
    0.0020000000949949026, 0.0,
]
RELEASE_TIMESTEPS_25 = [
    1.6377700567245483, 1.575530767440796, 1.5109959840774536, 1.443989872932434, 1.3743157386779785,
    1.3017520904541016, 1.2260489463806152, 1.1469224691390991, 1.064047932624817, 0.9770529270172119,
    0.8855059146881104, 0.7889042496681213, 0.6866568922996521, 0.5780627727508545, 0.46228158473968506,
    0.3382940888404846, 0.20484763383865356, 0.06037889048457146, -0.09709817171096802,
    -0.27016007900238037, -0.46223384141921997, -0.6780180335044861, -0.9242019057273865,
    -1.2107776403427124, -1.553652048110962,
]


def karras_by_hand(n, smin, smax, rho):
    hi, lo = smax ** (1 / rho), smin ** (1 / rho)
    if n == 1:
        return [smax, 0.0]
    return [(hi + (i / (n - 1)) * (lo - hi)) ** rho for i in range(n)] + [0.0]


def test_karras_defaults_are_the_release_sigmas_bit_for_bit():
    sig = get_sigmas("karras", 25)
    assert sig.dtype == torch.float32 and sig.shape == (26,)
    assert sig.tolist() == RELEASE_SIGMAS_25


def test_release_unet_timesteps_are_quarter_log_sigma():
    sig = get_sigmas("karras", 25)
    t = torch.stack([c_noise(s) for s in sig[:-1]])
    assert t.dtype == torch.float32
    assert t.tolist() == RELEASE_TIMESTEPS_25


@pytest.mark.parametrize("n,smin,smax,rho", [(25, 0.002, 700.0, 7.0), (7, 0.03, 14.6, 7.0), (3, 0.1, 80.0, 3.0), (1, 0.002, 700.0, 7.0)])
def test_karras_matches_the_formula(n, smin, smax, rho):
    expected = karras_by_hand(n, smin, smax, rho)
    got = get_sigmas("karras", n, sigma_min=smin, sigma_max=smax, rho=rho).double().tolist()
    assert len(got) == n + 1 and got[-1] == 0.0
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, rel=1e-6)


def test_karras_agrees_with_diffusers_euler_scheduler():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
        use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous",
    )
    sched.set_timesteps(25)
    assert torch.equal(get_sigmas("karras", 25), sched.sigmas.float())


def test_exponential_is_geometric():
    n, smin, smax = 6, 0.05, 50.0
    got = get_sigmas("exponential", n, sigma_min=smin, sigma_max=smax).double().tolist()
    ratio = (smin / smax) ** (1 / (n - 1))
    expected = [smax * ratio**i for i in range(n)] + [0.0]
    assert got == pytest.approx(expected, rel=1e-6)


AYS = [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034]


def test_ays_svd_ten_steps_is_the_published_table_ending_in_zero():
    got = get_sigmas("ays_svd", 10).double().tolist()
    assert got == pytest.approx(AYS + [0.0], rel=1e-6)


def test_ays_svd_twenty_steps_inserts_geometric_means():
    # On the normalised step axis the 21 new points hit every old point at even positions; odd positions
    # fall half-way between two old points, which is their geometric mean in log-linear interpolation.
    table = AYS + [0.002]
    expected = []
    for k in range(10):
        expected += [table[k], math.sqrt(table[k] * table[k + 1])]
    expected += [0.0]
    got = get_sigmas("ays_svd", 20).double().tolist()
    assert got == pytest.approx(expected, rel=1e-6)


def test_ays_svd_five_steps_takes_every_other_level():
    got = get_sigmas("ays_svd", 5).double().tolist()
    assert got == pytest.approx([700.0, 15.886, 4.248, 0.981, 0.173, 0.0], rel=1e-6)


def test_custom_list_appends_zero_and_keeps_values():
    got = get_sigmas([14.6, 3.0, 0.5], None)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx([14.6, 3.0, 0.5, 0.0])
    assert custom_sigmas(torch.tensor([2.0, 1.0, 0.0])).tolist() == [2.0, 1.0, 0.0]
    assert get_sigmas([2.0, 1.0], 2).shape == (3,)


@pytest.mark.parametrize(
    "bad", [[], [0.0], [1.0, 2.0], [3.0, 3.0, 1.0], [3.0, -1.0], [5.0, float("nan")], [float("inf"), 1.0], [2.0, 0.0, 1.0]]
)
def test_custom_list_rejects_bad_values(bad):
    with pytest.raises(HPError):
        get_sigmas(bad, None)


def test_bad_names_steps_and_ranges_raise():
    with pytest.raises(HPError):
        get_sigmas("nope", 10)
    for steps in (0, -3, 2.5):  # the steps rule lives in Settings (tests/test_run.py)
        assert P.Settings(steps=steps).problems()[0][0] == ("steps",)
    with pytest.raises(HPError):
        get_sigmas("exponential", 5, sigma_min=10.0, sigma_max=1.0)
    with pytest.raises(HPError):
        get_sigmas([3.0, 1.0], 5)  # list gives 2 steps
    assert set(SCHEDULES) == {"karras", "exponential", "ays_svd"}
