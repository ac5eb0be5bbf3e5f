# The OPA admission policy of section 8 ("k8s/security/opa-policy.yaml"),
# checked in CI against the AdmissionReview requests in k8s/ before the
# cluster sees them. One change from the document: `starts_with` is not a
# Rego builtin (hangar names it and suggests `startswith`).
package kubernetes.admission

deny[msg] {
  input.request.kind.kind == "Pod"
  image := input.request.object.spec.containers[_].image
  not startswith(image, "ghcr.io/")
  msg := sprintf("Only images from ghcr.io are allowed (%s)", [image])
}

deny[msg] {
  input.request.kind.kind == "Pod"
  input.request.object.spec.containers[_].securityContext.privileged
  msg := "Privileged containers are not allowed"
}

deny[msg] {
  input.request.kind.kind == "Pod"
  not input.request.object.spec.securityContext.runAsNonRoot
  msg := "Containers must run as non-root"
}
