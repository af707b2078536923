"""The end-to-end families (planted secrets, faults, concurrency) share one stack and world:
registered here once, so a session-scoped world is built once for the whole directory. (The
ledger's hooks are in ledger.py, registered by deploy_pipelines_tests/conftest.py.)"""

from deploy_pipelines_tests.reliability.release_world import (  # noqa: F401
    app_release, demo_repo, fleet_images, local_stack, rel_world)
