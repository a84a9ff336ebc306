"""Websocket consumers streaming job events for one job, one case or one validation study.

On connect a client first gets a ``snapshot`` (current state of every job it
watches, with the finished contour of succeeded ones), then live events. The
consumer joins the group *before* taking the snapshot and drops events whose
``seq`` is not newer than what it already sent, so nothing is missed or repeated.
Close codes: 4401 not authenticated, 4403/4404 not allowed or not found.
"""
from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.jobs import events

CASE_SNAPSHOT_JOBS = 20


class _JobEventsConsumer(AsyncJsonWebsocketConsumer):
    group_name: str = ""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        allowed = await database_sync_to_async(self.allowed)(user)
        if not allowed:
            await self.close(code=4403)
            return
        self.seen: dict[int, int] = {}
        events.register_consumer_loop(asyncio.get_running_loop())
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        jobs = await database_sync_to_async(self.snapshot)(user)
        for job in jobs:
            self.seen[job["job"]] = job["seq"]
        await self.send_json({"type": "snapshot", "jobs": jobs})

    async def disconnect(self, code):
        if self.group_name and hasattr(self, "seen"):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def job_event(self, event):
        data = event["data"]
        if data["seq"] <= self.seen.get(data["job"], -1):
            return
        self.seen[data["job"]] = data["seq"]
        await self.send_json({"type": event["event"], "job": data})

    def allowed(self, user) -> bool:
        raise NotImplementedError

    def snapshot(self, user) -> list[dict]:
        raise NotImplementedError


class JobConsumer(_JobEventsConsumer):
    async def connect(self):
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.group_name = events.job_group(self.job_id)
        await super().connect()

    def allowed(self, user) -> bool:
        from portal.jobs.services import visible_jobs

        return visible_jobs(user).filter(pk=self.job_id).exists()

    def snapshot(self, user) -> list[dict]:
        from portal.jobs.services import snapshot, visible_jobs

        return [snapshot(job) for job in visible_jobs(user).filter(pk=self.job_id)]


class CaseConsumer(_JobEventsConsumer):
    async def connect(self):
        self.case_id = int(self.scope["url_route"]["kwargs"]["case_id"])
        self.group_name = events.case_group(self.case_id)
        await super().connect()

    def allowed(self, user) -> bool:
        from portal.accounts import scoping
        from portal.cases.models import Case

        return not scoping.is_worker(user) and scoping.can_view_case(user, Case.objects.filter(
            pk=self.case_id).first())

    def snapshot(self, user) -> list[dict]:
        from portal.jobs.services import snapshot, visible_jobs

        jobs = visible_jobs(user).filter(case_id=self.case_id).order_by("-created")[:CASE_SNAPSHOT_JOBS]
        return [snapshot(job) for job in jobs]


class StudyConsumer(_JobEventsConsumer):
    """Jobs of one validation study (batch runs): study coordinators and administrators."""

    async def connect(self):
        self.study_key = self.scope["url_route"]["kwargs"]["study_key"]
        try:
            self.group_name = events.study_group(self.study_key)
        except ValueError:
            await self.close(code=4404)
            return
        await super().connect()

    def allowed(self, user) -> bool:
        from portal.accounts import scoping

        return scoping.is_coordinator(user)

    def snapshot(self, user) -> list[dict]:
        from portal.jobs.services import visible_jobs

        # Study snapshots carry states only: a study can hold hundreds of contours.
        return [events.job_state(job) for job in visible_jobs(user).filter(study_key=self.study_key)]
