# Container security of section 5.1: a minimal Alpine base, a non-root runtime.
package main

import rego.v1

deny contains msg if {
  some i
  input[i].Cmd == "from"
  image := input[i].Value[0]
  startswith(image, "python:")
  not contains(image, "alpine")
  msg := sprintf("base image %s is not Alpine", [image])
}
