use std::path::PathBuf;

use super::*;
use hashsplit_policy::Scheme;

/// A file in a fresh temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("hashsplit-transport-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-signed").pem()
}

fn url(text: &str) -> PoolUrl {
    PoolUrl::parse(text).expect("url parses")
}

#[test]
fn a_ca_file_with_a_ca_certificate_is_usable() {
    let file = TempFile::new("ca.pem", format!("{}{}", ca_pem(), ca_pem()).as_bytes());
    assert_eq!(check_ca_file(&file.0).expect("usable"), 2);
}

#[test]
fn a_missing_ca_file_is_named_in_the_error() {
    let path = PathBuf::from("/nonexistent/hashsplit/ca.pem");
    let error = check_ca_file(&path).unwrap_err();
    assert!(matches!(error, TransportError::CaFile { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("ca_file /nonexistent/hashsplit/ca.pem is unusable: "),
        "{text}"
    );
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let file = TempFile::new("empty.pem", b"just some text\n");
    let text = check_ca_file(&file.0).unwrap_err().to_string();
    assert!(text.ends_with("holds no PEM certificate"), "{text}");
}

#[test]
fn a_ca_file_with_a_broken_certificate_says_which() {
    let broken = format!(
        "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ca_pem()
    );
    let file = TempFile::new("broken.pem", broken.as_bytes());
    let text = check_ca_file(&file.0).unwrap_err().to_string();
    assert!(text.contains("certificate 2: "), "{text}");
}

#[tokio::test]
async fn a_broken_ca_file_fails_before_any_connection() {
    // Nothing listens on port 1: a TCP attempt would give a connect error.
    let tls = PoolTls {
        ca_file: Some(PathBuf::from("/nonexistent/hashsplit/ca.pem")),
        insecure: false,
    };
    let error = connect(&url("stratum+ssl://127.0.0.1:1"), &tls)
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::CaFile { .. }), "{error:?}");
}

#[test]
fn the_trust_of_each_kind_of_pool_is_described() {
    let public = PoolTls::default();
    assert_eq!(
        describe_trust(&url("stratum+tcp://a.example:3333"), &public),
        None
    );
    let tls = url("stratum+ssl://a.example:3333");
    assert_eq!(tls.scheme, Scheme::Ssl);
    assert_eq!(
        describe_trust(&tls, &public).as_deref(),
        Some("tls, verified against the public webpki roots")
    );
    let private = PoolTls {
        ca_file: Some(PathBuf::from("/etc/hashsplit/pool-ca.pem")),
        insecure: false,
    };
    assert_eq!(
        describe_trust(&tls, &private).as_deref(),
        Some("tls, verified against ca_file /etc/hashsplit/pool-ca.pem")
    );
    let insecure = PoolTls {
        ca_file: None,
        insecure: true,
    };
    assert!(
        describe_trust(&tls, &insecure)
            .unwrap()
            .contains("NOT VERIFIED")
    );
}

#[test]
fn every_kind_of_client_config_builds() {
    let roots = roots_from_pem(Path::new("ca.pem"), Ok(ca_pem().into_bytes())).expect("roots");
    assert!(client_config(&PoolTls::default(), None).is_ok());
    assert!(client_config(&PoolTls::default(), Some(roots)).is_ok());
    let insecure = PoolTls {
        ca_file: None,
        insecure: true,
    };
    assert!(client_config(&insecure, None).is_ok());
}

#[test]
fn presented_names_are_shown_as_the_certificate_holds_them() {
    assert_eq!(plain_name("DnsName(\"pool.example\")"), "pool.example");
    assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
    assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    let error = TransportError::WrongName {
        url: "stratum+ssl://127.0.0.1:4443".into(),
        host: "127.0.0.1".into(),
        presented: vec!["pool.example".into(), "*.pool.example".into()],
    };
    assert_eq!(
        error.to_string(),
        "certificate for pool stratum+ssl://127.0.0.1:4443 is not valid for name \"127.0.0.1\" \
         (it is for pool.example, *.pool.example): refusing it, the pool may be impersonated"
    );
}
