"""Logging set-up from log_config.yaml, and the run record (configuration and git commit) of a run."""

from __future__ import annotations

import logging
import os
import subprocess
from logging.config import dictConfig

import yaml

from utils.files import write_json

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_CONFIG_FILE = os.path.join(REPO_ROOT, "log_config.yaml")
LOGGER_NAME = "file_logger"


def setup_file_logger(log_path: str) -> logging.Logger:
    """Apply log_config.yaml with its file handler writing to ``log_path``; return the project logger."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(LOG_CONFIG_FILE, encoding="utf-8") as file:
        config = yaml.safe_load(file)
    config["handlers"]["file_handler"]["filename"] = log_path
    dictConfig(config)
    return logging.getLogger(LOGGER_NAME)


def close_file_logger() -> None:
    """Detach and close the project logger's file handler: a later run in the same process must not write into
    this run's log."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def git_commit() -> str:
    """The commit of the checkout this code runs from, with '-dirty' if it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def write_run_config(path: str, config: dict) -> None:
    """Write the full configuration of a run, plus the git commit, as JSON."""
    write_json(path, {**config, "git_commit": git_commit()})
