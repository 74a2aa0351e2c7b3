"""Per-process memo of compiled functions: runs in one process that share a model and settings
(a study's rules, a seed sweep) reuse one jitted evaluation / reference function instead of
compiling it again for every run."""
import functools


def cached(factory, *key):
    """factory(*key), memoised per process when the key is hashable: runs in one process that
    share a model and settings (a study's rules, a seed sweep) then reuse one compiled function."""
    try:
        hash(key)
    except TypeError:
        return factory(*key)
    return _cached_call(factory, *key)


@functools.lru_cache(maxsize=64)
def _cached_call(factory, *key):
    return factory(*key)


def clear():
    """Forget every memoised function (tests that count compilations start from none)."""
    _cached_call.cache_clear()
