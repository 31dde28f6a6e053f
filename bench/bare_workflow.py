"""The bench's yardstick: a workflow with the deposit's shape (3 activities) and no work in it.

Run by bench/deposits.py in a worker process of its own, with the same data converter and the
same activity thread pool as `settlepay worker`, so the ratio deposits/bare says what the
deposit's real work (database, gateway, ledger, API) costs on top of Temporal itself.
Imports only temporalio at module level: the workflow sandbox re-imports this module.
"""


from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

QUEUE = "bench-bare"
STEP = timedelta(seconds=20)
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10))


@activity.defn(name="bare.step")
def bare_step(n: int) -> int:
    return n + 1


@workflow.defn(name="BareDeposit")
class BareDepositWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        for _ in range(3):   # gate, create payment, credit
            n = await workflow.execute_activity(bare_step, n, start_to_close_timeout=STEP,
                                                retry_policy=RETRY)
        return n


async def serve(address: str, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from settlepay.config import Settings
    from settlepay.temporal import connect
    from workers.main import workflow_runner

    # The worker's own client factory and sandbox: the same payload codec, interceptors and
    # workflow runner as `settlepay worker`, so the yardstick pays what the deposit pays for
    # Temporal itself.
    client = await connect(Settings(temporal_address=address))
    with ThreadPoolExecutor(max_workers=threads) as executor:
        await Worker(client, task_queue=QUEUE, workflows=[BareDepositWorkflow],
                     activities=[bare_step], activity_executor=executor,
                     max_concurrent_activities=threads, workflow_runner=workflow_runner()).run()

