"""The command line, on top of the rooms: ``main`` (every command but ``data``), ``data`` (fetch,
verify and report the datasets) and ``protocols`` (what ``protocols show`` prints)."""
