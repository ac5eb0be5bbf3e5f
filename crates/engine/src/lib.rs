//! Planning (needs DAG, matrix) and execution of workflow jobs and steps on the host.
