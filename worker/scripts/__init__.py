"""The client scripts as amworker knows them: the registry, import aliases, the probe.

The registry maps each Gearman function to its script module; the import
aliases let scripts written for Archivematica import ``client.job`` and
``custom_handlers`` unchanged; the probe learns what each script says about
itself in a short-lived child, so the shim never imports them.
"""
