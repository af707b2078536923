"""An ECS test bed: the moto server for the AWS APIs (in the test process) plus what moto lacks, so
that an ECS release runs for real here:

    with EcsTestBed(env["DEPLOY_DOCKER_HOST"], Path(env["DEPLOY_NGINX_PREFIX"])) as bed:
        infra = bed.provision("morrow", {"public": free_port(), "test": free_port()})
        ecs = bed.client("ecs")      # or any boto3 client with endpoint_url=bed.url
        ...
        assert bed.errors() == []

`scheduler` moves deployments through rolloutState (PRIMARY/ACTIVE, maximumPercent /
minimumHealthyPercent, circuit breaker on failed tasks) and runs each task as a Podman container;
`alb` serves every listener on loopback with nginx, weights as the listener's forward action says;
`validation` rejects what real ECS / elbv2 reject and moto accepts. `bed.task_start_timeout` is
how long a task may take to pass its target group's health check before it counts as failed."""

from deploy_pipelines_tests.ecs_testbed.bed import EcsTestBed

__all__ = ["EcsTestBed"]
