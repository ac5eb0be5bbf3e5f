# Bundled Kubernetes checks. Apply to Pods and to the pod templates of
# workload kinds; other documents (ConfigMaps, admission reviews, ...) are skipped.
package hangar.kubernetes

workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

pod_spec := input.spec if input.kind == "Pod"

pod_spec := input.spec.template.spec if workload_kinds[input.kind]

pod_spec := input.spec.jobTemplate.spec.template.spec if input.kind == "CronJob"

resource := sprintf("%s/%s", [input.kind, object.get(input, ["metadata", "name"], "unnamed")])

containers contains c if {
	some c in pod_spec.containers
}

containers contains c if {
	some c in pod_spec.initContainers
}

deny contains {"id": "K8S001", "msg": msg, "locate": c.name} if {
	some c in containers
	c.securityContext.privileged == true
	msg := sprintf("%s: container %q runs privileged", [resource, c.name])
}

deny contains {"id": "K8S002", "msg": msg, "locate": c.name} if {
	some c in containers
	not runs_as_non_root(c)
	msg := sprintf("%s: container %q may run as root: set securityContext.runAsNonRoot: true", [resource, c.name])
}

runs_as_non_root(c) if c.securityContext.runAsNonRoot == true

runs_as_non_root(c) if {
	not c.securityContext.runAsNonRoot == false
	pod_spec.securityContext.runAsNonRoot == true
}

deny contains {"id": "K8S003", "msg": msg, "locate": c.image} if {
	some c in containers
	unpinned_image(c.image)
	msg := sprintf("%s: container %q uses image %q without a fixed tag (untagged or :latest)", [resource, c.name, c.image])
}

unpinned_image(image) if endswith(image, ":latest")

unpinned_image(image) if {
	not contains(image, "@")
	parts := split(image, "/")
	not contains(parts[count(parts) - 1], ":")
}

deny contains {"id": "K8S004", "msg": msg, "locate": c.name} if {
	some c in containers
	some r in ["cpu", "memory"]
	not c.resources.limits[r]
	msg := sprintf("%s: container %q has no %s limit (resources.limits.%s)", [resource, c.name, r, r])
}

deny contains {"id": "K8S005", "msg": msg, "locate": "hostPath"} if {
	some v in pod_spec.volumes
	v.hostPath
	msg := sprintf("%s: volume %q mounts a hostPath (%s)", [resource, v.name, object.get(v.hostPath, "path", "?")])
}

deny contains {"id": "K8S006", "msg": msg, "locate": "hostNetwork"} if {
	pod_spec.hostNetwork == true
	msg := sprintf("%s: uses the host's network namespace (hostNetwork: true)", [resource])
}
