"""Label rules on hand-made prices; split assignment, purge and embargo on hand-made times."""

from __future__ import annotations

import numpy as np
import pytest

from qtsafe.dataset.labels import label_values
from qtsafe.dataset.splits import Cutoffs, SplitSpec, assign, cutoffs_for, parse_split
from qtsafe.errors import ConfigError

CLOSE = np.array([100.0, 100.5, 101.0, 99.0, 102.0, 100.0])
HIGH = np.array([100.2, 101.2, 101.1, 99.5, 102.5, 100.1])


def test_close_rule_compares_close_at_t_plus_h_with_close_at_t() -> None:
    y = label_values(CLOSE, HIGH, 2, 0.01, "close")
    # t=0: 101/100 = +1.0 % (>= 1 %), t=1: 99/100.5, t=2: 102/101 = +0.99 %, t=3: 100/99 = +1.01 %
    assert y[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert np.isnan(y[4:]).all()  # t + h is past the end


def test_barrier_rule_asks_whether_high_touches_the_threshold_within_h() -> None:
    y = label_values(CLOSE, HIGH, 2, 0.01, "barrier")
    # t=0: max(101.2, 101.1) >= 101; t=1: max(101.1, 99.5) < 101.505; t=2: 102.5 >= 102.01; t=3: 102.5 >= 99.99
    assert y[:4].tolist() == [1.0, 0.0, 1.0, 1.0]


def test_a_missing_price_gives_no_label() -> None:
    close = CLOSE.copy()
    close[3] = np.nan
    y = label_values(close, HIGH, 2, 0.01, "close")
    assert np.isnan(y[1]) and np.isnan(y[3])


def test_unknown_label_rule() -> None:
    with pytest.raises(ConfigError):
        label_values(CLOSE, HIGH, 2, 0.01, "median")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.7,0.15,0.15", (0.7, 0.15, 0.15)), ("0.8, 0.2, 0", (0.8, 0.2, 0.0)), ("1,0,0", (1.0, 0.0, 0.0))],
)
def test_parse_split_fractions(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_split(text).fractions == expected


def test_parse_split_cutoffs() -> None:
    spec = parse_split("2025-11-01,2025-12-01T00:00:00Z")
    assert spec.fractions is None
    assert spec.cutoffs == (1_761_955_200 * 10**9, 1_764_547_200 * 10**9)
    assert spec.label == "2025-11-01T00:00:00Z,2025-12-01T00:00:00Z"


@pytest.mark.parametrize("text", ["0.5,0.5", "0.6,0.3,0.3", "0,0.5,0.5", "0.7,-0.1,0.4", "2025-12-01,2025-11-01",
                                  "yesterday,today", "nan,0.5,0.5"])
def test_parse_split_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--split"):
        parse_split(text)


def test_fraction_cutoffs_fall_on_the_bar_grid() -> None:
    cut = cutoffs_for(SplitSpec((0.7, 0.15, 0.15)), 0, 99, 1)  # 100 bars at 0..99
    assert (cut.val_start, cut.test_start, cut.val_wanted, cut.test_wanted) == (70, 85, True, True)
    cut = cutoffs_for(SplitSpec((0.8, 0.2, 0.0)), 0, 99, 1)
    assert (cut.val_start, cut.test_start, cut.test_wanted) == (80, 100, False)


def test_explicit_cutoffs_must_lie_inside_the_data() -> None:
    with pytest.raises(ConfigError, match="outside the data range"):
        cutoffs_for(SplitSpec(None, (5, 200)), 0, 99, 1)


def test_purge_and_embargo() -> None:
    t = np.arange(100, dtype=np.int64)
    cut = Cutoffs(50, 80, True, True)
    split = assign(t, cut, purge_ns=4, embargo_ns=3)
    assert set(np.flatnonzero(split == 0)) == set(range(0, 46))  # t + 4 < 50
    assert set(np.flatnonzero(split == 1)) == set(range(53, 76))  # t >= 53 and t + 4 < 80
    assert set(np.flatnonzero(split == 2)) == set(range(83, 100))
    assert (split[[46, 49, 50, 52, 76, 82]] == -1).all()
