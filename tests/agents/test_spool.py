"""The agent's spool on a real SQLite file: order, persistence, bounds, report files and their idempotence."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.inbox import WorkerReport, write_report
from agents.spool import LEDGER_KEEP_S, Outgoing, Spool, report_batch_id

NODE = "n1"
T0_S = 1_790_000_000.0


@pytest.fixture
def inbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "inbox"


def open_spool(tmp_path: Path, **bounds: int) -> Spool:
    limits = {"max_batches": 1000, "max_bytes": 1 << 30, **bounds}
    return Spool(tmp_path / "spool.db", files_dir=tmp_path / "spooled", node=NODE, **limits)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = open_spool(tmp_path)
    yield spool
    spool.close()


def collector_batch(number: int, *, samples: int = 2) -> Outgoing:
    """A node batch whose samples say which batch they came in."""
    return Outgoing(
        {
            "batch_id": f"batch-{number:04d}",
            "node": NODE,
            "campaign_id": None,
            "samples": [
                {"time_s": T0_S + number, "device": None, "metric": "host.cpu_ratio", "value": number}
                for _ in range(samples)
            ],
            "events": [],
        }
    )


def report_batch(paths: list[Path]) -> Outgoing:
    """What the agent makes of worker report files: one batch carrying them, its id taken from their names."""
    reports = [json.loads(path.read_text()) for path in paths]
    payload = {
        "batch_id": report_batch_id(NODE, [path.name for path in paths]),
        "node": NODE,
        "campaign_id": 1,
        "samples": [sample for report in reports for sample in report["samples"]],
        "events": [event for report in reports for event in report["events"]],
    }
    return Outgoing(payload, tuple(paths))


def write_reports(inbox_dir: Path, count: int) -> list[Path]:
    return [
        write_report(
            inbox_dir,
            WorkerReport(
                campaign_id=1,
                device="sim0",
                pid=os.getpid(),
                samples=[{"time_s": T0_S + n, "device": "sim0", "metric": "throughput.gemm", "value": n}],
                events=[{"time_s": T0_S + n, "device": "sim0", "kind": "sdc", "message": f"report {n}"}],
            ),
        )
        for n in range(count)
    ]


def drain(spool: Spool) -> list[dict[str, Any]]:
    """Everything in the spool, oldest first, acknowledged one by one as the agent does."""
    payloads = []
    while (batch := spool.head()) is not None:
        payloads.append(json.loads(batch.payload_json))
        spool.ack(batch)
    return payloads


def test_batches_come_out_in_the_order_they_went_in(spool: Spool) -> None:
    spool.append([collector_batch(1)], now_s=T0_S)
    spool.append([collector_batch(2), collector_batch(3)], now_s=T0_S + 1)

    assert spool.stats().batches == 3
    assert [payload["batch_id"] for payload in drain(spool)] == ["batch-0001", "batch-0002", "batch-0003"]
    stats = spool.stats()
    assert (stats.batches, stats.size_bytes, stats.oldest_created_s) == (0, 0, None)


def test_the_spool_and_its_report_files_outlive_a_restart(tmp_path: Path, inbox_dir: Path) -> None:
    spool = open_spool(tmp_path)
    files = write_reports(inbox_dir, 2)
    sent = report_batch(files)
    spool.append([collector_batch(1), sent], now_s=T0_S)
    before = spool.stats()
    spool.close()

    reopened = open_spool(tmp_path)
    try:
        after = reopened.stats()
        assert (after.batches, after.size_bytes, after.oldest_created_s) == (2, before.size_bytes, T0_S)
        assert reopened.return_strays(to=inbox_dir) == []
        reopened.ack(reopened.head() or pytest.fail("the spool lost its first batch"))
        head = reopened.head() or pytest.fail("the spool lost the report batch")
        assert (head.batch_id, json.loads(head.payload_json)) == (sent.batch_id, sent.payload)
        assert [path.name for path in head.files] == sorted(path.name for path in files)
        assert all(path.is_file() for path in head.files)
    finally:
        reopened.close()


def test_report_files_move_into_the_spool_and_are_deleted_only_on_acknowledgement(
    spool: Spool, inbox_dir: Path
) -> None:
    files = write_reports(inbox_dir, 3)
    spool.append([report_batch(files)], now_s=T0_S)

    assert list(inbox_dir.glob("*.json")) == []
    head = spool.head() or pytest.fail("nothing spooled")
    assert [path.parent for path in head.files] == [spool.files_dir] * 3
    assert all(path.is_file() for path in head.files)
    assert spool.stats().size_bytes == len(head.payload_json) + sum(path.stat().st_size for path in head.files)

    spool.ack(head)

    assert list(spool.files_dir.iterdir()) == []
    assert spool.head() is None


def test_report_files_spooled_again_after_a_crash_are_stored_once(spool: Spool, inbox_dir: Path) -> None:
    files = write_reports(inbox_dir, 2)
    batch = report_batch(files)
    spool.append([batch], now_s=T0_S)
    # As if the agent died after the commit but before the files left the inbox.
    for path in files:
        os.replace(spool.files_dir / path.name, path)

    assert spool.not_spooled(files) == []
    assert list(inbox_dir.glob("*.json")) == []
    assert sorted(path.name for path in spool.files_dir.iterdir()) == sorted(path.name for path in files)

    # The same files always make the same batch id, and a spooled id is not spooled twice.
    for path in files:
        shutil.copy(spool.files_dir / path.name, path)
    spool.append([report_batch(files)], now_s=T0_S + 1)
    assert spool.stats().batches == 1
    with pytest.raises(ValueError, match="carries a report file another batch carries"):
        spool.append([Outgoing({**batch.payload, "batch_id": str(uuid.uuid4())}, batch.files)], now_s=T0_S + 2)
    assert [payload["batch_id"] for payload in drain(spool)] == [batch.batch_id]


def test_report_files_no_batch_carries_go_back_to_the_inbox(spool: Spool, inbox_dir: Path) -> None:
    (stray,) = write_reports(inbox_dir, 1)
    os.replace(stray, spool.files_dir / stray.name)

    assert spool.return_strays(to=inbox_dir) == [stray]
    assert stray.is_file()
    assert spool.not_spooled([stray]) == [stray]


def test_a_batch_the_controller_cannot_use_keeps_its_reports_as_bad_files(spool: Spool, inbox_dir: Path) -> None:
    files = write_reports(inbox_dir, 2)
    spool.append([report_batch(files)], now_s=T0_S)

    spool.set_aside(spool.head() or pytest.fail("nothing spooled"), into=inbox_dir)

    assert sorted(path.name for path in inbox_dir.iterdir()) == sorted(path.with_suffix(".bad").name for path in files)
    assert spool.head() is None


def notice(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The event of a drop notice and the counts in its raw field."""
    (event,) = payload["events"]
    assert payload["samples"] == []
    return event, json.loads(event["raw"])


def test_over_its_batch_bound_the_spool_drops_the_oldest_and_spools_a_notice(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_batches=3)
    try:
        for number in range(1, 6):
            spool.append([collector_batch(number, samples=number)], now_s=T0_S + number)
        stats = spool.stats()
        payloads = drain(spool)
    finally:
        spool.close()

    assert [payload["batch_id"] for payload in payloads if payload["samples"]] == [
        "batch-0003",
        "batch-0004",
        "batch-0005",
    ]
    notices = [payload for payload in payloads if not payload["samples"]]
    assert len(notices) == 1, "one notice gathers every drop while it waits"
    event, counts = notice(notices[0])
    assert (event["kind"], event["severity"], event["time_s"]) == ("telemetry_dropped", "warning", T0_S + 4)
    assert counts == {"batches": 2, "samples": 3, "events": 0, "first_s": T0_S + 1, "last_s": T0_S + 2}
    assert "dropped the oldest 2 batch(es) (3 samples, 0 events)" in event["message"]
    assert "from 2026-09-21T14:13:21+00:00 to 2026-09-21T14:13:22+00:00" in event["message"]
    assert (stats.batches, stats.dropped.batches, stats.dropped.samples) == (4, 2, 3)


def test_a_notice_that_may_have_been_sent_is_never_changed(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_batches=2)
    try:
        for number in range(1, 4):
            spool.append([collector_batch(number)], now_s=T0_S + number)
        for _ in range(2):  # batches 2 and 3: the notice of batch 1 is next
            spool.ack(spool.head() or pytest.fail("empty"))
        first = spool.head() or pytest.fail("empty")
        assert first.drop_notice  # the agent would send it now, and the answer might be lost

        for number in range(4, 7):
            spool.append([collector_batch(number)], now_s=T0_S + number)
        assert (spool.head() or pytest.fail("empty")).payload_json == first.payload_json
        payloads = drain(spool)
    finally:
        spool.close()

    assert [payload["batch_id"] for payload in payloads if payload["samples"]] == ["batch-0005", "batch-0006"]
    notices = [notice(payload)[1]["first_s"] for payload in payloads if not payload["samples"]]
    assert notices == [T0_S + 1, T0_S + 4]  # batch 1, then batch 4 in a second notice


def test_over_its_byte_bound_the_spool_drops_the_oldest_but_keeps_the_newest(tmp_path: Path) -> None:
    size_bytes = len(json.dumps(collector_batch(1).payload, separators=(",", ":")))
    spool = open_spool(tmp_path, max_bytes=size_bytes * 2 + size_bytes // 2)
    try:
        for number in range(1, 5):
            spool.append([collector_batch(number)], now_s=T0_S + number)
        assert spool.stats().dropped.batches == 2
        huge = Outgoing({**collector_batch(5, samples=100).payload})
        spool.append([huge], now_s=T0_S + 5)
        payloads = drain(spool)
    finally:
        spool.close()

    # The newest batch is kept even when it alone is over the bound.
    assert [payload["batch_id"] for payload in payloads if payload["samples"]] == ["batch-0005"]
    assert sum(notice(payload)[1]["batches"] for payload in payloads if not payload["samples"]) == 4


def test_dropping_a_batch_deletes_the_report_files_it_carried(tmp_path: Path, inbox_dir: Path) -> None:
    spool = open_spool(tmp_path, max_batches=1)
    try:
        spool.append([report_batch(write_reports(inbox_dir, 2))], now_s=T0_S)
        spool.append([collector_batch(1)], now_s=T0_S + 1)

        assert list(spool.files_dir.iterdir()) == []
        assert spool.stats().dropped.events == 2
    finally:
        spool.close()


def test_a_drained_spool_gives_its_disk_back(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_batches=2000)
    for number in range(2000):
        spool.append([collector_batch(number, samples=60)], now_s=T0_S + number)
    spool.close()  # the last close folds the write-ahead log into the file
    full_bytes = (tmp_path / "spool.db").stat().st_size

    spool = open_spool(tmp_path, max_batches=2000)
    assert len(drain(spool)) == 2000
    spool.close()

    assert (tmp_path / "spool.db").stat().st_size < full_bytes / 20


def test_the_ledger_keeps_every_batch_taken_in_across_acks_drops_and_restarts(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_batches=2)
    for number in range(1, 5):
        spool.append([collector_batch(number, samples=number)], now_s=T0_S + number)
    spool.append([collector_batch(4)], now_s=T0_S + 5)  # spooled again after a crash: one line, not two
    drain(spool)
    spool.close()

    reopened = open_spool(tmp_path)
    try:
        reopened.append([collector_batch(5)], now_s=T0_S + LEDGER_KEEP_S + 1.5)
        ledger = reopened.produced()
    finally:
        reopened.close()
    # Acknowledged and dropped batches alike (the drop notice is no telemetry); older than a week is forgotten.
    assert [(line.batch_id, line.samples) for line in ledger] == [
        ("batch-0002", 2),
        ("batch-0003", 3),
        ("batch-0004", 4),
        ("batch-0005", 2),
    ]
