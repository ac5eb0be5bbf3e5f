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

# The triggers that run with the base repository's secrets and a write
# token while a pull request can name the code ("pwn requests").
privileged := {"pull_request_target", "workflow_run"}

privileged_triggers := concat(", ", sort([t | some t in triggers; t in privileged]))

head_ref_expr := `github\.event\.pull_request\.head\.(sha|ref)|github\.head_ref|refs/pull/|github\.event\.workflow_run\.head_(sha|branch)`

head_repo_expr := `github\.event\.(pull_request\.head\.repo\.full_name|workflow_run\.head_repository\.full_name)`

deny contains {"id": "GHA002", "msg": msg, "locate": step.with.ref} if {
	is_workflow
	privileged_triggers != ""
	some job_id, job in input.jobs
	some step in job.steps
	startswith(step.uses, "actions/checkout@")
	regex.match(head_ref_expr, step.with.ref)
	msg := sprintf("job %q: %s checks out the pull request's head (%s): untrusted code runs with the base repository's secrets", [job_id, privileged_triggers, step.with.ref])
}

deny contains {"id": "GHA002", "msg": msg, "locate": step.with.repository} if {
	is_workflow
	privileged_triggers != ""
	some job_id, job in input.jobs
	some step in job.steps
	startswith(step.uses, "actions/checkout@")
	regex.match(head_repo_expr, step.with.repository)
	msg := sprintf("job %q: %s checks out the pull request's repository (%s): untrusted code runs with the base repository's secrets", [job_id, privileged_triggers, step.with.repository])
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
