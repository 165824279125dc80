//! Which server certificates the operator's client (`memcached-lite
//! cluster`) trusts: those given (`--tls-ca`), as roots or as the server's
//! own certificate.
//!
//! Why not rustls's verifier alone: a self-signed certificate made the
//! usual way (`openssl req -x509`) says it is a CA, and webpki refuses a
//! CA certificate as a server's own (`CaUsedAsEndEntity`), where curl
//! accepts it. So a server certificate byte-identical to one of the given
//! ones is accepted (pinned: the operator handed over that very
//! certificate), its name still checked; anything else goes through
//! rustls's webpki verifier with the given certificates as roots.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{verify_server_name, WebPkiServerVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

#[derive(Debug)]
struct Given {
    certs: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for Given {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A TLS client configuration trusting exactly the PEM certificates in
/// `pem` (see the module doc).
pub fn client_config(pem: &[u8]) -> anyhow::Result<ClientConfig> {
    let certs = pem_certs(pem)?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
    anyhow::ensure!(added > 0, "no usable certificate");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Given { certs, webpki }))
        .with_no_client_auth())
}

/// The certificates of a PEM bundle.
fn pem_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate");
    Ok(certs)
}
