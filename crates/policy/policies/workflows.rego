# Bundled GitHub Actions workflow checks. Apply to documents with `on` and `jobs`.
# Settings (via --data): {"hangar_settings": {"workflows": {"allow_unpinned_owners": ["actions"]}}}
package hangar.workflows

is_workflow if {
	is_object(input.jobs)
	"on" in object.keys(input)
}

default_allowed_owners := ["actions"]

allowed_owners := object.get(data, ["hangar_settings", "workflows", "allow_unpinned_owners"], default_allowed_owners)

# Every `uses:` of steps and of reusable-workflow jobs.
uses contains [job_id, u] if {
	is_workflow
	some job_id, job in input.jobs
	some step in job.steps
	u := step.uses
}

uses contains [job_id, job.uses] if {
	is_workflow
	some job_id, job in input.jobs
	is_string(job.uses)
}

# hangar's own steps run inside hangar (crates/builtins); nothing is fetched.
hangar_step(u) if regex.match(`^hangar/(release|deploy|scan)@v1$`, u)

deny contains {"id": "GHA001", "msg": msg, "locate": u} if {
	some [job_id, u] in uses
	not hangar_step(u)
	not startswith(u, "./")
	not startswith(u, "docker://")
	parts := split(u, "@")
	not regex.match(`^[0-9a-f]{40}$`, parts[count(parts) - 1])
	owner := split(parts[0], "/")[0]
	not owner in allowed_owners
	msg := sprintf("job %q: third-party action %q is not pinned to a full commit SHA", [job_id, u])
}

triggers contains t if {
	is_string(input.on)
	t := input.on
}

triggers contains t if {
	is_array(input.on)
	some t in input.on
}

triggers contains t if {
	is_object(input.on)
	some t, _ in input.on
}

head_ref_expr := `github\.event\.pull_request\.head\.(sha|ref)|github\.head_ref|refs/pull/`

deny contains {"id": "GHA002", "msg": msg, "locate": step.with.ref} if {
	is_workflow
	"pull_request_target" in triggers
	some job_id, job in input.jobs
	some step in job.steps
	startswith(step.uses, "actions/checkout@")
	regex.match(head_ref_expr, step.with.ref)
	msg := sprintf("job %q: pull_request_target checks out the pull request's head (%s): untrusted code runs with the base repository's secrets", [job_id, step.with.ref])
}

untrusted := `\$\{\{[^}]*github\.(event\.(issue\.(title|body)|pull_request\.(title|body|head\.ref|head\.label|head\.repo\.default_branch)|comment\.body|review\.body|review_comment\.body|discussion\.(title|body)|pages\.[^}]*\.page_name|commits\.[^}]*\.(message|author\.(email|name))|head_commit\.(message|author\.(email|name))|workflow_run\.(head_branch|head_commit\.message|display_title))|head_ref)[^}]*\}\}`

deny contains {"id": "GHA003", "msg": msg, "locate": expr} if {
	is_workflow
	some job_id, job in input.jobs
	some step in job.steps
	is_string(step.run)
	some expr in regex.find_n(untrusted, step.run, -1)
	msg := sprintf("job %q: untrusted input %s is interpolated into run:; pass it through env: and quote \"$VAR\"", [job_id, expr])
}
