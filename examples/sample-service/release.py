"""What differs between the demo's tags (rewritten per tag by deploy_pipelines.demo_repo)."""
VERSION = "v1.0.0"
FAULT_RATE = 0.0      # share of /api/items answered with HTTP 500
EXTRA: dict = {}
