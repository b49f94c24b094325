"""The maths of reward modelling, DPO and PPO as small pure functions on tensors (each has a
closed-form test in tests/test_rl_math.py). Shapes: B rows, K responses, T tokens; ``mask`` is 1 where
a position counts. Losses are returned per row (or per token) so callers choose the reduction: the
shared trainer sums and divides by the step's unit count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- reward model


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(r_c - r_r - margin) per pair (the margin asks for a gap of at least that much)."""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def plackett_luce_loss(scores: torch.Tensor, ranks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of a ranking with ties under Plackett-Luce, per row.

    ``scores`` [B, K], ``ranks`` [B, K] (1 = best), ``valid`` [B, K] (responses that exist). Each response
    above the worst level contributes ``s_i - logsumexp{s_j : rank_j >= rank_i}`` (ties share a
    denominator: Breslow's approximation). For K = 2 this is the Bradley-Terry loss.
    """
    valid = valid.bool()
    neg = torch.finfo(scores.dtype).min
    worst = torch.where(valid, ranks, torch.zeros_like(ranks)).amax(dim=1, keepdim=True)
    at_or_below = (ranks[:, None, :] >= ranks[:, :, None]) & valid[:, None, :]  # [B, i, j]: j in i's risk set
    lse = torch.logsumexp(torch.where(at_or_below, scores[:, None, :], neg), dim=2)
    terms = (scores - lse) * (valid & (ranks < worst))
    return -terms.sum(dim=1)


def centering_penalty(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(sum of a row's rewards)^2: keeps rewards centred on 0 (TRL's mean((r_c + r_r)^2) for pairs)."""
    return (scores * valid).sum(dim=1) ** 2


def ordered_pairs(ranks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, K, K] bool: response i is ranked strictly above response j (both valid)."""
    v = valid.bool()
    return (ranks[:, :, None] < ranks[:, None, :]) & v[:, :, None] & v[:, None, :]


def pair_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """[B, K, K]: P(i preferred to j) = sigmoid(s_i - s_j) under Bradley-Terry."""
    return torch.sigmoid(scores[:, :, None] - scores[:, None, :])


def calibration_bins(p_stated: torch.Tensor, bins: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin (count, summed confidence, summed correct) of probabilities given to the *stated* order of
    pairs. Confidence = max(p, 1 - p), binned over [0.5, 1]; correct = p > 0.5. ECE follows from them."""
    conf = torch.maximum(p_stated, 1 - p_stated)
    idx = ((conf - 0.5) * 2 * bins).long().clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins).to(p_stated.dtype)
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    correct = torch.bincount(idx, weights=(p_stated > 0.5).to(p_stated.dtype), minlength=bins)
    return count, conf_sum, correct


def expected_calibration_error(count: list[float], conf_sum: list[float], correct: list[float]) -> float | None:
    n = sum(count)
    if n == 0:
        return None
    return sum(abs(c - a) for c, a, k in zip(conf_sum, correct, count, strict=True) if k) / n


# ---------------------------------------------------------------- log-probabilities


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label_t) from logits [B, T, V] aligned with labels [B, T] (labels -100 give 0)."""
    safe = labels.clamp(min=0)
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, safe[..., None]).squeeze(-1)
    return logp * (labels >= 0)


# ---------------------------------------------------------------- DPO

DPO_LOSSES = ("sigmoid", "ipo")


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, kind: str = "sigmoid",
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reward_chosen, reward_rejected) per pair from sequence log-probabilities.

    sigmoid (Rafailov et al.): -log sigmoid(beta h), h = (pi_c - ref_c) - (pi_r - ref_r), with
    conservative label smoothing eps: -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h).
    ipo (Azar et al.): (h - 1 / (2 beta))^2, on per-token mean log-probabilities (the caller's choice).
    Implicit rewards: beta (pi - ref).
    """
    h = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)
    if kind == "sigmoid":
        loss = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif kind == "ipo":
        loss = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"DPO loss must be one of {DPO_LOSSES}, got {kind!r}")
    return loss, beta * (pi_chosen - ref_chosen).detach(), beta * (pi_rejected - ref_rejected).detach()


# ---------------------------------------------------------------- PPO

KL_ESTIMATORS = ("k1", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman's k1, k3).

    k1 = log pi - log ref (unbiased, can be negative); k3 = (r - 1) - log r with r = ref / pi
    (unbiased, never negative, lower variance)."""
    log_ratio = ref_logp - logp
    if kind == "k1":
        return -log_ratio
    if kind == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"KL estimator must be one of {KL_ESTIMATORS}, got {kind!r}")


@dataclass
class AdaptiveKL:
    """Ziegler et al.'s controller: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon.
    ``target`` None: a fixed coefficient."""

    value: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float, n_steps: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1, -0.2), 0.2)
            self.value *= 1 + error * n_steps / self.horizon
        return self.value


def sequence_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards [B, T]: -kl_coef * KL at every response token, plus the sequence's score at its
    last response token."""
    rewards = -kl_coef * kl * mask
    last = (mask.cumsum(dim=1) == mask.sum(dim=1, keepdim=True)) & mask.bool()  # the last counted position
    return rewards + score[:, None] * last


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation over the masked positions (a row's
    response tokens, contiguous); the value after the last token is 0."""
    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    running = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    for i in reversed(range(t)):
        m = mask[:, i]
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        running = torch.where(m.bool(), delta + gamma * lam * running, running)
        adv[:, i] = running * m
        next_value = torch.where(m.bool(), values[:, i], next_value)
    return adv, (adv + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = ((x - mean) ** 2 * mask).sum() / n.clamp(min=1)
    return var * n / (n - 1) if unbiased and n > 1 else var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions (mean kept when ``shift_mean`` is False); 0 elsewhere."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token clipped surrogate loss, per-token clipped indicator): max(-A r, -A clip(r, 1-e, 1+e))."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    return torch.maximum(unclipped, clipped) * mask, (clipped > unclipped).to(logp.dtype) * mask


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> torch.Tensor:
    """Per-token 0.5 max((v - R)^2, (v_clipped - R)^2), v_clipped within ``clip`` of the rollout's value."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2) * mask


def score_penalties(score: torch.Tensor, lengths: torch.Tensor, has_eos: torch.Tensor, *, max_len: int,
                    missing_eos: float = 0.0, overlong_buffer: int = 0, overlong_factor: float = 0.0) -> torch.Tensor:
    """The score less a penalty for a missing end of sequence and DAPO's soft overlong penalty: linear
    from 0 at ``max_len - overlong_buffer`` tokens to ``overlong_factor`` at ``max_len``."""
    out = score - missing_eos * (~has_eos.bool()).to(score.dtype)
    if overlong_buffer > 0 and overlong_factor:
        over = (lengths.to(score.dtype) - (max_len - overlong_buffer)).clamp(min=0)
        out = out - overlong_factor * over / overlong_buffer
    return out


def response_mask(tokens: torch.Tensor, stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [B, T] of the response up to and including its first stop token, has_stop [B])."""
    is_stop = torch.isin(tokens, torch.tensor(stop_ids, device=tokens.device)) if stop_ids else \
        torch.zeros_like(tokens, dtype=torch.bool)
    before = is_stop.long().cumsum(dim=1) - is_stop.long()  # stops strictly before each position
    return (before == 0).long(), is_stop.any(dim=1)
