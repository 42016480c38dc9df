"""Ingest's fast path for samples takes nothing SampleIn refuses and gives the values SampleIn gives."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from soak.telemetry.schemas import SampleIn
from soak.telemetry.service import _plain_samples

EDGE_NUMBERS = [0, 1, -1, 2**53, 2**53 + 1, 0.0, -0.0, 1e-300, 1_795_000_000.5, True, "1.5", None, math.nan, math.inf]
EDGE_NAMES = ["device.power_w", "sim0", "n1/cuda0", "Device.x", "x" * 96, "x" * 97, "s" * 128, "s" * 129, "", "a\n", 7]
# Edge values half of the time: where the two paths could disagree.
NUMBERS = st.one_of(st.sampled_from(EDGE_NUMBERS), st.floats() | st.integers(min_value=-(2**60), max_value=2**60))
NAMES = st.one_of(
    st.sampled_from(EDGE_NAMES),
    st.from_regex(r"[a-z][a-z0-9_]{0,3}(\.[a-z0-9_]{1,3}){0,2}", fullmatch=True) | st.text(max_size=8) | st.none(),
)
VALID = {"time_s": 1_795_000_000.0, "device": "sim0", "metric": "device.power_w", "value": 300.0}


def changed(key: str, value: Any, remove: bool) -> dict[str, Any]:
    """A valid sample with one field changed, removed, or one added."""
    item = dict(VALID)
    if remove:
        item.pop(key, None)
    else:
        item[key] = value
    return item


# One field off at a time, so that the rest of the sample does not hide it.
ITEMS = st.one_of(
    st.builds(changed, st.sampled_from(["time_s", "value"]), NUMBERS, st.booleans()),
    st.builds(changed, st.sampled_from(["device", "metric"]), NAMES, st.booleans()),
    st.builds(changed, st.just("extra"), st.integers(), st.just(False)),
)


@settings(max_examples=400, deadline=None)
@given(items=st.lists(ITEMS, min_size=1, max_size=3))
def test_the_fast_path_agrees_with_sample_in(items: list[dict[str, Any]]) -> None:
    fast = _plain_samples(items)

    try:
        models = [SampleIn.model_validate(item) for item in items]
    except ValidationError:
        assert fast is None, f"taken by the fast path, refused by SampleIn: {items!r}"
        return
    if fast is not None:
        expected = [(model.time_s, model.device, model.metric, model.value) for model in models]
        assert fast == expected
        assert [type(value) for row in fast for value in (row[0], row[3])] == [float] * (2 * len(fast))


def test_plain_samples_take_the_fast_path() -> None:
    items = [
        {"time_s": 1_795_000_000.0, "device": "n1/cuda0", "metric": "device.power_w", "value": 300},
        {"time_s": 1_795_000_001, "metric": "host.cpu_ratio", "value": -0.5},
        {"time_s": 1_795_000_002.0, "device": None, "metric": "host.cpu_ratio", "value": 0.25},
    ]

    assert _plain_samples(items) == [
        (1_795_000_000.0, "n1/cuda0", "device.power_w", 300.0),
        (1_795_000_001.0, None, "host.cpu_ratio", -0.5),
        (1_795_000_002.0, None, "host.cpu_ratio", 0.25),
    ]
