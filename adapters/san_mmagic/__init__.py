"""SAN for MMagic/MMEngine: a registered ``SANHook`` (install the ``[mmagic]`` extra)."""
