"""What a study's design can show before it is run: the model-level test's limits.

An exact permutation test of k models against m null models has C(k+m, k) equally likely splits,
so its one-sided p-value (the model-level test asks whether the augmentation's models lie further
from the baseline than the null models) cannot go below 1 / C(k+m, k) (`min_p_value`): 0.05 for 3
against 3 (so never p < 0.05), 0.012 for 3 against 6, 0.0022 for 3 against 12.
Benjamini–Hochberg over a table of A augmentations × M metrics then asks more: an augmentation
whose M rows all sit at that floor passes on its own only when min_p · A < alpha (its M rows are
ranked first, and the M-th is compared with alpha · M / (A · M)). `design_limits` says both,
with the counts of null models or seeds that would do, for `augcam validate` and the report.

An augmentation whose seeds train one model (a deterministic one: split, init and order are shared
by design) is counted once by the model-level test's clustered t-test
(`augcam.analysis.model_tests.clustered_t_test`), so its detectable shift is that of one model
against m null models (`detectable_effect_one_model`), whatever the number of seeds.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "TIE_TOLERANCE",
    "all_splits",
    "min_p_value",
    "null_models_needed",
    "detectable_effect",
    "detectable_effect_one_model",
    "design_limits",
]

ONE_SIDED = "one-sided permutation test: further from the baseline than the null models"

# Splits whose statistic differs from the observed one by less than this share of the data's scale
# count as ties: sums taken in another order differ in the last bits, and a tie must never be lost.
TIE_TOLERANCE = 1e-12


def all_splits(k: int, m: int) -> np.ndarray:
    """Every choice of k positions out of k + m, one per row: (C(k+m, k), k)."""
    flat = itertools.chain.from_iterable(itertools.combinations(range(k + m), k))
    return np.fromiter(flat, dtype=np.intp).reshape(-1, k)


def min_p_value(k: int, m: int) -> float:
    """The smallest one-sided p-value a permutation test of k models against m can give:
    1 / C(k+m, k) (the one extreme split); 1.0 when either group is empty."""
    if k < 1 or m < 1:
        return 1.0
    return 1.0 / math.comb(k + m, k)


def null_models_needed(k: int, alpha: float = 0.05, augmentations: int = 1) -> int:
    """The fewest null models against which k models can reach p < alpha, and, with
    `augmentations` > 1, stay below it after Benjamini–Hochberg over that many augmentations
    when every one of the augmentation's rows sits at the floor (min_p · augmentations < alpha)."""
    if k < 1:
        raise ValueError(f"need at least one model per augmentation, got {k}")
    m = 1
    while min_p_value(k, m) * max(augmentations, 1) >= alpha:
        m += 1
    return m


def detectable_effect(
    k: int, m: int, alpha: float = 0.05, power: float = 0.8, n_sim: int = 2000, seed: int = 0
) -> float:
    """The shift of an augmentation's model summaries away from the baseline, in standard deviations
    of the models' spread, that the one-sided permutation test finds (p < alpha, before any
    correction) with probability `power`, for normally distributed summaries with the same spread
    in both groups. Simulated with the exact test up to 5,000 splits, the normal approximation
    beyond; inf when the design cannot reach alpha."""
    if min_p_value(k, m) >= alpha:
        return float("inf")
    if math.comb(k + m, k) > 5_000:
        from scipy.stats import norm

        return float((norm.ppf(1 - alpha) + norm.ppf(power)) * math.sqrt(1 / k + 1 / m))
    splits = all_splits(k, m)
    noise = np.random.default_rng(seed).standard_normal((n_sim, k + m))
    shift_a = np.r_[np.ones(k), np.zeros(m)]

    def rejection_rate(shift: float) -> float:
        data = noise + shift * shift_a
        sums = data[:, splits].sum(axis=2)  # (n_sim, splits)
        observed = data[:, :k].sum(axis=1, keepdims=True)
        tolerance = TIE_TOLERANCE * np.abs(data).max(axis=1, keepdims=True) * k
        return float(np.mean((sums >= observed - tolerance).mean(axis=1) < alpha))

    lo, hi = 0.0, 1.0
    while rejection_rate(hi) < power:
        lo, hi = hi, 2 * hi
        if hi > 1e3:
            return float("inf")
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rejection_rate(mid) < power else (lo, mid)
    return hi


def detectable_effect_one_model(m: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The shift, in null-model standard deviations, at which one model (or k identical ones) is
    found further from the baseline than m null models with probability `power`: the one-sided
    t-test of one value against m (m − 1 degrees of freedom) has the noncentral t distribution with
    noncentrality shift / √(1 + 1/m) under that shift. inf for fewer than 2 null models."""
    if m < 2:
        return float("inf")
    from scipy import optimize, stats

    critical = stats.t(m - 1).ppf(1 - alpha)
    scale = math.sqrt(1 + 1 / m)

    def missed(shift: float) -> float:
        return float(stats.nct(m - 1, shift / scale).sf(critical)) - power

    return float(optimize.brentq(missed, 0.0, 100.0))


def design_limits(k: int, m: int, alpha: float = 0.05, augmentations: int = 1) -> dict:
    """What a design of k models per augmentation against m null models, with `augmentations`
    augmentations in the table, can show:

    - `min_p`: the smallest (one-sided) p-value; `reachable`: min_p < alpha;
    - `null_models_needed`, `seeds_needed`: the fewest null models for k seeds / seeds for m null
      models that reach alpha at all;
    - `detectable_effect`: the shift, in null-model standard deviations, found with 80% power;
      `detectable_effect_one_model`: the same for an augmentation whose seeds train one model;
    - `alone_reachable`: whether one augmentation whose rows all sit at the floor passes
      Benjamini–Hochberg over the table on its own (min_p · augmentations < alpha), and
      `null_models_needed_alone`, the fewest null models for which it would;
    - `message`: what to tell the user, for `augcam validate` and the report."""
    augmentations = max(augmentations, 1)
    min_p = min_p_value(k, m)
    reachable = min_p < alpha
    null_needed = null_models_needed(k, alpha) if k >= 1 else None
    seeds = null_models_needed(m, alpha) if m >= 1 else None  # the test is symmetric in the groups
    alone_needed = null_models_needed(k, alpha, augmentations) if k >= 1 else None
    alone = min_p * augmentations < alpha
    effect = detectable_effect(k, m, alpha) if k >= 1 and m >= 1 else float("inf")
    one_model = detectable_effect_one_model(m, alpha)
    design = f"{k} model{'s' if k != 1 else ''} per augmentation against {m} null model{'s' if m != 1 else ''}"
    on_its_own = (
        f"; {alone_needed} null models find one augmentation on its own among {augmentations}"
        if alone_needed is not None and null_needed is not None and alone_needed > null_needed
        else ""
    )
    if k < 1 or m < 1:
        message = (
            f"{design}: no model-level test is possible; train at least "
            f"{null_models_needed(max(k, 1), alpha)} null models (controls.null_models){on_its_own}"
        )
    elif not reachable:
        message = (
            f"{design}: the smallest p-value this design can reach is {min_p:.2g} ({ONE_SIDED}), so it cannot "
            f"reach p < {alpha:g} by design: train at least {null_needed} null models (controls.null_models) "
            f"or {seeds} seeds{on_its_own}."
        )
    else:
        message = (
            f"{design}: the smallest p-value this design can reach is {min_p:.2g} ({ONE_SIDED}); a difference "
            "is found only when the augmentation's models lie (almost) all further from the baseline than the "
            f"null models (a shift of about {effect:.1f} standard deviations of the null models is found 80% "
            f"of the time; {one_model:.1f} for an augmentation whose seeds train one model, such as a "
            "deterministic one, which the test counts once)."
        )
        if not alone:
            message += (
                f" With {augmentations} augmentations, Benjamini–Hochberg over the table lets an augmentation "
                f"through only when others differ too (it needs min_p × {augmentations} < {alpha:g}): train at "
                f"least {alone_needed} null models (controls.null_models) to find one on its own."
            )
    return {
        "k": k,
        "m": m,
        "alpha": alpha,
        "augmentations": augmentations,
        "min_p": min_p,
        "reachable": reachable,
        "null_models_needed": null_needed,
        "seeds_needed": seeds,
        "detectable_effect": effect,
        "detectable_effect_one_model": one_model,
        "alone_reachable": reachable and alone,
        "null_models_needed_alone": alone_needed,
        "message": message,
    }
