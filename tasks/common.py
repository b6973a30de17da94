"""Prefect task defaults shared by every stage."""

from __future__ import annotations

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks.runtime import is_transient

# The artifact store is the cache (keys cover data, parameters and code); Prefect's
# own input-hash cache would key on path strings and miss code edits.
STAGE_DEFAULTS = dict(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)

# Tasks that only plan, audit or collect what is already in memory or in the store: they
# write no artifact, so there is no cache to consult, and a failure is a finding, not
# something a retry would change.
UNCACHED = dict(cache_policy=NO_CACHE)
