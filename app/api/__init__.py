"""The HTTP layer: routers parse, authorize, call one service and shape the answer."""
