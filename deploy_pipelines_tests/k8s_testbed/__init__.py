"""A Kubernetes API test bed: no kube-apiserver can run on these machines (LOCAL_STACK.md), so the
tests own a loopback HTTP server that speaks the API the real clients use (the `kubernetes`
client, dagster-k8s, kubectl) through a kubeconfig it writes, with controllers that act as the
real ones do and Pods that run for real as Podman containers.

Layout: `resources` (the kinds served and their discovery), `store` (objects, resourceVersions,
watches), `validation` (strict schemas, 422 Status), `patches` (merge / strategic / JSON patch),
`server` (HTTP), `controllers` (Deployment, ReplicaSet, Job, GC, Endpoints), `kubelet` (Pods as
containers), `cluster` (all of it started and stopped together)."""

from deploy_pipelines_tests.k8s_testbed.cluster import TestCluster

__all__ = ["TestCluster"]
