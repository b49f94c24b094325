"""Closed-form tests of every reward-model, DPO and PPO maths piece (torchtune's style: known answers
worked out by hand in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from corpus.plugins import rl_math as M


def t(*x):
    return torch.tensor(x, dtype=torch.float64)


def sig(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- reward model


def test_bradley_terry_with_and_without_margin():
    loss = M.bradley_terry_loss(t(2.0, 0.0), t(1.0, 0.0))
    assert loss.tolist() == pytest.approx([-math.log(sig(1.0)), math.log(2)])
    # a margin of 1 asks for a gap of 1: a gap of exactly 1 costs what a tie costs without margin
    assert M.bradley_terry_loss(t(2.0), t(1.0), t(1.0)).item() == pytest.approx(math.log(2))


def test_plackett_luce_closed_form_and_reduction_to_bradley_terry():
    s = t(0.5, -0.2, 1.0)[None]
    got = M.plackett_luce_loss(s, torch.tensor([[1, 2, 3]]), torch.ones(1, 3)).item()
    a, b, c = 0.5, -0.2, 1.0
    want = -(a - math.log(math.exp(a) + math.exp(b) + math.exp(c))) - (b - math.log(math.exp(b) + math.exp(c)))
    assert got == pytest.approx(want)
    # K = 2 is Bradley-Terry; the order of the responses in the row does not matter
    pl = M.plackett_luce_loss(t(0.3, 1.1)[None], torch.tensor([[2, 1]]), torch.ones(1, 2)).item()
    assert pl == pytest.approx(M.bradley_terry_loss(t(1.1), t(0.3)).item())


def test_plackett_luce_ties_and_padding():
    # ranks (1, 2, 2): the best against both tied ones, nothing between the tied pair
    s = t(0.5, -0.2, 1.0, 9.0)[None]
    valid = torch.tensor([[1, 1, 1, 0]])
    got = M.plackett_luce_loss(s, torch.tensor([[1, 2, 2, 0]]), valid).item()
    a, b, c = 0.5, -0.2, 1.0
    assert got == pytest.approx(-(a - math.log(math.exp(a) + math.exp(b) + math.exp(c))))
    # all tied: no information, no loss
    assert M.plackett_luce_loss(t(1.0, 2.0)[None], torch.tensor([[1, 1]]), torch.ones(1, 2)).item() == 0


def test_centering_and_pairs():
    assert M.centering_penalty(t(1.0, 2.0, 5.0)[None], torch.tensor([[1, 1, 0]])).item() == 9
    pairs = M.ordered_pairs(torch.tensor([[2, 1, 2]]), torch.ones(1, 3))
    assert pairs[0].tolist() == [[False, False, False], [True, False, True], [False, False, False]]


def test_calibration_bins_and_ece():
    p = t(0.55, 0.95, 0.3, 0.92)  # confidences 0.55, 0.95, 0.7, 0.92; correct 1, 1, 0, 1
    count, conf, correct = M.calibration_bins(p, bins=5)
    assert count.tolist() == [1, 1, 0, 0, 2]
    assert conf.tolist() == pytest.approx([0.55, 0.7, 0, 0, 1.87])
    assert correct.tolist() == [1, 0, 0, 0, 2]
    # |0.55 - 1| + |0.7 - 0| + |1.87 - 2| over 4
    assert M.expected_calibration_error(count.tolist(), conf.tolist(), correct.tolist()) == pytest.approx(1.28 / 4)


def test_token_logprobs():
    logits = torch.log(t(0.5, 0.25, 0.25))[None, None].repeat(1, 2, 1)
    got = M.token_logprobs(logits, torch.tensor([[1, -100]]))
    assert got[0].tolist() == pytest.approx([math.log(0.25), 0.0])


# ---------------------------------------------------------------- DPO


def test_dpo_sigmoid_and_ipo():
    # h = (-1 - -2) - (-3 - -2) = 2
    loss, rc, rr = M.dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.1)
    assert loss.item() == pytest.approx(-math.log(sig(0.2)))
    assert (rc.item(), rr.item()) == pytest.approx((0.1, -0.1))
    smoothed, _, _ = M.dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.1, label_smoothing=0.25)
    assert smoothed.item() == pytest.approx(-0.75 * math.log(sig(0.2)) - 0.25 * math.log(sig(-0.2)))
    ipo, _, _ = M.dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.1, kind="ipo")
    assert ipo.item() == pytest.approx((2 - 5) ** 2)
    # the policy equal to the reference: log 2 whatever beta
    same, _, _ = M.dpo_loss(t(-1.0), t(-3.0), t(-1.0), t(-3.0), beta=0.5)
    assert same.item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="sigmoid"):
        M.dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.1, kind="hinge")


# ---------------------------------------------------------------- PPO


def test_kl_estimators():
    logp, ref = t(math.log(0.5)), t(math.log(0.25))
    assert M.kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # r = ref / pi = 0.5: (r - 1) - log r
    assert M.kl_estimate(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    assert M.kl_estimate(ref, logp, "k3").item() == pytest.approx(1 - math.log(2))
    assert M.kl_estimate(logp, logp, "k3").item() == 0


def test_kl_estimators_are_unbiased_in_expectation():
    p, q = t(0.7, 0.2, 0.1), t(0.4, 0.4, 0.2)
    exact = (p * (p / q).log()).sum().item()
    for kind in ("k1", "k3"):
        assert (p * M.kl_estimate(p.log(), q.log(), kind)).sum().item() == pytest.approx(exact)


def test_adaptive_kl_controller():
    c = M.AdaptiveKL(0.1, target=1.0, horizon=100)
    assert c.update(1.5, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped to +0.2
    c = M.AdaptiveKL(0.1, target=1.0, horizon=100)
    assert c.update(0.9, 10) == pytest.approx(0.1 * (1 - 0.1 * 10 / 100))
    assert M.AdaptiveKL(0.1).update(50.0, 10) == 0.1  # fixed without a target


def test_sequence_rewards_put_the_score_on_the_last_token():
    kl = t(0.1, 0.2, 0.3, 0.4)[None]
    mask = torch.tensor([[1, 1, 1, 0]])
    got = M.sequence_rewards(t(2.0), kl, mask, kl_coef=0.5)
    assert got[0].tolist() == pytest.approx([-0.05, -0.1, -0.15 + 2.0, 0.0])


def test_gae_closed_form():
    # gamma = 0.5, lam = 0.5; rewards (0, 0, 1) on values (0, 0, 0): A_2 = 1, A_1 = 0.25, A_0 = 0.0625
    adv, ret = M.gae(t(0.0, 0.0, 1.0)[None], t(0.0, 0.0, 0.0)[None], torch.ones(1, 3), 0.5, 0.5)
    assert adv[0].tolist() == pytest.approx([0.0625, 0.25, 1.0])
    assert ret[0].tolist() == pytest.approx([0.0625, 0.25, 1.0])
    # with values: delta_t = r_t + g V_{t+1} - V_t; lam = 1, gamma = 1: A_t = sum of later rewards - V_t
    adv, ret = M.gae(t(1.0, 2.0, 3.0)[None], t(0.5, 1.0, 1.5)[None], torch.ones(1, 3), 1.0, 1.0)
    assert adv[0].tolist() == pytest.approx([6 - 0.5, 5 - 1.0, 3 - 1.5])
    assert ret[0].tolist() == pytest.approx([6.0, 5.0, 3.0])
    # masked positions (the prompt, padding) take no part: the same row shifted right
    adv2, _ = M.gae(t(9.0, 1.0, 2.0, 3.0, 9.0)[None], t(9.0, 0.5, 1.0, 1.5, 9.0)[None],
                    torch.tensor([[0, 1, 1, 1, 0]]), 1.0, 1.0)
    assert adv2[0].tolist() == pytest.approx([0, 5.5, 4.0, 1.5, 0])


def test_gae_gamma_lambda_pattern():
    # only the last reward is 1, values 0: A_t = (gamma lam)^(T-1-t)
    g, lam = 0.9, 0.8
    adv, _ = M.gae(t(0, 0, 0, 1.0)[None], torch.zeros(1, 4, dtype=torch.float64), torch.ones(1, 4), g, lam)
    assert adv[0].tolist() == pytest.approx([(g * lam) ** 3, (g * lam) ** 2, g * lam, 1.0])


def test_masked_statistics_and_whiten():
    x, mask = t(1.0, 2.0, 3.0, 100.0), t(1, 1, 1, 0)
    assert M.masked_mean(x, mask).item() == 2
    assert M.masked_var(x, mask).item() == 1  # unbiased: (1 + 0 + 1) / 2
    assert M.masked_var(x, mask, unbiased=False).item() == pytest.approx(2 / 3)
    w = M.whiten(x, mask)
    assert w.tolist() == pytest.approx([-1, 0, 1, 0], abs=1e-6)
    assert M.whiten(x, mask, shift_mean=False).tolist() == pytest.approx([1, 2, 3, 0], abs=1e-6)


def test_policy_loss_clipping():
    # ratio e^0.5 = 1.65 with A = 1 is clipped to 1.2: loss -1.2 (torchtune's known case)
    loss, clipped = M.policy_loss(t(0.5), t(0.0), t(1.0), t(1.0), clip=0.2)
    assert (loss.item(), clipped.item()) == pytest.approx((-1.2, 1.0))
    # with A = -1 the unclipped term is the larger: e^0.5, not clipped
    loss, clipped = M.policy_loss(t(0.5), t(0.0), t(-1.0), t(1.0), clip=0.2)
    assert (loss.item(), clipped.item()) == pytest.approx((math.exp(0.5), 0.0))
    # ratio 1: the loss is -A, and masked tokens give 0
    loss, _ = M.policy_loss(t(0.0, 0.0), t(0.0, 0.0), t(2.0, 5.0), t(1, 0), clip=0.2)
    assert loss.tolist() == [-2.0, 0.0]


def test_value_loss_clipping():
    # v moved from 0 to 1 with clip 0.2: clipped v = 0.2; returns 2: max((1-2)^2, (0.2-2)^2)/2 = 1.62
    assert M.value_loss(t(1.0), t(0.0), t(2.0), t(1.0), clip=0.2).item() == pytest.approx(0.5 * 1.8**2)
    # returns 1: the unclipped error is 0 but the clipped one is 0.8
    assert M.value_loss(t(1.0), t(0.0), t(1.0), t(1.0), clip=0.2).item() == pytest.approx(0.5 * 0.64)


def test_score_penalties():
    score = t(1.0, 1.0, 1.0)
    got = M.score_penalties(score, torch.tensor([4, 10, 9]), torch.tensor([True, False, True]), max_len=10,
                            missing_eos=2.0, overlong_buffer=4, overlong_factor=1.0)
    # row 1: no eos (-2) and 4 over 6 of a buffer of 4 (-1); row 2: 3 over (-0.75)
    assert got.tolist() == pytest.approx([1.0, -2.0, 0.25])


def test_response_mask_stops_after_the_first_stop_token():
    toks = torch.tensor([[5, 6, 2, 7, 2], [5, 6, 7, 8, 9]])
    mask, has = M.response_mask(toks, [2])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert has.tolist() == [True, False]
