"""Four weeks of a 16-device campaign in Postgres: how fast the questions are, and what it costs on disk.

    python benchmarks/weeks.py [--days 28] [--raw-days 1] [--devices 16] [--metrics 25] [--copy-rows 200000]

Creates a fresh schema in the database `test` on 127.0.0.1:5432, migrates it with Alembic (as the tests do) and
drops it at the end. A campaign sampled at 1 Hz: 28 days x 16 devices x 25 metrics is about a billion samples,
too much for this disk and a five-minute run, so raw samples are generated (with generate_series, in time order)
for the last --raw-days days only, in their daily partitions, and the minute and hour rollups for all days, as the
controller would have left them (raw older than the retention is retired once rolled up). Then it times:
  1. the 28-day series of one device and metric through read_series (target <= 1 s);
  2. the report's aggregates for the whole campaign: per device and metric, count, mean, min, max and last from
     the hour rollups (target <= 10 s);
  3. binary COPY into the partitioned sample table (docs/benchmarks.md: 78 k rows/s into the table with foreign
     keys, before partitioning);
  4. disk per device-day: raw partitions and rollup tables, with pg_total_relation_size;
  5. the detectors' read of one device's raw samples (device_series, what each detection pass loaded before
     detection read minute rollups);
  6. one detection pass over a campaign of the fleet simulator (--detect-days at 1 Hz, --detect-devices, faults
     injected), stored raw and rolled up as the controller leaves it: run_detection, which reads minute rollups
     for a campaign of days, against the same pass on every raw sample (the read before), per device-day and
     extrapolated to 14 days of 16 devices.
Prints a Markdown table; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from postgres_schema import fresh_schema
from sqlalchemy import text
from sqlalchemy.orm import Session

from soak.analysis.engine import detect_and_store, load_fleet, run_detection
from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.analysis.telemetry import DeviceTelemetry
from soak.db import make_engine, session_factory
from soak.plan import parse_plan
from soak.telemetry.metric_names import metric_ids
from soak.telemetry.partitions import DAY_S, create_daily_partition
from soak.telemetry.series import SeriesOut, read_series
from soak.telemetry.service import device_series
from soak.telemetry.summaries import campaign_summaries
from soak.telemetry.writer import StoredRow, copy_samples

START_S = 1_795_046_400  # 2026-11-18 00:00 UTC
ROUNDS = 5
# A smooth daily wave per device and metric, so rollups and raw samples look like telemetry, not constants.
VALUE_SQL = "50 + metric_index + device_index + 10 * sin(({t}) / 3600.0 + device_index)"


def timed(action: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started_s = time.perf_counter()
    action()
    return time.perf_counter() - started_s


def create_fleet(session: Session, *, devices: int, metrics: int) -> int:
    """A node, its devices, a campaign and the metric names to generate; the campaign id."""
    session.execute(
        text(
            "INSERT INTO node (name, hostname, inbox_dir, sim_state_dir, registered_at, last_seen_at) "
            "VALUES ('n1', 'n1', '', '', now(), now())"
        )
    )
    session.execute(
        text(
            'INSERT INTO device (node_id, name, "index", backend, vendor, model, simulated) '
            "SELECT 1, 'sim' || i, i, 'sim', 'simulated', 'Sim', true FROM generate_series(0, :last) i"
        ),
        {"last": devices - 1},
    )
    campaign_id = session.scalars(
        text(
            "INSERT INTO campaign (name, plan, plan_digest, state, created_at, paused_s) "
            "VALUES ('four weeks', '{}', '', 'running', now(), 0) RETURNING id"
        )
    ).one()
    session.execute(
        text(
            "INSERT INTO metric_name (name) "
            "SELECT 'device.metric_' || lpad(m::text, 2, '0') FROM generate_series(0, :last) m"
        ),
        {"last": metrics - 1},
    )
    session.execute(
        text(
            "CREATE TEMPORARY TABLE generated_series AS "
            "SELECT device.id AS device_id, device.index AS device_index, m AS metric_index, metric_name.id AS "
            "metric_id FROM device, generate_series(0, :last) m "
            "JOIN metric_name ON metric_name.name = 'device.metric_' || lpad(m::text, 2, '0')"
        ),
        {"last": metrics - 1},
    )
    session.commit()
    return int(campaign_id)


def generate_raw(session: Session, *, campaign_id: int, from_s: int, to_s: int) -> None:
    """1 Hz samples of every series over [from_s, to_s), each day into its own partition, in time order."""
    for day_start_s in range(from_s - from_s % DAY_S, to_s, DAY_S):
        create_daily_partition(session=session, day_start_s=day_start_s)
        session.execute(
            text(
                "INSERT INTO sample (campaign_id, node_id, device_id, metric_id, time_s, value) "
                f"SELECT :campaign_id, 1, device_id, metric_id, t, {VALUE_SQL.format(t='t')} "
                "FROM generate_series(:low, :high - 1) t, generated_series ORDER BY t"
            ),
            {"campaign_id": campaign_id, "low": max(from_s, day_start_s), "high": min(to_s, day_start_s + DAY_S)},
        )
        session.commit()


def generate_rollups(session: Session, *, campaign_id: int, days: int) -> None:
    """Minute and hour buckets of every series over all days, as merging 1 Hz samples would leave them."""
    for table, bucket_length_s in (("rollup_1m", 60), ("rollup_1h", 3600)):
        session.execute(
            text(
                f"INSERT INTO {table} (campaign_id, device_id, metric_id, bucket_s, count, min_value, max_value, "
                "sum_value, last_time_s, last_value) "
                f"SELECT :campaign_id, device_id, metric_id, b, {bucket_length_s}, "
                f"{VALUE_SQL.format(t='b')} - 1, {VALUE_SQL.format(t='b')} + 1, "
                f"{bucket_length_s} * {VALUE_SQL.format(t='b')}, b + {bucket_length_s - 1}, "
                f"{VALUE_SQL.format(t=f'b + {bucket_length_s - 1}')} "
                "FROM generated_series, generate_series(:low, :high - 1, :step) b ORDER BY device_id, metric_id, b"
            ),
            {"campaign_id": campaign_id, "low": START_S, "high": START_S + days * DAY_S, "step": bucket_length_s},
        )
    # As the controller leaves it: every raw sample stored is merged into the rollups.
    session.execute(
        text("INSERT INTO rollup_state (input_table, last_sample_id) SELECT 'sample', coalesce(max(id), 0) FROM sample")
    )
    session.commit()


def copy_rate_rows_per_s(session: Session, *, campaign_id: int, day: int, rows: int) -> float:
    """Median rows/s of binary COPY of `rows` samples into one day's partition, each round committed."""
    device_ids = session.scalars(text("SELECT id FROM device ORDER BY id")).all()
    day_start_s = START_S + day * DAY_S
    rates = []
    for round_index in range(3):
        metric = f"bench.copy_{round_index}"
        metric_id = metric_ids(session=session, names=[metric])[metric]
        batch: list[StoredRow] = [
            (campaign_id, 1, device_ids[i % len(device_ids)], metric_id, day_start_s + i / 16, 1.0) for i in range(rows)
        ]
        elapsed_s = timed(lambda batch=batch: (copy_samples(session=session, rows=batch), session.commit()))
        rates.append(rows / elapsed_s)
    return statistics.median(rates)


@dataclasses.dataclass(frozen=True)
class DetectionPass:
    """Seconds of one detection pass over a stored campaign, read from minute rollups and from raw samples."""

    device_days: float
    samples: int
    store_s: float
    minutes_read_s: float
    minutes_pass_s: float
    raw_read_s: float
    raw_detect_s: float
    findings: int


def detection_pass(session: Session, *, days: float, devices: int) -> DetectionPass:
    """Store a simulated campaign at 1 Hz (raw, rolled up), then time a pass on its rollups and one on raw samples."""
    spec = FleetSpec(seed=0, devices=devices, devices_per_node=devices, days=days, sample_interval_s=1.0)
    for day_start_s in range(int(spec.start_s) - int(spec.start_s) % DAY_S, int(spec.end_s), DAY_S):
        create_daily_partition(session=session, day_start_s=day_start_s)
        session.commit()
    store_s = timed(lambda: store_fleet(session=session, spec=spec, name="sim-days"))
    campaign_id = session.scalars(text("SELECT id FROM campaign WHERE name = 'sim-days'")).one()
    plan = parse_plan(session.scalars(text("SELECT plan FROM campaign WHERE id = :id"), {"id": campaign_id}).one())
    samples = session.scalars(text("SELECT count(*) FROM sample WHERE campaign_id = :id"), {"id": campaign_id}).one()
    session.execute(text("ANALYZE"))
    session.commit()
    fleet: list[DeviceTelemetry] = []
    minutes_read_s = timed(
        lambda: fleet.extend(
            load_fleet(session=session, campaign_id=campaign_id, plan=plan, start_s=spec.start_s, end_s=spec.end_s)
        )
    )
    findings = 0

    def new_pass() -> None:
        nonlocal findings
        findings = run_detection(
            session=session, campaign_id=campaign_id, plan=plan, start_s=spec.start_s, end_s=spec.end_s
        )
        session.commit()

    minutes_pass_s = timed(new_pass)
    ids = {name: device_id for name, device_id in session.execute(text("SELECT name, id FROM device"))}
    raw_fleet: list[DeviceTelemetry] = []
    raw_read_s = timed(
        lambda: raw_fleet.extend(
            dataclasses.replace(
                device, series=device_series(session=session, campaign_id=campaign_id, device_id=ids[device.device])
            )
            for device in fleet
        )
    )
    raw_detect_s = timed(
        lambda: (
            detect_and_store(session=session, campaign_id=campaign_id, fleet=raw_fleet, acceptance=plan.acceptance),
            session.commit(),
        )
    )
    return DetectionPass(
        device_days=devices * days,
        samples=int(samples),
        store_s=store_s,
        minutes_read_s=minutes_read_s,
        minutes_pass_s=minutes_pass_s,
        raw_read_s=raw_read_s,
        raw_detect_s=raw_detect_s,
        findings=findings,
    )


def megabytes(session: Session, relations: str) -> float:
    """MB on disk (tables, indexes, TOAST) of the relations a WHERE clause on pg_class names."""
    size_bytes = session.scalars(
        text(f"SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM pg_class WHERE relkind = 'r' AND {relations}")
    ).one()
    return float(size_bytes) / 1e6


def main() -> None:
    """Generate the campaign in a fresh schema, time the questions, print a Markdown table, drop the schema."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28, help="campaign length; rollups cover all of it")
    # A whole day of raw samples is 35 M rows, over five minutes to generate on two shared cores.
    parser.add_argument("--raw-days", type=float, default=0.25, help="days of raw 1 Hz samples (the last ones)")
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--metrics", type=int, default=25)
    parser.add_argument("--copy-rows", type=int, default=200_000, help="rows per COPY round")
    # Two devices for two days at 1 Hz: 11 M raw samples, about five minutes to simulate, store and roll up here.
    parser.add_argument("--detect-days", type=float, default=2.0, help="days of the simulated campaign detected")
    parser.add_argument("--detect-devices", type=int, default=2, help="devices of the simulated campaign detected")
    arguments = parser.parse_args()

    with fresh_schema() as url:
        engine = make_engine(url)
        with session_factory(engine)() as session:
            campaign_id = create_fleet(session, devices=arguments.devices, metrics=arguments.metrics)
            end_s = START_S + arguments.days * DAY_S
            raw_from_s = end_s - int(arguments.raw_days * DAY_S)
            raw_load_s = timed(lambda: generate_raw(session, campaign_id=campaign_id, from_s=raw_from_s, to_s=end_s))
            raw_rows = session.scalars(text("SELECT count(*) FROM sample")).one()
            rollup_load_s = timed(lambda: generate_rollups(session, campaign_id=campaign_id, days=arguments.days))
            session.execute(text("ANALYZE"))
            session.commit()
            device = f"sim{arguments.devices // 2}"
            metric = f"device.metric_{arguments.metrics // 2:02d}"

            def series() -> SeriesOut:
                return read_series(
                    session=session,
                    campaign_id=campaign_id,
                    device=device,
                    metric=metric,
                    from_s=START_S,
                    to_s=START_S + arguments.days * DAY_S,
                    step_s=None,
                    sample_interval_s=1.0,
                )

            answer = series()
            series_s = [timed(series) for _ in range(ROUNDS)]
            raw_hour_from_s = end_s - 3600
            raw_hour_s = [
                timed(
                    lambda: read_series(
                        session=session,
                        campaign_id=campaign_id,
                        device=device,
                        metric=metric,
                        from_s=raw_hour_from_s,
                        to_s=raw_hour_from_s + 3600,
                        step_s=1.0,
                        sample_interval_s=1.0,
                    )
                )
                for _ in range(ROUNDS)
            ]
            device_id = session.scalars(text("SELECT id FROM device WHERE name = :name"), {"name": device}).one()
            detector_read_s = timed(
                lambda: device_series(session=session, campaign_id=campaign_id, device_id=device_id)
            )
            report_rows = len(campaign_summaries(session=session, campaign_id=campaign_id))
            report_s = [
                timed(lambda: campaign_summaries(session=session, campaign_id=campaign_id)) for _ in range(ROUNDS)
            ]
            session.commit()
            raw_mb = megabytes(session, "relname ~ '^sample_(p[0-9]{8}|default)$'")
            rollup_mb = megabytes(session, "relname IN ('rollup_1m', 'rollup_1h')")
            copy_rate = copy_rate_rows_per_s(
                session, campaign_id=campaign_id, day=arguments.days - 1, rows=arguments.copy_rows
            )
            detection = detection_pass(session, days=arguments.detect_days, devices=arguments.detect_devices)
        engine.dispose()

    device_days_raw = arguments.devices * arguments.raw_days
    device_days = arguments.devices * arguments.days
    full_samples = arguments.devices * arguments.metrics * arguments.days * DAY_S
    print(
        f"campaign: {arguments.days} days x {arguments.devices} devices x {arguments.metrics} metrics at 1 Hz "
        f"= {full_samples / 1e9:.2f} billion samples; raw generated for the last {arguments.raw_days:g} day(s) only "
        f"({raw_rows:,} rows in {raw_load_s:.0f} s), minute and hour rollups for all {arguments.days} days "
        f"(in {rollup_load_s:.0f} s). Raw older than the retention (SOAK_RAW_RETENTION_DAYS, 14) is retired once "
        "rolled up, so the rollups answer the older days exactly as here."
    )
    print()
    print("| measure | figure | target |")
    print("|---|---|---|")
    print(
        f"| {arguments.days}-day series, one device and metric, read_series ({answer.source}, "
        f"{len(answer.points)} points) | median {statistics.median(series_s) * 1e3:.1f} ms, "
        f"max {max(series_s) * 1e3:.1f} ms | <= 1 s |"
    )
    print(
        f"| 1-hour raw series (3600 samples, the last day's partition) "
        f"| median {statistics.median(raw_hour_s) * 1e3:.1f} ms "
        "| - |"
    )
    print(
        f"| the detectors' read of one device's raw window (device_series: {arguments.metrics} metrics, "
        f"{arguments.raw_days:g} day) | {detector_read_s:.1f} s, i.e. {detector_read_s / arguments.raw_days:.0f} s "
        "per device-day | - |"
    )
    print(
        f"| report aggregates, whole campaign ({report_rows} device-metrics: count, mean, min, max, last; 1 h "
        f"rollups) | median {statistics.median(report_s) * 1e3:.0f} ms, max {max(report_s) * 1e3:.0f} ms | <= 10 s |"
    )
    print(
        f"| binary COPY into partitioned sample ({arguments.copy_rows:,} rows a round, median of 3) | "
        f"{copy_rate / 1e3:.0f} k rows/s | 78 k rows/s before (foreign keys, unpartitioned) |"
    )
    print(
        f"| disk, raw (partitions with their indexes) | {raw_mb / device_days_raw:.0f} MB per device-day; "
        f"{raw_mb / device_days_raw * arguments.devices * 14 / 1e3:.1f} GB for 14 days of {arguments.devices} "
        "devices | - |"
    )
    print(
        f"| disk, rollups 1 m + 1 h | {rollup_mb / device_days:.1f} MB per device-day; "
        f"{rollup_mb / 1e3:.2f} GB for the campaign | - |"
    )
    fleet_device_days = 14 * 16
    per_device_day = {
        "minute rollups (run_detection)": (detection.minutes_read_s, detection.minutes_pass_s),
        "raw samples (before)": (detection.raw_read_s, detection.raw_read_s + detection.raw_detect_s),
    }
    print()
    print(
        f"Detection pass over the fleet simulator's campaign: {arguments.detect_devices} device(s) x "
        f"{arguments.detect_days:g} days at 1 Hz, faults injected, {detection.samples:,} raw samples stored and "
        f"rolled up in {detection.store_s:.0f} s; {detection.findings} detections."
    )
    print()
    print("| pass reads | read, per device-day | whole pass, per device-day | whole pass, 14 days x 16 devices |")
    print("|---|---|---|---|")
    for source, (read_s, pass_s) in per_device_day.items():
        print(
            f"| {source} | {read_s / detection.device_days:.2f} s | {pass_s / detection.device_days:.2f} s "
            f"| {pass_s / detection.device_days * fleet_device_days / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
