//! The CLI's process-level tests, as one test binary: each module is one
//! file beside this one (one link instead of one per file; the tidy test
//! checks that every file here is listed, so none is silently left out).

mod common;

mod agent_identity;
mod agent_refusal;
mod alerts_cli;
mod api_contract;
mod backup_schedule;
mod builtin_steps;
mod corpus_agree;
mod deploy_crash;
mod dry_run;
mod examples;
mod init_cli;
mod invalid_workflows;
mod job_deploy;
mod job_level;
mod job_processes;
mod protection_cli;
mod recovery_cli;
mod release_forge;
mod release_pr;
mod results_service;
mod run_cli;
mod run_lines;
mod sandbox;
mod scan_coverage_cli;
mod scan_policy_cli;
mod scan_secrets_cli;
mod serve_logs;
mod server_admin_browser;
mod server_browser;
mod server_kill;
mod server_partition;
mod server_postgres;
mod server_process;
mod server_restart;
mod tcp_services;
mod up_logs;
mod validate_cli;
mod workspace_cli;
