"""The persistent XLA compilation cache, and counting what was really compiled.

A diffusion sampler is one large program per (bucket, batch rows): compiling it takes tens
of seconds on a CPU, often longer than enhancing a file with it. JAX can keep compiled
executables on disk and load them in the next process instead of compiling again; inference
turns that on by default, in a per-user folder:

    $DIFFRESTORE_CACHE_DIR, else $XDG_CACHE_HOME/diffrestore/xla, else ~/.cache/diffrestore/xla

`enable()` sets JAX's cache folder unless one is set already (JAX_COMPILATION_CACHE_DIR or
`jax.config`), so a user's own choice wins. `CompileCounter` counts, through JAX's monitoring
events, how many programs XLA compiled and how many came from the cache: that is how tests
and benchmarks tell a warm start from a cold one without timing anything.

The cache is trusted code: whoever can write into its folder can make this process run
arbitrary code (JAX's own warning), so it lives under the user's home, not a shared folder.
"""
from __future__ import annotations

import logging
import os
import pathlib
import threading

import jax
from jax import monitoring

log = logging.getLogger("diffrestore")

ENV_VAR = "DIFFRESTORE_CACHE_DIR"
# JAX's monitoring events: every request for an executable (compiled or loaded from the
# persistent cache) is timed as BACKEND_COMPILE; a load from the cache also records CACHE_HIT.
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"


def default_cache_dir() -> pathlib.Path:
    """$DIFFRESTORE_CACHE_DIR, else $XDG_CACHE_HOME/diffrestore/xla, else ~/.cache/diffrestore/xla."""
    if os.environ.get(ENV_VAR):
        return pathlib.Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "diffrestore" / "xla"


def enable(directory: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.0) -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache.

    Args:
      directory: the cache folder; None: keep a folder the user set for JAX already, else
        `default_cache_dir()`.
      min_compile_seconds: programs that compiled faster than this are not written (0: all,
        so that a second process compiles nothing at all; inference programs are few).

    Returns:
      The folder in use, or None if it cannot be created (the cache then stays off, with a
      warning: a read-only home must not stop enhancement).
    """
    current = jax.config.jax_compilation_cache_dir
    if directory is None and current:
        path = pathlib.Path(current)
    else:
        path = pathlib.Path(directory).expanduser() if directory is not None else default_cache_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            log.warning("compilation cache off: cannot create %s (%s)", path, err)
            return None
        if str(path) != current:
            jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    # -1: write entries of any size (JAX's default threshold may skip small programs).
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def configure(setting) -> None:
    """What the `compilation_cache` argument of `Enhancer` and `Prior` means: True: `enable()`
    (the user's JAX folder, else the default one); a path: that folder; False: `disable()`;
    None: leave JAX's setting as it is (training jobs decide through their own config)."""
    if setting is False:
        disable()
    elif setting is not None:
        enable(None if setting is True else setting)


def disable() -> None:
    """Stops reading and writing the persistent cache in this process."""
    jax.config.update("jax_enable_compilation_cache", False)


class CompileCounter:
    """Counts XLA compilations and persistent-cache loads in this process from now on.

        counter = CompileCounter()
        ...                          # jit calls, AOT compiles
        counter.compiled, counter.loaded_from_cache

    The listeners are process-wide (JAX has no per-thread events), so compilations in other
    threads are counted too.
    """

    _lock = threading.Lock()
    _totals = {"requests": 0, "hits": 0}
    _registered = False

    def __init__(self):
        self._register()
        self._start = dict(self._totals)

    @classmethod
    def _register(cls):
        with cls._lock:
            if cls._registered:
                return

            def on_duration(event, duration_secs, **kwargs):
                if event == BACKEND_COMPILE:
                    with cls._lock:
                        cls._totals["requests"] += 1

            def on_event(event, **kwargs):
                if event == CACHE_HIT:
                    with cls._lock:
                        cls._totals["hits"] += 1

            monitoring.register_event_duration_secs_listener(on_duration)
            monitoring.register_event_listener(on_event)
            cls._registered = True

    @property
    def loaded_from_cache(self) -> int:
        """Executables loaded from the persistent cache instead of compiled."""
        return self._totals["hits"] - self._start["hits"]

    @property
    def compiled(self) -> int:
        """Executables XLA really compiled (requests not answered by the cache)."""
        return self._totals["requests"] - self._start["requests"] - self.loaded_from_cache
