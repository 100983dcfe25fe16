"""``launcher=ray``: the learner and the actors as Ray actors on a Ray cluster.

Ray only places, supervises and tears down: each Ray actor (a :class:`ProcessHost`) writes its
config on its node and starts the same process ``launcher=local`` starts (``thoughtmdp
learner`` or ``thoughtmdp actor``, the learner's ranks under the DeepSpeed launcher), which
dies with it. The episodes and the adapters still travel over ZeroMQ between those processes.

The cluster is the one ``ray.init`` finds (``RAY_ADDRESS``, else a new local one). The learner
runs on this node unless ``ray.learner_labels`` names others, so ``run_dir`` (metrics,
checkpoints, adapters for the held-out evaluation) is on this node's disk. An actor whose
process exits with an error takes its Ray actor down with it, and Ray restarts it (up to
``ray.max_restarts``), under the same name; the run goes on. A learner that fails ends the run
with :class:`~thoughtmdp.training.launch.ProcessFailed`; ``--resume`` continues it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thoughtmdp.errors import DependencyNotInstalled
from thoughtmdp.settings.convert import to_yaml
from thoughtmdp.settings.train import TrainConfig, actor_config, learner_config
from thoughtmdp.training import launch
from thoughtmdp.training.placement import Slot

FORWARDED_ENV = ("THOUGHTMDP_", "HF_", "TRANSFORMERS_", "DS_", "VLLM_", "TORCH_")
"""Variables of this process the Ray actors pass on to their processes (other nodes' Ray
workers do not inherit this process's environment)."""
ANY_HOST = ("0.0.0.0", "*")
CALL_TIMEOUT_S = 60.0


class ProcessHost:
    """A Ray actor that runs one learner or actor process on its node.

    Args:
        name: ``learner`` or the actor's name.
        config: The process's config (YAML), written to ``config_path`` on this node.
        config_path: Where the process reads it.
        run_dir: The run folder (the log goes to ``run_dir/logs``).
        threads: Threads of the process.
        ranks: The learner's ranks (more than 1: the DeepSpeed launcher).
        env: Variables added to the process's environment.
        exit_with_process: Exit this Ray actor when the process fails, for Ray to restart it.
    """

    def __init__(
        self,
        name: str,
        config: str,
        config_path: str,
        run_dir: str,
        threads: int,
        ranks: int = 1,
        env: dict[str, str] | None = None,
        exit_with_process: bool = False,
    ) -> None:
        os.environ.update(env or {})
        path = Path(config_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        log = Path(run_dir) / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(f"thoughtmdp: {name} starts on {socket.gethostname()} ({self.node_ip()})\n")
        slot = Slot(name, ranks=ranks)
        if name == "learner":
            self.child = launch.start_learner(slot, path, log, threads)
        else:
            self.child = launch.start(slot, ["actor", "--config", str(path)], log, threads)
        self.stopping = False
        if exit_with_process:
            threading.Thread(target=self._exit_with_process, daemon=True).start()

    def _exit_with_process(self) -> None:
        code = self.child.process.wait()
        if code != 0 and not self.stopping:
            self.child.end(signal.SIGKILL, 0.0)  # its engine processes go too
            os._exit(1)

    def node_ip(self) -> str:
        """The IP address of this actor's node."""
        return str(_ray().util.get_node_ip_address())

    def poll(self) -> int | None:
        """The process's exit status, ``None`` while it runs."""
        return self.child.process.poll()

    def tail(self) -> str:
        """The end of the process's log."""
        return self.child.tail()

    def stop(self, signum: int, grace_s: float) -> int | None:
        """Stop the process (see :meth:`launch.Child.end`); returns its exit status."""
        self.stopping = True
        self.child.end(signum, grace_s)
        return self.child.process.returncode


@dataclass
class RayProcesses:
    """The Ray actors of a run: the learner's host and one host per actor."""

    learner: Any
    actors: list[Any]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the learner (it checkpoints), then the actors; then end the Ray actors."""
        ray = _ray()
        for hosts, grace_s in (([self.learner], launch.STOP_GRACE_S), (self.actors, 5.0)):
            calls = [host.stop.remote(signum, grace_s) for host in hosts]
            # a host already gone: ray.kill below ends what is left
            with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                ray.get(calls, timeout=grace_s + CALL_TIMEOUT_S)
        for host in [self.learner, *self.actors]:
            ray.kill(host, no_restart=True)
        ray.shutdown()


def launch_on_ray(resolved: TrainConfig) -> RayProcesses:
    """Start the learner and the actors of a resolved run as Ray actors.

    Raises:
        DependencyNotInstalled: If Ray is not installed.
    """
    try:
        ray = importlib.import_module("ray")
        strategies = importlib.import_module("ray.util.scheduling_strategies")
    except ImportError:
        raise DependencyNotInstalled(
            'launcher=ray needs Ray: pip install "thoughtmdp[ray]"'
        ) from None
    settings, run_dir = resolved.ray, resolved.run_dir
    assert run_dir is not None
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    host: Any = ray.remote(ProcessHost)
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    configs = run_dir / "configs"
    learner_place: dict[str, Any] = {"label_selector": settings.learner_labels}
    if not settings.learner_labels:
        here = ray.get_runtime_context().get_node_id()
        strategy = strategies.NodeAffinitySchedulingStrategy(here, soft=False)
        learner_place = {"scheduling_strategy": strategy}
    learner = host.options(
        num_cpus=settings.learner_cpus, num_gpus=settings.learner_gpus, **learner_place
    ).remote(
        "learner",
        to_yaml(learner_config(resolved)),
        str(configs / "learner.yaml"),
        str(run_dir),
        _threads(resolved, settings.learner_cpus),
        resolved.learner.num_processes,
        env,
    )
    address = _reachable(resolved.learner.bind, ray.get(learner.node_ip.remote()))
    actors = []
    for k in range(resolved.actors):
        config = replace(actor_config(resolved, k), learner=address)
        actors.append(
            host.options(
                num_cpus=settings.actor_cpus,
                num_gpus=settings.actor_gpus,
                label_selector=settings.actor_labels,
                max_restarts=settings.max_restarts,
            ).remote(
                config.name,
                to_yaml(config),
                str(configs / f"{config.name}.yaml"),
                str(run_dir),
                _threads(resolved, settings.actor_cpus),
                1,
                env,
                True,
            )
        )
    return RayProcesses(learner, actors)


def supervise_on_ray(
    processes: RayProcesses, deadline: float | None, on_poll: Callable[[], None] = lambda: None
) -> bool:
    """Wait for the learner to finish; returns whether the time budget stopped it.

    Raises:
        ProcessFailed: If the learner exits with an error (the message holds its log's end).
    """
    ray = _ray()
    stopped_by_time = False
    while True:
        on_poll()
        code = ray.get(processes.learner.poll.remote(), timeout=CALL_TIMEOUT_S)
        if code is not None:
            if code != 0 and not (stopped_by_time and code == -signal.SIGTERM):
                tail = ray.get(processes.learner.tail.remote(), timeout=CALL_TIMEOUT_S)
                raise launch.ProcessFailed(
                    f"learner exited with status {code}; the end of its log:\n{tail}"
                )
            return stopped_by_time
        if deadline is not None and time.monotonic() >= deadline and not stopped_by_time:
            processes.learner.stop.remote(signal.SIGTERM, launch.STOP_GRACE_S)
            stopped_by_time = True
        time.sleep(launch.POLL_S)


def _ray() -> Any:
    return importlib.import_module("ray")


def _threads(resolved: TrainConfig, cpus: float) -> int:
    return resolved.threads or max(1, int(cpus))


def _reachable(bind: str, node_ip: str) -> str:
    """The address actors on other nodes connect to: ``bind`` with the node's IP for 0.0.0.0."""
    scheme, _, rest = bind.partition("://")
    host, _, port = rest.rpartition(":")
    return f"{scheme}://{node_ip}:{port}" if host in ANY_HOST else bind
