"""User-facing errors: each carries one line that names the problem and the fix."""


class ConfigError(ValueError):
    """A configuration value is out of range or unknown."""


EXIT_CONFIG = 2  # bad config, data or arguments: nothing was trained
EXIT_FAILED = 1  # the run crashed
EXIT_DIVERGED = 3  # the loss became NaN/Inf; the last good checkpoint is kept
