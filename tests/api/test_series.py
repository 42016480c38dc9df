"""The series API: a metric of a device over a range, raw or per step, the same values either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

START_S = 1_790_000_000.0
HOUR_S = 3600
SERIES = "/api/v1/campaigns/{}/series"


@pytest.fixture
def hour_of_temperature(
    client: TestClient, auth: dict[str, str], register: Callable[..., Any], plan_data: dict[str, Any]
) -> tuple[int, np.ndarray[Any, np.dtype[np.float64]]]:
    """A campaign in which sim0 reported its temperature every second for an hour (values known to the test)."""
    register("n1", ["sim0"])
    campaign_id = client.post("/api/v1/campaigns", json=plan_data, headers=auth).json()["id"]
    values = 60.0 + 10.0 * np.sin(np.arange(HOUR_S) / 300.0) + np.random.default_rng(3).normal(0.0, 0.5, HOUR_S)
    for first in range(0, HOUR_S, 1200):
        samples = [
            {"time_s": START_S + second, "device": "sim0", "metric": "device.temperature_c", "value": values[second]}
            for second in range(first, first + 1200)
        ]
        batch = {"batch_id": f"series-{first:05d}", "node": "n1", "campaign_id": campaign_id, "samples": samples}
        assert client.post("/api/v1/telemetry", json=batch, headers=auth).status_code == 200
    return campaign_id, values


def get(client: TestClient, campaign_id: int, **params: Any) -> Any:
    query = {"metric": "device.temperature_c", "device": "sim0", "from": START_S, "to": START_S + HOUR_S, **params}
    return client.get(SERIES.format(campaign_id), params=query)


def test_a_step_no_longer_than_the_sampling_interval_returns_the_raw_samples(
    client: TestClient, hour_of_temperature: tuple[int, np.ndarray[Any, np.dtype[np.float64]]]
) -> None:
    campaign_id, values = hour_of_temperature

    series = get(client, campaign_id, to=START_S + 600, step=1).json()

    assert (series["resolution"], series["step_s"]) == ("raw", None)
    assert [point["time_s"] for point in series["points"]] == [START_S + second for second in range(600)]
    assert np.allclose([point["mean"] for point in series["points"]], values[:600])


def test_steps_hold_the_mean_extremes_and_count_of_their_samples(
    client: TestClient, hour_of_temperature: tuple[int, np.ndarray[Any, np.dtype[np.float64]]]
) -> None:
    campaign_id, values = hour_of_temperature

    series = get(client, campaign_id, step=60).json()

    assert (series["resolution"], series["step_s"]) == ("step", 60.0)
    minutes = values.reshape(60, 60)
    points = series["points"]
    assert [point["time_s"] for point in points] == [START_S + 60 * minute for minute in range(60)]
    assert np.allclose([point["mean"] for point in points], minutes.mean(axis=1))
    assert np.allclose([point["min"] for point in points], minutes.min(axis=1))
    assert np.allclose([point["max"] for point in points], minutes.max(axis=1))
    assert [point["count"] for point in points] == [60] * 60


def test_raw_and_stepped_answers_agree_and_a_default_step_is_round(
    client: TestClient, hour_of_temperature: tuple[int, np.ndarray[Any, np.dtype[np.float64]]]
) -> None:
    campaign_id, _ = hour_of_temperature

    raw = get(client, campaign_id, step=1).json()["points"]
    stepped = get(client, campaign_id).json()

    # An hour without a step: about a thousand points of a round length (5 s).
    assert stepped["step_s"] == 5.0
    raw_means = np.array([point["mean"] for point in raw]).reshape(-1, 5).mean(axis=1)
    assert np.allclose([point["mean"] for point in stepped["points"]], raw_means)


@pytest.mark.parametrize(
    ("params", "status", "problem"),
    [
        ({"device": "sim9"}, 404, "device: 'sim9' is not a device of this fleet"),
        ({"to": START_S - 1}, 422, "to: must be after from"),
        ({"step": 0.1}, 422, "step: 0.1 s cuts the range into 36000 points, more than 10000; use a step of at least"),
        ({"step": -5}, 422, "step: must be a positive number of seconds"),
    ],
)
def test_a_series_that_cannot_be_answered_names_the_parameter(
    client: TestClient,
    hour_of_temperature: tuple[int, np.ndarray[Any, np.dtype[np.float64]]],
    params: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    campaign_id, _ = hour_of_temperature

    response = get(client, campaign_id, **params)

    assert response.status_code == status
    assert problem in response.json()["detail"]
