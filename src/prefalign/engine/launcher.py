"""``prefalign launch``: run a stage command under ``accelerate launch``.

The stage code is the same in one process and in many (see ``distributed.py``);
only the launcher differs. This module resolves an Accelerate config — a path,
or the name of one shipped in ``configs/accelerate/`` (``cpu-ddp``, ``ddp``,
``fsdp``, ``zero2``, ``zero3``, ...) — checks that Accelerate can read it, and
builds the command::

    python -m accelerate.commands.launch --config_file CONFIG [--num_processes N]
        [--main_process_port P] -m prefalign STAGE ARGS...

which is what a user would type by hand; ``torchrun --nproc_per_node N -m
prefalign STAGE ARGS...`` works as well.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prefalign.errors import ConfigError

SHIPPED_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "accelerate"


def shipped_config_names() -> list[str]:
    if not SHIPPED_CONFIGS.is_dir():
        return []
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def resolve_accelerate_config(name_or_path: str) -> Path:
    """The config file for a path or a shipped name; a ``ConfigError`` if there is none
    or Accelerate cannot read it."""
    path = Path(name_or_path).expanduser()
    if not path.is_file() and not path.suffix and path.name == name_or_path:
        path = SHIPPED_CONFIGS / f"{name_or_path}.yaml"
    if not path.is_file():
        names = shipped_config_names()
        known = f"; shipped configs: {', '.join(names)}" if names else ""
        raise ConfigError(f"accelerate config not found: {name_or_path}{known}")
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        load_config_from_file(str(path))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ConfigError(f"{path}: not a valid accelerate config: {err}") from None
    return path


def launch_command(stage_args: list[str], config: str = "cpu-ddp",
                   num_processes: int | None = None, port: int | None = None) -> list[str]:
    """The ``accelerate launch`` command line that runs ``prefalign STAGE_ARGS``."""
    if not stage_args:
        raise ConfigError("name the stage command to launch, e.g. prefalign launch sft -c "
                          "configs/sft.yaml")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(resolve_accelerate_config(config))]
    if num_processes is not None:
        if num_processes < 1:
            raise ConfigError(f"--num-processes must be at least 1, got {num_processes}")
        command += ["--num_processes", str(num_processes)]
    if port is not None:
        command += ["--main_process_port", str(port)]
    return command + ["-m", "prefalign", *stage_args]


def launch(stage_args: list[str], config: str = "cpu-ddp", num_processes: int | None = None,
           port: int | None = None) -> int:
    """Run the stage under Accelerate; the launcher's exit status."""
    return subprocess.call(launch_command(stage_args, config, num_processes, port))
