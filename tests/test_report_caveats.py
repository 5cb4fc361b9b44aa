"""The report's caveat when an augmentation's models vary much more than the null models: there a
model-level difference may come from the spread of its seeds, not from a shift."""

import pandas as pd

from augcam.analysis.report_controls import spread_caveats


def _summaries(aug_values, null_values):
    rows = [{"augmentation": "wide", "pearson": v, "mad": 0.1 + i * 1e-3} for i, v in enumerate(aug_values)]
    rows += [{"augmentation": "identity", "pearson": v, "mad": 0.1 + i * 1e-3} for i, v in enumerate(null_values)]
    return pd.DataFrame(rows)


def _table(significant):
    return pd.DataFrame(
        [
            {"augmentation": "wide", "metric": "pearson", "significant": significant},
            {"augmentation": "wide", "metric": "mad", "significant": significant},
        ]
    )


def test_a_difference_carried_by_a_wide_spread_gets_a_caveat_naming_the_metric():
    summaries = _summaries([0.80, 0.85, 0.90], [0.880, 0.881, 0.882, 0.883, 0.884, 0.885])
    (sentence,) = spread_caveats(_table(True), summaries)
    assert sentence.startswith("Caveat for wide:") and "Pearson (" in sentence and "MAD" not in sentence


def test_no_caveat_when_the_spreads_match_or_nothing_differs():
    summaries = _summaries([0.880, 0.882, 0.884], [0.880, 0.881, 0.882, 0.883, 0.884, 0.885])
    assert spread_caveats(_table(True), summaries) == []
    assert spread_caveats(_table(False), _summaries([0.8, 0.85, 0.9], [0.88] * 6)) == []
