"""The report's caveat when an augmentation's models vary much more than the null models: there a
model-level difference may come from the spread of its seeds, not from a shift."""

import statistics

import pandas as pd

from augcam.analysis.report_controls import small_effect_caveats, spread_caveats

NULL_MAD = [0.1 + i * 1e-3 for i in range(12)]


def _table(aug_pearson, null_pearson, significant):
    """Model-level rows with the spreads of the given model summaries (sample SDs by the standard
    library); MAD's spreads match in both groups."""
    spreads = {
        "pearson": (statistics.stdev(aug_pearson), statistics.stdev(null_pearson)),
        "mad": (statistics.stdev([0.1, 0.105, 0.11]), statistics.stdev(NULL_MAD)),
    }
    return pd.DataFrame(
        [
            {
                "augmentation": "wide",
                "metric": metric,
                "significant": significant,
                "sd": sd,
                "null_sd": null_sd,
                "n_models": 3,
            }
            for metric, (sd, null_sd) in spreads.items()
        ]
    )


NULL_PEARSON = [0.880 + i * 1e-3 for i in range(12)]


def test_a_difference_carried_by_a_wide_spread_gets_a_caveat_naming_the_metric():
    (sentence,) = spread_caveats(_table([0.80, 0.85, 0.90], NULL_PEARSON, True))
    assert sentence.startswith("Caveat for wide:") and "Pearson (14×)" in sentence and "MAD" not in sentence


def test_no_caveat_when_the_spreads_match_or_nothing_differs():
    assert spread_caveats(_table([0.880, 0.884, 0.888], NULL_PEARSON, True)) == []
    assert spread_caveats(_table([0.8, 0.85, 0.9], NULL_PEARSON, False)) == []


def test_null_models_without_spread_give_an_infinite_ratio():
    (sentence,) = spread_caveats(_table([0.80, 0.85, 0.90], [0.88] * 12, True))
    assert "Pearson (∞×)" in sentence


def test_a_significant_shift_under_two_null_model_sds_gets_a_caveat():
    table = pd.DataFrame(
        [
            {"augmentation": "slight", "metric": "pearson", "significant": True, "standardized_effect": -1.3},
            {"augmentation": "slight", "metric": "mad", "significant": True, "standardized_effect": 2.5},
            {"augmentation": "slight", "metric": "msd", "significant": False, "standardized_effect": 0.4},
            {"augmentation": "far", "metric": "pearson", "significant": True, "standardized_effect": -30.0},
        ]
    )
    (sentence,) = small_effect_caveats(table)
    assert sentence.startswith("Caveat for slight: in Pearson (1.3 SDs) the shift is under 2 null-model")
    assert "MAD" not in sentence and "MSD" not in sentence


def test_models_that_are_nearly_one_model_get_a_note_on_how_they_were_counted():
    base = {"augmentation": "fixed", "significant": True, "null_sd": 0.002, "n_models": 3}
    table = pd.DataFrame(
        [
            {**base, "metric": "pearson", "sd": 0.0, "effective_models": 1.0},
            {**base, "metric": "mad", "sd": 0.0015, "effective_models": 1.9},
            {**base, "metric": "msd", "sd": 0.0009, "effective_models": 1.26},
        ]
    )
    (sentence,) = spread_caveats(table)
    assert sentence.startswith("Note on fixed: its models vary less than half as much as the null models in")
    assert "in Pearson, MSD, so its seeds trained (nearly) one model" in sentence
    assert "MAD" not in sentence and "counted them as 1.0–1.3 independent models, not 3" in sentence
