"""The Hugging Face hub, quietly: one probe used by every loader of models, tokenizers and datasets.

memlens never downloads at run time by itself; a hub name works where the hub or its local cache
is reachable. :func:`quiet_hub` wraps a ``from_pretrained`` / ``load_dataset`` call: it silences
huggingface_hub's retry warnings (memlens reports a failure as one sentence) and, when a 3 s TCP
probe of the hub endpoint fails, switches the hub libraries to offline mode (cache only) for the
call, so an uncached name fails in about 2 s instead of after 25-50 s of retries. Behind a proxy
the probe says nothing and is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@functools.lru_cache(maxsize=8)
def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout_s`` (True behind a
    proxy, where a direct connection says nothing)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    url = urlparse(endpoint)
    host = url.hostname
    if not host:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Silence hub retry warnings and go offline (cache only) at once when the hub is unreachable."""
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hub_logging

    before = hub_logging.get_verbosity()
    offline_before = constants.HF_HUB_OFFLINE
    ds_config = sys.modules.get("datasets.config")  # datasets copies the flag at import
    ds_before = getattr(ds_config, "HF_HUB_OFFLINE", None)
    hub_logging.set_verbosity_error()
    if not offline_before and not hub_reachable(constants.ENDPOINT):
        constants.HF_HUB_OFFLINE = True
        if ds_config is not None:
            ds_config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline_before
        if ds_config is not None:
            ds_config.HF_HUB_OFFLINE = ds_before
        hub_logging.set_verbosity(before)
