"""Jobs of the posts domain: the publish job of each post and the periodic reconciler."""

from __future__ import annotations

from procrastinate import JobContext

from tidings.core.jobs import job_app
from tidings.posts.engine import on_publish_job, process_worker_name, reconcile
from tidings.posts.scheduling import PUBLISH_TASK, RECONCILE_TASK


def worker_of(context: JobContext) -> str:
    """The attempt owner for jobs of this worker: its Procrastinate id, whose heartbeat tells the
    reconciler whether it is still alive."""
    worker_id = context.job.worker_id
    return f"pw:{worker_id}" if worker_id is not None else process_worker_name()


@job_app.task(name=PUBLISH_TASK, pass_context=True)
async def publish(context: JobContext, post_id: str, at: int) -> None:
    """Publish ``post_id`` if it is still QUEUE at publish date ``at`` (epoch microseconds)."""
    await on_publish_job(post_id, at, worker=worker_of(context))


@job_app.periodic(cron="* * * * *")
@job_app.task(name=RECONCILE_TASK, queueing_lock=RECONCILE_TASK)
async def reconcile_posts(timestamp: int) -> None:
    """Resolve interrupted publishes and re-queue due posts that lost their job (each minute)."""
    await reconcile()
