# Bundled Dockerfile checks over conftest's Dockerfile shape: input is a list
# of {Cmd, Flags, Value, Stage, Original, StartLine, ...}.
package hangar.dockerfile

is_dockerfile if {
	is_array(input)
	is_string(input[0].Cmd)
}

final_stage := max({c.Stage | some c in input}) if is_dockerfile

stage_names contains lower(c.Value[2]) if {
	is_dockerfile
	some c in input
	c.Cmd == "from"
	count(c.Value) >= 3
	lower(c.Value[1]) == "as"
}

final_users := [c | some c in input; c.Cmd == "user"; c.Stage == final_stage]

deny contains {"id": "DF001", "msg": "the final stage has no USER instruction: the container runs as root"} if {
	is_dockerfile
	count(final_users) == 0
}

deny contains {"id": "DF001", "msg": msg, "locate": last.Original} if {
	is_dockerfile
	count(final_users) > 0
	last := final_users[count(final_users) - 1]
	user := split(last.Value[0], ":")[0]
	user in {"root", "0"}
	msg := sprintf("line %d: the container runs as root (USER %s)", [last.StartLine, last.Value[0]])
}

deny contains {"id": "DF002", "msg": msg, "locate": c.Original} if {
	is_dockerfile
	some c in input
	c.Cmd == "add"
	some v in c.Value
	regex.match(`^(https?|ftp)://`, v)
	msg := sprintf("line %d: ADD downloads %s; use curl/wget with a checksum in RUN, or COPY", [c.StartLine, v])
}

deny contains {"id": "DF003", "msg": msg, "locate": c.Original} if {
	is_dockerfile
	some c in input
	c.Cmd == "from"
	image := c.Value[0]
	not lower(image) in stage_names
	image != "scratch"
	not contains(image, "$")
	unpinned(image)
	msg := sprintf("line %d: base image %q is not pinned (no tag, or :latest); pin a version or digest", [c.StartLine, image])
}

unpinned(image) if endswith(image, ":latest")

unpinned(image) if {
	not contains(image, "@")
	parts := split(image, "/")
	not contains(parts[count(parts) - 1], ":")
}
