"""A Kubernetes API test bed: no kube-apiserver can run on these machines (LOCAL_STACK.md), so the
tests own a loopback HTTP server that speaks the API the real clients use (the `kubernetes`
client, dagster-k8s, kubectl) through a kubeconfig it writes, with controllers that act as the
real ones do and Pods that run for real as Podman containers.

    with TestCluster(tmp, docker_host=env["DEPLOY_DOCKER_HOST"], namespaces=("default", "stockle"),
                     nginx_prefix=Path(env["DEPLOY_NGINX_PREFIX"])) as cluster:
        api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        ...
        cluster.service_url("stockle", "web")      # the Service, through nginx
        assert cluster.errors() == []

Without `docker_host` no kubelet runs (pods stay Pending: a test can play the kubelet through
pods/status); without `nginx_prefix` Services get Endpoints but no listener.

Faults on demand: `cluster.server.faults.fail_next(n, code, match)` (API 5xx),
`cluster.store.drop_watches()` (every open watch stream cut), `cluster.kubelet.fail_pulls`
(images whose pull fails: ErrImagePull / ImagePullBackOff), `cluster.kubelet.readiness_delay`
(seconds before pods of an image can be ready), and a crash loop is any container that exits.

Layout: `resources` (the kinds served and their discovery), `store` (objects, resourceVersions,
watches, label selectors), `defaults` and `validation` (what the server fills in and rejects),
`patches` (merge / strategic / JSON patch), `server` (HTTP, Table printing, faults),
`controllers` (Deployment, ReplicaSet, Job, GC, Endpoints), `rollouts` (Argo Rollouts canary
steps), `kubelet` (Pods as containers), `services` (Services through nginx), `cluster` (all of
it started and stopped together)."""

from deploy_pipelines_tests.k8s_testbed.cluster import TestCluster

__all__ = ["TestCluster"]
