"""One campaign from start to end: place workers, rotate the mix, watch heartbeats, restart, detect, finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from soak.campaigns import service as campaigns
from soak.campaigns.models import CampaignCommand, CampaignState
from soak.config import Settings
from soak.db import session_scope
from soak.nodes import service as nodes
from soak.nodes.models import Device, Node
from soak.nodes.service import PlacementError
from soak.plan import Plan, parse_plan
from soak.scheduler.detection import DetectionThread, detect_interval_s
from soak.scheduler.discovery import node_resource
from soak.scheduler.executor import Executor, WorkerHandle
from soak.scheduler.rendezvous import Rendezvous
from soak.scheduler.rotation import Rotation
from soak.scheduler.spec import Segment, WorkerSpec
from soak.telemetry import service as telemetry
from soak.workloads.collective import CollectiveParams
from soak.workloads.registry import load_workload

log = logging.getLogger(__name__)

STARTUP_GRACE_S = 90.0  # a new worker imports torch and opens its device before its first heartbeat
CRASH_LOOP_WINDOW_S = 600.0
CRASH_LOOP_RESTARTS = 5
REPORT_SETTLE_S = 3.0  # agents deliver their last reports before the final detection


@dataclass
class _Slot:
    """The scheduler's view of one device's worker."""

    device_id: int
    node_id: int
    position: int
    spec: WorkerSpec
    handle: WorkerHandle | None = None
    spawned_s: float = 0.0
    run_id: int | None = None
    run_started_s: float = 0.0
    restarts_s: list[float] = field(default_factory=list)
    next_restart_s: float = 0.0
    retired: bool = False
    node_down: bool = False  # its node left the cluster: no worker until the node is back

    @property
    def simulated(self) -> bool:
        """Whether the device is simulated: it plays a collective slot alone, from the workload's profile."""
        return self.spec.backend == "sim"


class CampaignRunner:
    """Drives one campaign in its own thread; every decision is stored as state, runs and events."""

    def __init__(
        self, *, campaign_id: int, sessions: sessionmaker[Session], executor: Executor, settings: Settings
    ) -> None:
        self.campaign_id = campaign_id
        self._sessions = sessions
        self._executor = executor
        self._settings = settings
        self._slots: list[_Slot] = []
        self._rendezvous = Rendezvous(campaign_id=campaign_id, settings=settings)
        self._lost_nodes: dict[str, float] = {}  # node name: when it was found gone
        self._waiting_nodes: dict[str, float] = {}  # node name: since when its Ray node is awaited (never joined)
        self._joined_nodes: set[str] = set()  # nodes this campaign's workers were placed on
        self._detection: DetectionThread | None = None

    def run(self) -> None:
        """Run to the end; any failure ends the campaign as failed with the reason, never silently."""
        try:
            self._run()
        except PlacementError as error:
            self._fail(str(error))
        except Exception as error:
            log.exception("campaign %s failed", self.campaign_id)
            self._fail(f"scheduler error: {type(error).__name__}: {error}")
        finally:
            if self._detection is not None:
                self._detection.stop()
            for slot in self._slots:
                if slot.handle is not None:
                    slot.handle.kill()
            with session_scope(self._sessions) as session:
                nodes.release(session=session, campaign_id=self.campaign_id)
            self._rendezvous.close()

    def _fail(self, reason: str) -> None:
        with session_scope(self._sessions) as session:
            campaign = campaigns.get_campaign(session=session, campaign_id=self.campaign_id)
            if not CampaignState(campaign.state).finished:
                campaigns.set_state(session=session, campaign=campaign, state=CampaignState.FAILED, reason=reason)

    def _place(self, plan: Plan, give_up_s: float) -> list[tuple[Device, Node]]:
        while True:
            with session_scope(self._sessions) as session:
                try:
                    chosen = nodes.select_devices(session=session, selectors=plan.devices)
                except PlacementError:
                    if time.time() >= give_up_s:
                        raise
                else:
                    nodes.reserve(session=session, devices=chosen, campaign_id=self.campaign_id)
                    # In the order a resumed campaign reads them back, so each device keeps its place in the mix.
                    return nodes.list_devices(session=session, campaign_id=self.campaign_id)
            time.sleep(1.0)

    def _run(self) -> None:
        with session_scope(self._sessions) as session:
            campaign = campaigns.get_campaign(session=session, campaign_id=self.campaign_id)
            plan = parse_plan(campaign.plan)
            state = CampaignState(campaign.state)
            if state is not CampaignState.PENDING and campaign.started_at is not None:
                placed = nodes.list_devices(session=session, campaign_id=self.campaign_id)
                self._lost_nodes, self._waiting_nodes = self._nodes_still_away(session)
                self._joined_nodes = {node.name for _, node in placed} - self._waiting_nodes.keys()
                self._resume(plan, placed, campaign.started_at.timestamp(), campaign.paused_s, state)
                return
        give_up_s = time.time() + self._settings.placement_wait_s
        placed = self._place(plan, give_up_s)
        missing = {fault.device for fault in plan.faults} - {device.name for device, _ in placed}
        if missing:
            raise PlacementError(
                f"faults: device(s) {', '.join(sorted(missing))} are not among the campaign's devices "
                f"({', '.join(device.name for device, _ in placed)}); name one of those"
            )
        self._await_ray_nodes({node.name for _, node in placed}, give_up_s)
        start_s = time.time()
        self._specs(plan, placed, start_s)
        self._executor.ensure_capacity([slot.spec for slot in self._slots])
        with session_scope(self._sessions) as session:
            campaign = campaigns.get_campaign(session=session, campaign_id=self.campaign_id)
            campaigns.set_state(session=session, campaign=campaign, state=CampaignState.RUNNING)
        for slot in self._slots:
            self._spawn(slot, start_s)
        self._loop(plan, start_s)

    def _specs(self, plan: Plan, placed: list[tuple[Device, Node]], start_s: float) -> None:
        faults = tuple(fault.model_dump(mode="json") for fault in plan.faults)
        for position, (device, node) in enumerate(placed):
            spec = WorkerSpec(
                campaign_id=self.campaign_id,
                campaign_start_s=start_s,
                device_name=device.name,
                backend=device.backend,
                device_index=device.index,
                node_name=node.name,
                inbox_dir=node.inbox_dir,
                sim_state_dir=node.sim_state_dir,
                sample_interval_s=plan.sample_interval.total_seconds(),
                seed=plan.seed,
                faults=faults,
            )
            self._slots.append(
                _Slot(
                    device_id=device.id,
                    node_id=node.id,
                    position=position,
                    spec=spec,
                    node_down=node.name in self._lost_nodes or node.name in self._waiting_nodes,
                )
            )

    def _await_ray_nodes(self, names: set[str], give_up_s: float) -> None:
        """Give the campaign's nodes until `give_up_s` to join the Ray cluster; none at all is a placement error.

        Those still absent then wait inside the running campaign (see _spawn): a node's Ray worker may join late.
        """
        while True:
            absent = sorted(name for name in names if self._executor.node_up(name) is False)
            if not absent or time.time() >= give_up_s:
                break
            time.sleep(1.0)
        if absent and len(absent) == len(names):
            raise PlacementError(
                f"no Ray node carries {', '.join(node_resource(name) for name in absent)}: none of the campaign's "
                f"nodes ({', '.join(absent)}) has joined the Ray cluster; on each, run `ray start --address=HEAD:6379 "
                f"--resources='{{\"{node_resource('<node>')}\": 1}}'` with the node's name as its agent registered it "
                "(GET /api/v1/cluster shows what is missing)"
            )

    def _nodes_still_away(self, session: Session) -> tuple[dict[str, float], dict[str, float]]:
        """Nodes this campaign lost, and nodes it waits for, that it has not seen (again), from its stored events."""
        lost: dict[str, float] = {}
        waiting: dict[str, float] = {}
        names = {node.id: node.name for node in nodes.list_nodes(session=session)}
        for event in telemetry.list_events(session=session, campaign_id=self.campaign_id, limit=None):
            if event.node_id is None or event.device_id is not None:
                continue
            name = names[event.node_id]
            if event.kind == "node_lost":
                lost[name] = event.time_s
            elif event.kind == "node_returned":
                lost.pop(name, None)
            elif event.kind == "node_waiting":
                waiting[name] = event.time_s
            elif event.kind == "node_joined":
                waiting.pop(name, None)
        return lost, waiting

    def _resume(
        self, plan: Plan, placed: list[tuple[Device, Node]], start_s: float, paused_s: float, state: CampaignState
    ) -> None:
        """Take over a campaign an earlier controller process ran: its workers, its schedule, its pauses."""
        now_s = time.time()
        self._specs(plan, placed, start_s)
        for slot in self._slots:
            if not slot.node_down:
                self._spawn(slot, now_s)
        attached = [slot.handle for slot in self._slots if slot.handle is not None and slot.handle.attached]
        for handle in attached:
            # Whatever slot it runs was dispatched by the earlier process; the next one comes from this one.
            handle.interrupt()
        with session_scope(self._sessions) as session:
            ended = campaigns.finish_open_runs(
                session=session, campaign_id=self.campaign_id, ended_s=now_s, reason="controller restarted"
            )
            telemetry.record_event(
                session=session,
                campaign_id=self.campaign_id,
                device_id=None,
                time_s=now_s,
                kind="campaign_resumed",
                severity="info",
                message=f"the controller restarted and resumed the campaign: {len(attached)} of {len(self._slots)} "
                f"workers were still running and carry on, {ended} workload run(s) open at the restart end now",
            )
        log.warning(
            "campaign %s resumed with %d of %d workers still running", self.campaign_id, len(attached), len(self._slots)
        )
        # Time the controller was away counts as running: the workers went on with their slots meanwhile.
        paused_since_s = now_s if state is CampaignState.PAUSED else None
        self._loop(plan, start_s, paused_total_s=paused_s, paused_since_s=paused_since_s)

    def _loop(
        self, plan: Plan, start_s: float, *, paused_total_s: float = 0.0, paused_since_s: float | None = None
    ) -> None:
        rotation = Rotation(
            plan.workloads,
            rotation_s=plan.rotation.total_seconds(),
            start_s=start_s,
            collective=[load_workload(entry.name).collective for entry in plan.workloads],
        )
        end_s = start_s + plan.duration.total_seconds() + paused_total_s
        self._detection = DetectionThread(
            campaign_id=self.campaign_id,
            sessions=self._sessions,
            plan=plan,
            start_s=start_s,
            interval_s=detect_interval_s(plan, configured_s=self._settings.detect_interval_s),
        )
        self._detection.start()
        final = CampaignState.COMPLETED
        while True:
            now_s = time.time()
            with session_scope(self._sessions) as session:
                command = campaigns.take_command(session=session, campaign_id=self.campaign_id)
                campaign = campaigns.get_campaign(session=session, campaign_id=self.campaign_id)
                if command is CampaignCommand.STOP:
                    final = CampaignState.STOPPED
                    break
                if command is CampaignCommand.PAUSE and paused_since_s is None:
                    paused_since_s = now_s
                    self._interrupt_runs()
                    campaigns.set_state(
                        session=session,
                        campaign=campaign,
                        state=CampaignState.PAUSED,
                        paused_s=paused_total_s,
                    )
                if command is CampaignCommand.RESUME and paused_since_s is not None:
                    paused_total_s += now_s - paused_since_s
                    end_s += now_s - paused_since_s
                    paused_since_s = None
                    campaigns.set_state(
                        session=session,
                        campaign=campaign,
                        state=CampaignState.RUNNING,
                        paused_s=paused_total_s,
                    )
            if paused_since_s is None and now_s >= end_s:
                break
            for slot in self._slots:
                self._tend(slot, now_s=now_s, dispatch=paused_since_s is None, rotation=rotation, end_s=end_s)
            time.sleep(self._settings.supervisor_tick_s)
        if paused_since_s is not None:
            paused_total_s += time.time() - paused_since_s
        self._finish(plan, self._detection, final, paused_total_s)

    def _spawn(self, slot: _Slot, now_s: float) -> None:
        """Place the slot's worker on its node; never elsewhere: with its node out of the cluster, the slot waits."""
        node = slot.spec.node_name
        if self._executor.node_up(node) is False:
            if node in self._joined_nodes:
                self._lose_node(slot, now_s)
            else:
                self._await_node(slot, now_s)
            return
        self._joined_nodes.add(node)
        slot.handle = self._executor.spawn(slot.spec)
        slot.spawned_s = now_s

    def _await_node(self, slot: _Slot, now_s: float) -> None:
        """The slot's node has not joined the Ray cluster yet: record it once; the slot waits for it."""
        node = slot.spec.node_name
        self._hold_for_node(
            slot,
            now_s,
            away=self._waiting_nodes,
            kind="node_waiting",
            why=lambda waiting: (
                f"node {node} has not joined the Ray cluster (no live Ray node carries {node_resource(node)}); "
                f"its {waiting} worker(s) wait for it, the campaign goes on with the other nodes. On {node}, run "
                f"`ray start --address=HEAD:6379 --resources='{{\"{node_resource(node)}\": 1}}'`"
            ),
        )

    def _lose_node(self, slot: _Slot, now_s: float) -> None:
        """The slot's node left the cluster: record it once per outage; the slot waits for the node, no restarts."""
        if slot.handle is not None:
            slot.handle.kill()
            slot.handle = None
        self._close_run(slot, {"error": "node_lost"})
        node = slot.spec.node_name
        self._hold_for_node(
            slot,
            now_s,
            away=self._lost_nodes,
            kind="node_lost",
            why=lambda waiting: (
                f"node {node} left the cluster (its raylet is gone); its {waiting} worker(s) wait for it to "
                "come back, the campaign goes on with the other nodes"
            ),
        )

    def _hold_for_node(
        self, slot: _Slot, now_s: float, *, away: dict[str, float], kind: str, why: Callable[[int], str]
    ) -> None:
        """Park the slot until its node is in the cluster; the first slot of the node to find it away records it."""
        slot.node_down = True
        node = slot.spec.node_name
        if node in away:
            return
        away[node] = now_s
        waiting = sum(1 for other in self._slots if other.spec.node_name == node)
        self._node_event(slot, now_s, kind=kind, severity="warning", message=why(waiting))
        log.warning("campaign %s: %s: node %s", self.campaign_id, kind, node)

    def _node_event(self, slot: _Slot, now_s: float, *, kind: str, severity: str, message: str) -> None:
        """An event of the slot's node as a whole (no device), as the liveness detector reads node losses."""
        with session_scope(self._sessions) as session:
            telemetry.record_event(
                session=session,
                campaign_id=self.campaign_id,
                device_id=None,
                node_id=slot.node_id,
                time_s=now_s,
                kind=kind,
                severity=severity,
                message=message,
            )

    def _node_back(self, slot: _Slot, now_s: float) -> bool:
        """Whether the slot's lost node is in the cluster again (recorded once, by the first of its slots to see it)."""
        node = slot.spec.node_name
        # Seen in the cluster, not merely not known to be gone: a restarted controller knows the loss from the store.
        if self._executor.node_up(node) is not True:
            return False
        slot.node_down = False
        self._joined_nodes.add(node)
        waiting_s = self._waiting_nodes.pop(node, None)
        if waiting_s is not None:
            self._node_event(
                slot,
                now_s,
                kind="node_joined",
                severity="info",
                message=f"node {node} joined the Ray cluster after {now_s - waiting_s:.0f} s; its workers are placed "
                "on it",
            )
            log.warning("campaign %s: node %s joined", self.campaign_id, node)
        lost_s = self._lost_nodes.pop(node, None)
        if lost_s is not None:
            self._node_event(
                slot,
                now_s,
                kind="node_returned",
                severity="info",
                message=f"node {node} is back after {now_s - lost_s:.0f} s; its workers are placed on it again",
            )
            log.warning("campaign %s: node %s is back", self.campaign_id, node)
        return True

    def _tend(self, slot: _Slot, *, now_s: float, dispatch: bool, rotation: Rotation, end_s: float) -> None:
        if slot.retired:
            return
        if slot.node_down:
            if self._node_back(slot, now_s):
                self._spawn(slot, now_s)
            return
        if slot.handle is None:
            if now_s >= slot.next_restart_s:
                self._spawn(slot, now_s)
            return
        poll = slot.handle.poll()
        if poll.finished is not None:
            self._close_run(slot, poll.finished)
        if not poll.alive:
            if self._executor.node_up(slot.spec.node_name) is False:
                self._lose_node(slot, now_s)
                return
            self._replace(
                slot,
                now_s,
                kind="worker_died",
                message=f"worker of {slot.spec.device_name} died: {poll.error}",
            )
            return
        if slot.run_id is not None:
            if poll.last_progress_s is None:  # still starting: no heartbeat yet
                silent_since_s, allowed_s = slot.spawned_s, STARTUP_GRACE_S
            else:
                silent_since_s, allowed_s = (
                    max(poll.last_progress_s, slot.run_started_s),
                    self._settings.hang_timeout_s,
                )
            if now_s - silent_since_s > allowed_s:
                if self._executor.node_up(slot.spec.node_name) is False:
                    self._lose_node(slot, now_s)
                    return
                self._replace(
                    slot,
                    now_s,
                    kind="worker_hang",
                    message=f"worker of {slot.spec.device_name} made no progress for {now_s - silent_since_s:.0f} s",
                )
            return
        if dispatch and now_s < end_s - 0.5:
            number = rotation.slot_at(now_s)
            workload = rotation.workload(slot=number, device_position=slot.position)
            series = rotation.series(slot=number, device_position=slot.position)
            until_s = min(rotation.slot_end_s(number), end_s)
            with session_scope(self._sessions) as session:
                slot.run_id = campaigns.start_run(
                    session=session,
                    campaign_id=self.campaign_id,
                    device_id=slot.device_id,
                    workload=series,
                    started_s=now_s,
                )
            slot.run_started_s = now_s
            group = None
            if rotation.collective(number) and not slot.simulated:
                params = load_workload(workload.name).Params.model_validate(workload.params)
                per_node = isinstance(params, CollectiveParams) and params.scope == "node"
                group = self._rendezvous.group(
                    slot=number,
                    member=slot.position,
                    node=slot.spec.node_name if per_node else None,
                    members=self._group_candidates,
                )
            slot.handle.start_segment(
                Segment(
                    workload=workload.model_dump(mode="json"),
                    series=series,
                    until_s=until_s,
                    run_id=slot.run_id,
                    group=group,
                )
            )

    def _group_candidates(self, node: str | None) -> list[int]:
        """Positions of the live real devices (of `node`, or of the whole campaign) that form a slot's group."""
        return [
            slot.position
            for slot in self._slots
            if not slot.retired
            and slot.handle is not None
            and not slot.simulated
            and (node is None or slot.spec.node_name == node)
        ]

    def _close_run(self, slot: _Slot, summary: dict[str, object]) -> None:
        if slot.run_id is None:
            return
        clean = {key: value for key, value in summary.items() if isinstance(value, str | int | float)}
        with session_scope(self._sessions) as session:
            campaigns.finish_run(session=session, run_id=slot.run_id, ended_s=time.time(), summary=clean)
        slot.run_id = None

    def _replace(self, slot: _Slot, now_s: float, *, kind: str, message: str) -> None:
        """Record what went wrong, end the worker, and restart it with backoff unless it crash-loops."""
        if slot.handle is not None:
            slot.handle.kill()
        slot.handle = None
        self._close_run(slot, {"error": kind})
        slot.restarts_s = [t for t in slot.restarts_s if now_s - t < CRASH_LOOP_WINDOW_S] + [now_s]
        with session_scope(self._sessions) as session:
            telemetry.record_event(
                session=session,
                campaign_id=self.campaign_id,
                device_id=slot.device_id,
                node_id=slot.node_id,
                time_s=now_s,
                kind=kind,
                severity="warning",
                message=message,
            )
            if len(slot.restarts_s) > CRASH_LOOP_RESTARTS:
                slot.retired = True
                telemetry.record_event(
                    session=session,
                    campaign_id=self.campaign_id,
                    device_id=slot.device_id,
                    node_id=slot.node_id,
                    time_s=now_s,
                    kind="worker_crash_loop",
                    severity="critical",
                    message=f"{slot.spec.device_name} failed {len(slot.restarts_s)} times in "
                    f"{CRASH_LOOP_WINDOW_S / 60:.0f} min; no more restarts, the campaign goes on without it",
                )
                return
        slot.next_restart_s = now_s + min(60.0, 2.0 ** (len(slot.restarts_s) - 1))

    def _interrupt_runs(self) -> None:
        """End every dispatched slot early; a worker with no slot has nothing to interrupt."""
        for slot in self._slots:
            if slot.handle is not None and slot.run_id is not None:
                slot.handle.interrupt()

    def _finish(self, plan: Plan, detection: DetectionThread, final: CampaignState, paused_total_s: float) -> None:
        # No new pass while the workers wind down: the final one, below, sees all they reported.
        detection.stop()
        self._interrupt_runs()
        wait_until_s = time.time() + 2 * plan.sample_interval.total_seconds() + 5.0
        while time.time() < wait_until_s and any(slot.run_id is not None for slot in self._slots):
            for slot in self._slots:
                if slot.handle is not None and slot.run_id is not None:
                    poll = slot.handle.poll()
                    if poll.finished is not None or not poll.alive:
                        self._close_run(slot, poll.finished or {"error": "ended with the campaign"})
            time.sleep(0.2)
        for slot in self._slots:
            self._close_run(slot, {"error": "ended with the campaign"})
            if slot.handle is not None:
                slot.handle.kill()
                slot.handle = None
        time.sleep(REPORT_SETTLE_S)
        # Run to completion before the campaign is marked finished: the report judges the stored findings.
        detection.finish()
        with session_scope(self._sessions) as session:
            campaign = campaigns.get_campaign(session=session, campaign_id=self.campaign_id)
            campaigns.set_state(session=session, campaign=campaign, state=final, paused_s=paused_total_s)
