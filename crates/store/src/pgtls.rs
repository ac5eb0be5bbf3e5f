//! TLS to PostgreSQL with rustls (never OpenSSL), honouring libpq's `sslmode`
//! and `sslrootcert` in the database URL.
//!
//! tokio-postgres parses `sslmode=disable|prefer|require` only and knows no
//! `sslrootcert`, so both are taken out of the URL here and the rest is handed to
//! its parser. What each mode means is libpq's (PostgreSQL's "SSL Support" table):
//!
//! | `sslmode` | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers TLS | not checked |
//! | `require` | always | not checked, unless `sslrootcert=` is given: then its chain (as libpq does when a root file exists) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA and issued for the host connected to |
//!
//! Trusted CAs are the PEM file `sslrootcert=` names, or with no `sslrootcert`
//! (or `sslrootcert=system`) the Mozilla roots built into the binary
//! (`webpki-roots`): a managed database with a public certificate works as is,
//! one with a private CA needs its file. Unix sockets are never encrypted (libpq
//! does not either). `allow` is refused: it means "plain first, TLS if the
//! server insists", a retry tokio-postgres cannot make.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Connection, Socket};

use crate::Result;

/// libpq's `sslmode` values this store honours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => bail!(
                "sslmode=allow is not supported (it tries without TLS first, then with it); \
                 use sslmode=prefer, require, verify-ca or verify-full, or disable"
            ),
            other => bail!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// Where the store connects and how: tokio-postgres' configuration and the
/// TLS connector the `sslmode` asks for.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    tls: MakeRustls,
    mode: Mode,
    rootcert: Option<String>,
}

impl Target {
    /// Reads a database URL (`postgres://…` or libpq's `key=value` form).
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let (rest, sslmode, rootcert) = take_tls_options(url);
        let mode = match sslmode {
            Some(m) => Mode::parse(&m).context("in the database URL")?,
            None => Mode::Prefer,
        };
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
            anyhow!(
                "the database URL is not a PostgreSQL connection string ({}); \
                 expected postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                crate::postgres::error_chain(&e)
            )
        })?;
        let only_sockets = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(match mode {
            _ if only_sockets => SslMode::Disable,
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        let tls = if mode == Mode::Disable || only_sockets {
            MakeRustls { config: None }
        } else {
            MakeRustls {
                config: Some(Arc::new(client_config(mode, rootcert.as_deref())?)),
            }
        };
        Ok(Target {
            config,
            tls,
            mode,
            rootcert,
        })
    }

    /// Opens one connection; its error says what to change when TLS refused it.
    pub(crate) async fn connect(&self) -> Result<(Client, Connection<Socket, RustlsStream>)> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| anyhow!("{}", self.explain(&e)))
    }

    fn explain(&self, e: &tokio_postgres::Error) -> String {
        let chain = crate::postgres::error_chain(e);
        let hint = if chain.contains("invalid peer certificate") {
            let ca = match &self.rootcert {
                Some(path) if path != "system" => format!("the CA in sslrootcert={path}"),
                _ => "the built-in public CAs (name your CA's PEM file with sslrootcert=PATH)"
                    .to_string(),
            };
            if chain.contains("not valid for name") {
                format!(
                    "the server's certificate is not issued for the host in the URL \
                     (sslmode={}); connect by a name the certificate lists, or use \
                     sslmode=verify-ca to check only its CA",
                    self.mode.name()
                )
            } else {
                format!(
                    "the server's certificate is not signed by {ca} (sslmode={}); \
                     give the CA that signed it with sslrootcert=",
                    self.mode.name()
                )
            }
        } else if chain.contains("server does not support TLS") {
            format!(
                "sslmode={} requires TLS and the server does not offer it: enable ssl \
                 in postgresql.conf, or use sslmode=prefer",
                self.mode.name()
            )
        } else {
            String::new()
        };
        if hint.is_empty() {
            format!("connecting to PostgreSQL: {chain}")
        } else {
            format!("connecting to PostgreSQL: {chain}\n  help: {hint}")
        }
    }
}

/// Splits `sslmode` and `sslrootcert` out of a URL's query or a `key=value`
/// string; returns the rest for tokio-postgres.
fn take_tls_options(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(percent_decode(v)),
                Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, mode, root)
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
                Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_string()),
                _ => kept.push(token),
            }
        }
        (kept.join(" "), mode, root)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    // The ring provider explicitly: the process-wide default may be unset (or
    // another library's), and ring is the one the tree already builds.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(rootcert: Option<&str>) -> Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    match rootcert {
        None | Some("system") => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let file = PathBuf::from(path);
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file)
                .map_err(|e| anyhow!("sslrootcert={path}: {e}"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| anyhow!("sslrootcert={path}: not a PEM certificate file ({e})"))?;
            if certs.is_empty() {
                bail!(
                    "sslrootcert={path}: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                );
            }
            for cert in certs {
                store.add(cert).map_err(|e| {
                    anyhow!("sslrootcert={path}: a certificate in it is not usable as a CA: {e}")
                })?;
            }
        }
    }
    Ok(store)
}

fn client_config(mode: Mode, rootcert: Option<&str>) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        (Mode::Prefer, _) | (Mode::Require, None) => Arc::new(AcceptAny(provider.clone())),
        (Mode::Require, Some(_)) | (Mode::VerifyCa, _) => Arc::new(ChainOnly(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(rootcert)?),
                provider.clone(),
            )
            .build()
            .context("building the certificate verifier")?,
        )),
        (Mode::VerifyFull, _) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(rootcert)?),
            provider.clone(),
        )
        .build()
        .context("building the certificate verifier")?,
        (Mode::Disable, _) => unreachable!("no TLS configuration for sslmode=disable"),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `prefer` and `require`: encrypted, the certificate not checked (libpq's
/// meaning), the handshake's signatures still verified.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not checked.
/// webpki checks the chain before the name, so a name mismatch means the chain
/// was good.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS hook over tokio-rustls (written here rather than adding
/// `tokio-postgres-rustls`: it is forty lines over crates already in the tree).
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Option<Arc<rustls::ClientConfig>>,
}

pub(crate) struct RustlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: Option<ServerName<'static>>,
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        // A unix socket has no name; it is never encrypted (sslmode is disable then).
        let name = if domain.is_empty() || self.config.is_none() {
            None
        } else {
            Some(ServerName::try_from(domain.to_string()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{domain:?} is not a host name TLS can check: {e}"),
                )
            })?)
        };
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let (Some(config), Some(name)) = (self.config, self.name) else {
                return Err(io::Error::other("TLS is off for this connection"));
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

pub(crate) struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (the client says it does not bind),
        // which every PostgreSQL accepts unless the client asks for binding.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_keep_the_rest() {
        let (rest, mode, root) = take_tls_options(
            "postgres://u:p@db:5432/h?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p@db:5432/h?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        let (rest, mode, root) = take_tls_options("host=db dbname=h sslmode=require");
        assert_eq!(rest, "host=db dbname=h");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);
    }

    #[test]
    fn unknown_and_unsupported_modes_are_named() {
        let e = Target::parse("postgres://db/h?sslmode=verify_full")
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("\"verify_full\" is not one of"),
            "{e:#}"
        );
        let e = Target::parse("postgres://db/h?sslmode=allow")
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("sslmode=allow is not supported"),
            "{e:#}"
        );
        let e = Target::parse("postgres://db/h?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("sslrootcert=/nonexistent/ca.pem"),
            "{e:#}"
        );
    }

    #[test]
    fn unix_sockets_are_never_encrypted() {
        let t = Target::parse("postgres://u@/h?host=/run/postgresql&sslmode=require").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        assert!(t.tls.config.is_none());
    }
}
