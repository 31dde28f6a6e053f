"""Health check of a worker process, for docker-compose / Kubernetes probes.

    python -m workers.health        exit 0 when a worker on this host polls the main task queue
    python -m workers.health QUEUE  ... polls QUEUE (a worker run with --task-queue QUEUE)

Temporal records who polled a task queue recently; a worker that hangs or lost its connection
stops showing up there within a minute. Read-only: it never starts or signals a workflow.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from settlepay import task_queues, temporal
from settlepay.config import Settings, get_settings


async def pollers(settings: Settings, queue: str = task_queues.MAIN) -> list[str]:
    """Identities (`pid@host` by default) that polled `queue` for workflow tasks recently."""
    client = await temporal.connect(settings)
    answer = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    return [poller.identity for poller in answer.pollers]


def main(argv: list[str] | None = None) -> int:
    host = socket.gethostname()
    queue = argv[0] if argv else task_queues.MAIN
    try:
        identities = asyncio.run(pollers(get_settings(), queue))
    except Exception as error:  # Temporal unreachable counts as unhealthy, with the reason
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if any(identity.endswith("@" + host) for identity in identities):
        print("healthy")
        return 0
    print(f"unhealthy: no poller from {host} on {queue} (seen: {identities})",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
