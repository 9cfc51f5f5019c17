"""The ``local`` launcher: this process (one worker; the jobs of a split then share their transformed
test images) or a pool of spawned processes on this host."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from benchmark.engine.job import run_job
from benchmark.engine.launchers.base import (LaunchRequest, Outcome, describe_error, prepare_worker,
                                             register_launcher, run_in_worker)
from benchmark.engine.targets import TargetBuilder


@register_launcher("local", description="this process, or a pool of spawned processes on this host")
def launch_local(request: LaunchRequest) -> Iterator[Outcome]:
    if request.workers <= 1 or len(request.todo) <= 1:
        yield from _in_process(request)
        return
    plan = request.plan
    with ProcessPoolExecutor(request.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_in_worker, j, s, plan.sweep.protocol, plan.sweep.out_dir, plan.extension,
                               request.settings): j for j, s in request.todo}
        for fut in as_completed(futures):
            try:
                yield Outcome(futures[fut], Path(fut.result()))
            except Exception as e:  # noqa: BLE001 - one job's failure is reported; a dead pool process fails its job
                yield Outcome(futures[fut], None, describe_error(e))


def _in_process(request: LaunchRequest) -> Iterator[Outcome]:
    """Every job here, on the plan's own data; one target builder per split."""
    device = prepare_worker(request.settings)
    plan = request.plan
    builders: dict[str, TargetBuilder] = {}
    for job, split in request.todo:
        builder = builders.setdefault(split.hash, TargetBuilder(split, plan.by_id))
        try:
            yield Outcome(job, run_job(job, split, plan.by_id, plan.sweep.out_dir, device=device, builder=builder))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - one job's failure is reported; the others still run
            yield Outcome(job, None, describe_error(e))
