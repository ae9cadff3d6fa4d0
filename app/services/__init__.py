"""Domain services: no HTTP, no torch. Each function takes a ``Session``; the caller owns the unit
of work (``session_scope()``), commits it, and only then enqueues the jobs a service returned."""
