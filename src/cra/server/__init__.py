"""``cra serve``: the HTTP + WebSocket API over the embedded runtime (SPEC 7).

An outer layer: it imports the core, and the core never imports it. Install with ``pip install 'cra[server]'``.
"""
