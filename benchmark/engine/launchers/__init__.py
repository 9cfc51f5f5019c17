"""Launchers: how a plan's jobs are executed. ``base`` holds the registry and what every launcher
shares; ``local`` (this process or a pool on this host) and ``ray`` (a Ray instance or cluster) are
the built-ins, and a plugin can register its own (``register_launcher``)."""
