"""The time series the detectors read, the detection they return, and the wording they share."""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

# Below this a p-value is written as a bound: the tests' tail approximations carry no more digits than that.
SMALLEST_REPORTED_P_VALUE = 1e-9


@dataclass(frozen=True, eq=False)
class Series:
    """One metric of one device over time, sorted by time."""

    time_s: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        # Private read-only copies: a frozen series must not change under a detector when its caller's does.
        # Arrays already read-only float64 are shared as they are (weeks of samples need no second copy).
        time_s = _read_only(self.time_s)
        values = _read_only(self.values)
        if time_s.ndim != 1 or values.ndim != 1 or time_s.shape != values.shape:
            raise ValueError(
                f"Series.time_s and Series.values must be 1-D arrays of the same length, "
                f"got shapes {time_s.shape} and {values.shape}"
            )
        if not np.all(np.isfinite(time_s)):
            raise ValueError("Series.time_s must hold finite epoch seconds; drop samples without a timestamp")
        if np.any(np.diff(time_s) < 0):
            raise ValueError("Series.time_s must be ascending; sort the samples by time first")
        object.__setattr__(self, "time_s", time_s)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.time_s.size)

    def after(self, start_s: float) -> "Series":
        """Return the samples at or after start_s."""
        first = int(np.searchsorted(self.time_s, start_s, side="left"))
        return Series(self.time_s[first:], self.values[first:])

    def finite(self) -> "Series":
        """Return the samples whose value is finite (collectors report a missing reading as NaN)."""
        keep = np.isfinite(self.values)
        return Series(self.time_s[keep], self.values[keep])

    def block_means(self, blocks: int) -> "Series":
        """Average into `blocks` consecutive blocks of equal size (to one sample), time and value alike."""
        if not 1 <= blocks <= len(self):
            raise ValueError(f"blocks must be between 1 and the series length {len(self)}, got {blocks}")
        # Sizes differ by at most one sample, so no sample is dropped and every block weighs the same.
        starts = np.linspace(0, len(self), blocks + 1).astype(np.int64)[:-1]
        sizes = np.diff(np.append(starts, len(self)))
        return Series(
            np.add.reduceat(self.time_s, starts) / sizes,
            np.add.reduceat(self.values, starts) / sizes,
        )


def _read_only(array: npt.ArrayLike) -> npt.NDArray[np.float64]:
    if isinstance(array, np.ndarray) and array.dtype == np.float64 and not array.flags.writeable:
        return array
    copy = np.array(array, dtype=np.float64)
    copy.setflags(write=False)
    return copy


@dataclass(frozen=True)
class Detection:
    """What a detector concluded about one device (or the campaign); the engine stores it as a finding.

    (device, kind, subject) is the finding's identity: the same problem seen again updates the same finding.
    """

    device: str | None
    kind: str
    subject: str
    severity: str
    onset_s: float
    # When the detector's rule first held, judged only on data up to then: what an on-line run would have seen.
    detected_s: float
    last_seen_s: float
    explanation: str
    evidence: dict[str, float | int | str]


def format_p_value(p_value: float) -> str:
    """Write a p-value for a sentence, e.g. "p = 0.003" or "p < 1e-9"."""
    if p_value < SMALLEST_REPORTED_P_VALUE:
        return f"p < {SMALLEST_REPORTED_P_VALUE:.0e}".replace("e-0", "e-")
    return f"p = {p_value:.2g}"


def format_utc(time_s: float) -> str:
    """Write epoch seconds as a UTC date and time, e.g. "2025-11-28 21:43:05 UTC"."""
    return datetime.fromtimestamp(time_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def capitalised(text: str) -> str:
    """Return text with its first letter in upper case, leaving the rest (e.g. "GEMM") alone."""
    return text[:1].upper() + text[1:]
