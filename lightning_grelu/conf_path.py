"""Where grelu-train's config groups come from: the package's ``conf/``, then the folders ``GRELU_CONF_PATH``
names (``os.pathsep``-separated, like PATH), each laid out like ``conf/`` (``model/NAME.yaml``, ``data/NAME.yaml``,
``experiment/NAME.yaml``, ...). A net or a data set added outside the package is an option there, its class on
PYTHONPATH.

Every composition of grelu-train's config sees the same folders (grelu-train, grelu-eval, sweep trials,
reproduction jobs, the width-scan engine, the group checks), because they are added to Hydra's search path by
a SearchPathPlugin, registered here, which Hydra consults whenever it starts (its ``@hydra.main`` and its
compose API alike) and which adds them only to the search path of ``conf/``. A folder's option may not share a
name with one of the package's (the package's would win: refused in one line instead).
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

CONF_DIR = Path(__file__).parent / "conf"
ENV = "GRELU_CONF_PATH"


def extra_dirs() -> list[Path]:
    """The folders GRELU_CONF_PATH names, absolute, in order (empty entries skipped)."""
    return [Path(p).expanduser().absolute() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def conf_dirs() -> list[Path]:
    return [CONF_DIR, *extra_dirs()]


class GreluConfPath(SearchPathPlugin):
    """Appends the GRELU_CONF_PATH folders to the search path of an app whose primary configs are ``conf/``."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        ours = {f"file://{CONF_DIR}", str(CONF_DIR)}
        if not any(e.path in ours for e in search_path.get_path()):
            return  # another app (grelu-sweep's own sweep config): not ours to extend
        for folder in extra_dirs():
            search_path.append(provider=ENV, path=f"file://{folder}")


Plugins.instance().register(GreluConfPath)
