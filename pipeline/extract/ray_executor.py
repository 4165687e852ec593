"""The Ray executor: run an extractor in Ray actors across a cluster; the driver alone writes the store.

Each actor gets the pickled extractor once, calls `setup()` once (the model loads once per actor and again only
if the actor is restarted) and then processes work units. The driver plans the units exactly as the local
executor does (`executor.run`), keeps a few units in flight per actor, and hands every result back to `run`, which
writes each shard when its units are in. Units, their order inside a shard and the writer are the same as
locally, so the store is the same bytes whichever executor made it.

Failures:
- an actor process that dies (SIGKILL, OOM killer, lost node) is restarted by Ray (`max_restarts`), which runs
  the units it held again (`max_task_retries`); an actor whose restarts are spent leaves the pool and the driver
  resubmits its units to the others. Finished shards are on disk already and never redone.
- an exception raised inside a unit is retried `unit_retries` times, then the run fails naming the unit's
  utterances and the error. (Per-utterance media failures are not exceptions: extractors return them as missing.)
- an extractor whose `setup()` raises fails the run at once: a model missing on a node is a configuration error,
  and so is a corpus root a node cannot see.

Actors work in the driver's working directory when their node has it (a filesystem every node mounts at the same
path, as the corpus must be), so relative corpus roots resolve as they do for the driver; the store is written by
the driver only.

`address`: `local` starts a Ray instance on this machine with `num_cpus` CPUs and shuts it down afterwards; `auto`
joins the cluster this machine belongs to and `ray://host:port` (or `host:port`) a remote one, and both leave the
cluster running. A Ray connection already open in this process is used as it is and left open.

Ray is imported only when this executor runs; nothing else in the pipeline needs it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.extract import Extractor, ExtractorConfigError
from pipeline.extract.executor import ExtractionSummary, Task, _process_checked, run, set_threads
from pipeline.manifest import Utterance
from pipeline.store import StoreWriter, UtteranceFeatures

log = logging.getLogger(__name__)

RAY_DEFAULTS: dict[str, Any] = {
    "address": "local",  # local | auto | ray://host:port | host:port
    "actors": None,  # actors (model copies) to run; null = the stage's `workers`
    "cpus_per_actor": None,  # CPUs Ray reserves per actor; null = the stage's `threads_per_worker`
    "gpus_per_actor": 0,  # GPUs per actor (fractions share a GPU)
    "num_cpus": None,  # CPUs of a `local` instance; null = actors x cpus_per_actor
    "num_gpus": None,  # GPUs of a `local` instance; null = actors x gpus_per_actor, rounded up
    "max_restarts": 3,  # restarts of each actor after its process dies (-1 = no limit)
    "max_task_retries": 3,  # Ray's reruns of the units an actor held when it died (-1 = no limit)
    "unit_retries": 2,  # reruns of a unit whose extractor raised, before the run fails
    "in_flight_per_actor": 2,  # units queued on each actor so it never waits for the driver
    "actor_start_timeout_s": 600,  # fail when no actor has been placed and set up by then
    "runtime_env": None,  # Ray runtime_env for the job (env_vars, working_dir, ...) when this run connects
}


class RayExtractionError(AffectflowError, RuntimeError):
    """The Ray run could not finish: a unit kept failing, every actor died, or no actor could start."""


@dataclass(frozen=True)
class RaySettings:
    address: str
    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int
    num_cpus: float
    num_gpus: int
    max_restarts: int
    max_task_retries: int
    unit_retries: int
    in_flight_per_actor: int
    actor_start_timeout_s: float
    runtime_env: dict[str, Any] | None


def _number(options: dict[str, Any], key: str, minimum: float, integer: bool) -> Any:
    value = options[key]
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ExtractorConfigError(f"ray.{key} must be {kind} >= {minimum}, got {value!r}")
    return value


def ray_settings(workers: int, threads_per_worker: int, options: dict[str, Any]) -> RaySettings:
    """Check the `ray` options of a stage (before any work or connection) and fill in the defaults."""
    unknown = sorted(set(options) - set(RAY_DEFAULTS))
    if unknown:
        raise ExtractorConfigError(f"ray: unknown options {unknown}; known: {sorted(RAY_DEFAULTS)}")
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ExtractorConfigError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
    opts = {**RAY_DEFAULTS, **options}
    if not isinstance(opts["address"], str) or not opts["address"]:
        raise ExtractorConfigError(f"ray.address must be local, auto, ray://host:port or host:port, "
                                   f"got {opts['address']!r}")
    if opts["actors"] is None:
        opts["actors"] = workers
    if opts["cpus_per_actor"] is None:
        opts["cpus_per_actor"] = threads_per_worker
    actors = _number(opts, "actors", 1, True)
    cpus = _number(opts, "cpus_per_actor", 0, False)
    gpus = _number(opts, "gpus_per_actor", 0, False)
    if opts["num_cpus"] is None:
        opts["num_cpus"] = actors * cpus
    if opts["num_gpus"] is None:
        opts["num_gpus"] = math.ceil(actors * gpus)
    if opts["runtime_env"] is not None and not isinstance(opts["runtime_env"], dict):
        raise ExtractorConfigError(f"ray.runtime_env must be a mapping or null, got {opts['runtime_env']!r}")
    return RaySettings(
        address=opts["address"], actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus,
        threads=threads_per_worker, num_cpus=_number(opts, "num_cpus", 0, False),
        num_gpus=_number(opts, "num_gpus", 0, True), max_restarts=_number(opts, "max_restarts", -1, True),
        max_task_retries=_number(opts, "max_task_retries", -1, True),
        unit_retries=_number(opts, "unit_retries", 0, True),
        in_flight_per_actor=_number(opts, "in_flight_per_actor", 1, True),
        actor_start_timeout_s=_number(opts, "actor_start_timeout_s", 0, False), runtime_env=opts["runtime_env"])


class ExtractionActor:
    """One model copy on a Ray worker (made remote with `ray.remote` at run time, so importing needs no Ray)."""

    def __init__(self, extractor: Extractor, threads: int, workdir: str) -> None:
        logging.basicConfig(level=logging.WARNING)
        if os.path.isdir(workdir):  # a shared filesystem: relative corpus roots resolve as in the driver
            os.chdir(workdir)
        if extractor.modality != "text" and not extractor.corpus_root.is_dir():
            raise FileNotFoundError(f"corpus root {extractor.corpus_root} (driver's working directory {workdir}) is "
                                    f"not on {socket.gethostname()}: put the corpus on a filesystem every node "
                                    "mounts at the same path")
        extractor.setup()
        set_threads(threads)
        self.extractor = extractor

    def where(self) -> tuple[str, int]:
        """Host and process id: the driver logs them and notices restarts when the pid changes."""
        return socket.gethostname(), os.getpid()

    def process(self, utts: list[Utterance]) -> tuple[int, list[UtteranceFeatures]]:
        return os.getpid(), _process_checked(self.extractor, utts)


def _describe_unit(task: Task) -> str:
    ids = [u.utt_id for u in task[2]]
    return "the unit of " + ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")


def _cause(err: Exception) -> str:
    """The extractor's own exception inside a Ray error, in one line (the full traceback stays on the chain)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]  # Ray puts the exception last
    return lines[-1] if lines else type(err).__name__


class ActorPool:
    """Actors fed from a queue of work units; yields (shard position, unit position, results) as units finish."""

    def __init__(self, ray: Any, extractor: Extractor, settings: RaySettings) -> None:
        self.ray = ray
        self.extractor = extractor
        self.settings = settings
        self.actors: list[Any] = []
        self.starting: dict[Any, int] = {}  # readiness ref -> actor, until the actor has set up
        self.restarts = 0
        self.retries = 0

    def start(self, count: int) -> None:
        """Create the actors; they load their models while the driver plans the units (nothing waits here)."""
        s = self.settings
        remote = self.ray.remote(ExtractionActor).options(
            num_cpus=s.cpus_per_actor, num_gpus=s.gpus_per_actor, max_restarts=s.max_restarts,
            max_task_retries=s.max_task_retries)
        # the extractor goes by value in each creation task (it is small: models load in setup), so Ray keeps it
        # with the task and a restarted actor gets it again
        self.actors = [remote.remote(self.extractor, s.threads, os.getcwd()) for _ in range(count)]
        self.starting = {actor.where.remote(): i for i, actor in enumerate(self.actors)}

    def results(self, tasks: list[Task]) -> Iterator[tuple[int, int, list[UtteranceFeatures]]]:
        if not tasks:
            return
        if not self.actors:
            self.start(min(self.settings.actors, len(tasks)))
        yield from _PoolRun(self, tasks).results()

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)  # frees the cluster's resources at once; a restarting actor stays dead
        self.actors = []


class _PoolRun:
    """One `ActorPool.results` call: the units queued and in flight, and one handler per pool event (an actor
    ready, a unit done, a unit raised, an actor lost, a Ray failure)."""

    def __init__(self, pool: ActorPool, tasks: list[Task]) -> None:
        self.pool, self.tasks = pool, tasks
        self.ray, self.s, self.name = pool.ray, pool.settings, pool.extractor.name
        self.pids: dict[int, int] = {}  # ready actor -> its current process id
        self.load: dict[int, int] = {}  # ready actor -> units in flight
        self.in_flight: dict[Any, tuple[int, int, int]] = {}  # result ref -> (task index, actor, submission number)
        self.submitted = 0
        self.queue = deque(range(len(tasks)))
        self.errors: Counter[int] = Counter()
        self.deaths: list[str] = []
        # per actor, the earliest (submission number, unit) whose call found it unreachable: a SIGKILLed actor can
        # answer "unavailable" for the unit it was running before it is reported dead
        self.unreachable: dict[int, tuple[int, int]] = {}
        self.deadline = time.monotonic() + self.s.actor_start_timeout_s

    def results(self) -> Iterator[tuple[int, int, list[UtteranceFeatures]]]:
        while self.queue or self.in_flight:
            self._submit()
            ref = self._next_done()
            if ref in self.pool.starting:
                self._on_actor_ready(ref)
                continue
            finished = self._on_unit_done(ref)
            if finished is not None:
                yield finished

    def _submit(self) -> None:
        """Fill every ready actor up to `in_flight_per_actor`, the least loaded first."""
        actors, load, queue = self.pool.actors, self.load, self.queue
        for i in sorted(load, key=load.__getitem__):
            while queue and load[i] < self.s.in_flight_per_actor:
                t = queue.popleft()
                self.in_flight[actors[i].process.remote(self.tasks[t][2])] = (t, i, self.submitted)
                self.submitted += 1
                load[i] += 1

    def _next_done(self) -> Any:
        """The next finished reference: a unit's result or an actor's readiness."""
        s, starting = self.s, self.pool.starting
        if not self.in_flight and not starting:
            raise RayExtractionError(
                f"{self.name}: all {len(self.pool.actors)} Ray actors died (max_restarts="
                f"{s.max_restarts} each) with {len(self.queue)} units left; " + "; ".join(self.deaths[-3:]))
        timeout = None if self.in_flight else max(self.deadline - time.monotonic(), 0.0)
        done, _ = self.ray.wait([*self.in_flight, *starting], num_returns=1, timeout=timeout)
        if not done:
            raise RayExtractionError(
                f"{self.name}: no Ray actor was placed and set up within {s.actor_start_timeout_s} s; "
                f"each asks for {s.cpus_per_actor} CPUs and {s.gpus_per_actor} GPUs, the cluster has "
                f"{self.ray.cluster_resources()} ({self.ray.available_resources()} free)")
        return done[0]

    def _on_actor_ready(self, ref: Any) -> None:
        i = self.pool.starting.pop(ref)
        try:
            host, pid = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as err:
            if err.actor_init_failed:  # setup() raised: the same would happen on every node
                raise RayExtractionError(f"{self.name}: setup failed in a Ray actor: {_cause(err)}") from err
            self.deaths.append(f"actor {i} died while starting: {str(err).splitlines()[0]}")
            log.warning("ray %s", self.deaths[-1])
            return
        self.pids[i], self.load[i] = pid, 0
        log.info("ray actor %d ready on %s (pid %d)", i, host, pid)

    def _on_unit_done(self, ref: Any) -> tuple[int, int, list[UtteranceFeatures]] | None:
        """The unit's (shard position, unit position, results), or None when it failed and went back in the queue."""
        exc = self.ray.exceptions
        t, i, number = self.in_flight.pop(ref)
        if i in self.load:
            self.load[i] -= 1
        try:
            pid, results = self.ray.get(ref)
        except exc.RayTaskError as err:  # the extractor raised inside the unit
            self._on_unit_raised(t, err)
            return None
        except exc.RayActorError as err:  # the actor is gone for good (restarts spent) or out of reach
            self._on_actor_lost(t, i, number, err)
            return None
        except exc.RayError as err:  # lost objects, worker crash outside an actor, OOM kill of the task
            self._on_ray_failure(t, err)
            return None
        self.unreachable.pop(i, None)  # it answered: an earlier "unavailable" was not its death
        if self.pids.get(i) != pid:
            self.pool.restarts += 1
            log.warning("ray actor %d was restarted (pid %s -> %d); its units were run again", i, self.pids.get(i),
                        pid)
            self.pids[i] = pid
        pos, k, _ = self.tasks[t]
        return pos, k, results

    def _run_again(self, t: int) -> None:
        self.pool.retries += 1
        self.queue.appendleft(t)

    def _on_unit_raised(self, t: int, err: Exception) -> None:
        self.errors[t] += 1
        if self.errors[t] > self.s.unit_retries:
            raise RayExtractionError(f"{self.name}: {_describe_unit(self.tasks[t])} raised "
                                     f"{self.errors[t]} times; last error: {_cause(err)}") from err
        log.warning("%s raised (try %d of %d), running it again: %s", _describe_unit(self.tasks[t]), self.errors[t],
                    self.s.unit_retries + 1, _cause(err))
        self._run_again(t)

    def _on_actor_lost(self, t: int, i: int, number: int, err: Exception) -> None:
        if isinstance(err, getattr(self.ray.exceptions, "ActorUnavailableError", ())):
            self.unreachable[i] = min(self.unreachable.get(i, (number, t)), (number, t))
            self.errors[t] += 1
            if self.errors[t] > self.s.unit_retries:
                raise RayExtractionError(f"{self.name}: {_describe_unit(self.tasks[t])}: its actor "
                                         f"stayed unreachable: {err}") from err
        elif i in self.load:  # the first death reported for this actor
            # the units it held, in submission order: the first was running, unless the process died just
            # after finishing it and took the reply along, in which case the next one was
            held = sorted({(number, t), self.unreachable.get(i, (number, t)),
                           *((n, u) for u, a, n in self.in_flight.values() if a == i)})
            units = dict.fromkeys(u for _, u in held)  # a unit resubmitted after "unavailable" once
            del self.load[i]  # no more units for it; the queue goes to the others
            self.deaths.append(f"actor {i} (pid {self.pids.get(i)}) died holding "
                               + "; ".join(_describe_unit(self.tasks[u]) for u in units)
                               + f": {str(err).splitlines()[0]}")
            log.warning("ray %s", self.deaths[-1])
        self._run_again(t)

    def _on_ray_failure(self, t: int, err: Exception) -> None:
        self.errors[t] += 1
        if self.errors[t] > self.s.unit_retries:
            raise RayExtractionError(f"{self.name}: {_describe_unit(self.tasks[t])} failed "
                                     f"{self.errors[t]} times in Ray: {err}") from err
        self._run_again(t)


@contextmanager
def ray_connection(settings: RaySettings) -> Iterator[Any]:
    """The `ray` module, connected as `settings.address` says; disconnects (and stops a local instance) after."""
    try:
        import ray
    except ImportError as err:
        raise ExtractorConfigError("executor 'ray' needs Ray: pip install 'affectflow[ray]' "
                                   "(or 'ray[default]>=2.9')") from err
    if ray.is_initialized():
        log.info("using the Ray connection already open in this process (ray.address %r not used)", settings.address)
        yield ray
        return
    start = time.perf_counter()
    if settings.address == "local":
        ray.init(address="local", num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, include_dashboard=False,
                 runtime_env=settings.runtime_env)
        log.info("started a local Ray instance with %s CPUs and %d GPUs in %.1f s", settings.num_cpus,
                 settings.num_gpus, time.perf_counter() - start)
    else:
        try:
            ray.init(address=settings.address, runtime_env=settings.runtime_env)
        except (ConnectionError, RuntimeError) as err:
            raise RayExtractionError(f"could not connect to the Ray cluster at {settings.address!r} ({err}); start "
                                     "it first (`ray start --head` on the head node) or set ray.address") from err
        log.info("connected to the Ray cluster at %s in %.1f s: %s", settings.address, time.perf_counter() - start,
                 ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()  # stops what ray.init started here; a cluster we joined keeps running


def run_ray(extractor: Extractor, writer: StoreWriter, utts_by_id: dict[str, Utterance], *, address: str = "local",
            workers: int = 1, threads_per_worker: int = 1, progress: bool = True,
            **ray_options: Any) -> ExtractionSummary:
    """Extract the writer's pending shards in Ray actors; `ray_options` are the stage's `ray` mapping."""
    settings = ray_settings(workers, threads_per_worker, {"address": address, **ray_options})
    pending_utterances = sum(len(shard.utt_ids) for shard in writer.pending())
    if not pending_utterances:
        return run(extractor, writer, utts_by_id, lambda tasks: iter(()), progress)  # no cluster for a no-op
    with ray_connection(settings) as ray:
        pool = ActorPool(ray, extractor, settings)
        try:
            pool.start(min(settings.actors, pending_utterances))  # setting up while `run` plans the units
            summary = run(extractor, writer, utts_by_id, pool.results, progress)
        finally:
            pool.close()
    summary.restarts, summary.retries = pool.restarts, pool.retries
    log.info("ray: %d actors, %d actor restarts, %d units run again", settings.actors, pool.restarts, pool.retries)
    return summary

