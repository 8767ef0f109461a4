"""How many repeats and how much load each benchmark uses: the full run and `--quick`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    quick: bool
    # 1. command latency
    latency_repeats: int = 3
    pings: int = 200
    warmup_pings: int = 10
    # 2. status across a fleet
    fleet_sizes: tuple[int, ...] = (1, 5, 20)
    fleet_main_size: int = 5
    apps_per_server: int = 10
    fleet_repeats: int = 5
    fleet_cold_sizes: tuple[int, ...] = (1, 5, 20)
    fleet_cold_repeats: int = 2
    fleet_cli_repeats: int = 3
    # The CLI over the largest fleet takes ~25 s a round: fewer samples there.
    fleet_cli_large_repeats: int = 1
    # 3. deploy
    deploy_repeats: int = 3
    # 4. burst
    burst_repeats: int = 2
    burst_members: int = 5
    burst_commands: int = 500
    burst_window: float = 10.0
    # 5. memory and restart
    memory_rooms: int = 20
    memory_commands: int = 2000
    memory_checkpoint: int = 250
    memory_restarts: int = 3
    memory_concurrency: int = 4
    # 6. backup and restore
    backup_mb: int = 200
    backup_repeats: int = 2
    # 7. backup and restore on a worker node
    worker_mb: int = 200
    worker_repeats: int = 2

    @staticmethod
    def full() -> Settings:
        return Settings(quick=False)

    @staticmethod
    def quick_run() -> Settings:
        """A smoke run: every benchmark once, small (the fleet stops at 5 servers)."""
        return Settings(
            quick=True, latency_repeats=2, pings=20, warmup_pings=3,
            fleet_sizes=(1, 5), fleet_repeats=2, fleet_cold_sizes=(5,), fleet_cold_repeats=1,
            fleet_cli_repeats=1, fleet_cli_large_repeats=1,
            deploy_repeats=1,
            burst_repeats=1, burst_commands=50, burst_window=1.0,
            memory_rooms=5, memory_commands=100, memory_checkpoint=50, memory_restarts=1,
            backup_mb=20, backup_repeats=1, worker_mb=20, worker_repeats=1,
        )

    @property
    def fleet_size(self) -> int:
        return max(self.fleet_sizes)
