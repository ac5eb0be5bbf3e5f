//! TLS to PostgreSQL against a real server that takes TCP connections only over
//! TLS, with a certificate for `localhost` signed by a CA made for the test:
//! each `sslmode` does what libpq's does, and a wrong CA or name is refused
//! with what to change.

use hangar_store::Store;
use hangar_store::postgres::PgStore;

#[test]
fn each_sslmode_against_a_server_that_requires_tls() {
    let Some(tls) = hangar_testkit::postgres::tls_cluster() else {
        return;
    };
    let database = tls.cluster.database();
    let name = database.rsplit('/').next().unwrap().to_string();
    let port = tls.cluster.port();
    let ca = tls.ca.display().to_string();
    let other = tls.other_ca.display().to_string();
    let url = |host: &str, query: &str| format!("postgres://hangar@{host}:{port}/{name}?{query}");
    let data = tempfile::tempdir().unwrap();
    let open = |u: String| PgStore::open(&u, data.path()).map_err(|e| format!("{e:#}"));
    let refused = |u: String| match open(u) {
        Ok(_) => panic!("connected where TLS should have refused"),
        Err(e) => e,
    };

    // The certificate's name and its CA: verified, and the store works over it.
    let store = open(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .expect("verify-full with the right CA and name");
    assert!(store.list_repos().unwrap().is_empty());

    // Without TLS the server refuses (hostnossl reject): every success here was encrypted.
    let e = refused(url("127.0.0.1", "sslmode=disable"));
    assert!(e.contains("no encryption"), "{e}");

    // libpq's default (prefer) and require encrypt without checking the certificate.
    open(url("127.0.0.1", "")).expect("prefer, the default");
    open(url("127.0.0.1", "sslmode=require")).expect("require without a CA file");
    // verify-ca checks the chain only: an address the certificate does not name passes.
    open(url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .expect("verify-ca");

    // verify-full by an address the certificate does not name: refused, saying why.
    let e = refused(url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(e.contains("not issued for the host"), "{e}");
    assert!(e.contains("sslmode=verify-ca"), "{e}");

    // Another CA: refused in every verifying mode, naming the file given.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = refused(url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ));
        assert!(
            e.contains(&format!("not signed by the CA in sslrootcert={other}")),
            "{mode}: {e}"
        );
    }
    // No CA file: the built-in public roots do not know the test's CA.
    let e = refused(url("localhost", "sslmode=verify-full"));
    assert!(e.contains("built-in public CAs"), "{e}");
}
