"""``--set`` values and YAML config values of float fields: YAML 1.1 exponents without a dot are numbers too."""
from __future__ import annotations

import pytest

from semid.core.errors import SemidError
from semid.rankers.config import load_rank_config


@pytest.mark.parametrize("raw, value", [("1e-3", 1e-3), ("2E-4", 2e-4), ("1e30", 1e30), ("0.5", 0.5), ("3", 3.0)])
def test_a_float_field_takes_an_exponent_without_a_dot(raw, value):
    # PyYAML reads 1e-3 as the string '1e-3' (YAML 1.1); the field means the number
    cfg = load_rank_config(representation="hash_8k", overrides=[f"optim.dense_lr={raw}"])
    assert cfg.optim.dense_lr == value and isinstance(cfg.optim.dense_lr, float)


@pytest.mark.parametrize("raw, message", [("fast", "expected a number, got 'fast'"),
                                          ("1e", "expected a number, got '1e'"),
                                          ("-1e-3", "must be a finite number > 0")])
def test_a_float_field_still_refuses_what_is_not_a_number_or_out_of_range(raw, message):
    with pytest.raises(SemidError) as e:
        load_rank_config(representation="hash_8k", overrides=[f"optim.dense_lr={raw}"])
    assert str(e.value).startswith(f"--set optim.dense_lr={raw}: {message}"), str(e.value)
