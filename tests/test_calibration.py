import math

import numpy as np
import pytest

from spacy_mat.calibration import expected_calibration_error, reliability_table


def test_ece_against_hand_computation():
    conf = [0.05, 0.15, 0.95, 0.95, 1.0, 0.55]
    correct = [False, True, True, False, True, True]
    # bins: [0,.1): 0.05/wrong -> |0-.05|; [.1,.2): .15/right -> |1-.15|;
    # [.5,.6): .55/right -> .45; [.9,1]: .95,.95,1.0 with 2/3 right
    expected = (0.05 + 0.85 + 0.45 + 3 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3)) / 6
    assert expected_calibration_error(conf, correct) == pytest.approx(expected)
    table = reliability_table(conf, correct)
    assert [r["count"] for r in table] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 3]
    assert math.isnan(table[2]["accuracy"])


def test_perfectly_calibrated_and_errors():
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=200_000)
    correct = rng.uniform(size=conf.shape) < conf
    assert expected_calibration_error(conf, correct) < 0.01
    assert expected_calibration_error(np.ones(10), np.zeros(10)) == pytest.approx(1.0)
    assert math.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError, match="confidences"):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError, match="correctness"):
        expected_calibration_error([0.5], [True, False])
