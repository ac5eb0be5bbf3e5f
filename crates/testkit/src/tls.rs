//! Certificates for tests that speak TLS: a CA made at test time with the
//! `openssl` command-line tool (installed wherever PostgreSQL's TLS tests
//! run, so no certificate library joins the build), and a certificate for
//! the name `localhost` only, signed by it.

use std::path::PathBuf;
use std::process::Command;

/// A CA, another CA that signed nothing, and `localhost`'s certificate and
/// key signed by the first, as PEM files in a directory of their own
/// (`ca.pem`, `other-ca.pem`, `server.crt`, `server.key`).
pub struct LocalhostCerts {
    pub dir: tempfile::TempDir,
    /// The PEM file of the CA that signed the server's certificate.
    pub ca: PathBuf,
    /// The PEM file of another CA, which signed nothing the server has.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Makes [`LocalhostCerts`], or `None` (failing under `$CI`, skipping loudly
/// elsewhere) when the `openssl` tool is missing.
pub fn localhost_certs() -> Option<LocalhostCerts> {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .map_err(|e| format!("the openssl command-line tool: {e}"))
        .and_then(|o| {
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| "`openssl version` failed".to_string())
        });
    crate::required_tool("generating a test CA with openssl", openssl)?;
    let files = tempfile::tempdir().expect("a temporary directory");
    let d = files.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for ca in ["ca", "other-ca"] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=hangar test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    Some(LocalhostCerts {
        ca: d.join("ca.pem"),
        other_ca: d.join("other-ca.pem"),
        server_cert: d.join("server.crt"),
        server_key: d.join("server.key"),
        dir: files,
    })
}
