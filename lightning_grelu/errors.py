"""User-facing errors: each carries one line that names the problem and the fix."""

import argparse
import re
import sys


class ConfigError(ValueError):
    """A configuration value is out of range or unknown."""


class MachineError(ConfigError):
    """This machine cannot run the job, whatever its parameters: no GPU, an unwritable or full disk, missing
    data files. grelu-train reports it as bad input (exit 2); a sweep worker stops on it and leaves the
    trial for a machine that can (a trial's own parameters are never blamed for it)."""


EXIT_MACHINE = 5  # a sweep trial's process only: the machine, not the trial, is at fault


EXIT_CONFIG = 2  # bad config, data or arguments: nothing was trained
EXIT_FAILED = 1  # the run crashed
EXIT_DIVERGED = 3  # the loss became NaN/Inf; the last good checkpoint is kept


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the suite's error style: one line (what is wrong, where help is), exit 2; and help texts
    in plain words (the docstrings they come from mark code ``like this``; a terminal shows it as is)."""

    def format_help(self) -> str:
        return re.sub(r"``([^`]+)``", r"\1", super().format_help())

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_CONFIG)
