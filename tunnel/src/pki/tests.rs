use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn cluster(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}

fn first_cert(pem: &str) -> CertificateDer<'static> {
    parse_cert_pem(pem).unwrap().remove(0)
}

fn client_with_cert(ca: &Ca, cert: Option<&IssuedCert>) -> ClientConfig {
    match cert {
        Some(c) => agent_client_config(&ca.cert_pem(), &c.cert_pem, &c.key_pem).unwrap(),
        None => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.cert_der().clone()).unwrap();
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    }
}

/// Runs a real rustls handshake over an in-memory pipe plus one byte each way; returns
/// the server's view: the peer certificate on success, the error otherwise.
async fn handshake(
    server: ServerConfig,
    client: ClientConfig,
    name: &str,
) -> Result<Option<CertificateDer<'static>>, String> {
    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let server_side = async move {
        let mut s = acceptor.accept(s_io).await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        s.write_all(b"k").await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let peer = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        Ok::<_, String>(peer)
    };
    let client_side = async move {
        let mut c = connector
            .connect(name, c_io)
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(b"p").await.map_err(|e| e.to_string())?;
        c.flush().await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let (s, c) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server_side, client_side)
    })
    .await
    .expect("handshake hung");
    match (s, c) {
        (Ok(peer), Ok(())) => Ok(peer),
        (Err(e), _) => Err(format!("server: {e}")),
        (_, Err(e)) => Err(format!("client: {e}")),
    }
}

fn server_cert(ca: &Ca) -> IssuedCert {
    ca.issue_server(&["localhost".into(), "127.0.0.1".into()], hour())
        .unwrap()
}

#[tokio::test]
async fn user_listener_client_certificates() {
    let ca = Ca::generate().unwrap();
    let other_ca = Ca::generate().unwrap();
    let server = server_cert(&ca);
    let alice = ca.issue_user("alice", &["dev".into()], hour()).unwrap();
    let now = SystemTime::now();
    let expired = ca
        .issue_user_with_validity(
            "alice",
            &["dev".into()],
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let not_yet = ca
        .issue_user_with_validity(
            "alice",
            &[],
            now + Duration::from_secs(3600),
            now + Duration::from_secs(7200),
        )
        .unwrap();
    let foreign = other_ca
        .issue_user("alice", &["dev".into()], hour())
        .unwrap();

    // (name, client cert, which CA the client trusts, accepted?)
    let cases: [(&str, Option<&IssuedCert>, &Ca, bool); 5] = [
        ("valid user cert", Some(&alice), &ca, true),
        ("no cert (bearer token fallback)", None, &ca, true),
        ("expired cert", Some(&expired), &ca, false),
        ("cert not yet valid", Some(&not_yet), &ca, false),
        ("cert from another CA", Some(&foreign), &ca, false),
    ];
    for (what, cert, trust, ok) in cases {
        let got = handshake(
            ca.user_server_config(&server).unwrap(),
            client_with_cert(trust, cert),
            "localhost",
        )
        .await;
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        if let (Ok(peer), Some(c)) = (&got, cert) {
            let peer = peer.as_ref().unwrap();
            assert_eq!(peer, &first_cert(&c.cert_pem), "{what}");
            let cu = user_from_cert(peer).unwrap();
            assert_eq!(cu.user, "alice");
            assert_eq!(cu.groups, vec!["dev".to_owned()]);
            assert_eq!(cu.serial, c.serial);
        }
    }
    // A client that trusts another CA refuses our server.
    let got = handshake(
        ca.user_server_config(&server).unwrap(),
        client_with_cert(&other_ca, None),
        "localhost",
    )
    .await;
    assert!(got.is_err());
}

#[tokio::test]
async fn agent_listener_requires_a_certificate_when_asked() {
    let ca = Ca::generate().unwrap();
    let server = server_cert(&ca);
    let agent = ca.issue_agent(&cluster("idc-bj"), hour()).unwrap();
    let peer = handshake(
        ca.agent_server_config(&server, true).unwrap(),
        client_with_cert(&ca, Some(&agent)),
        "127.0.0.1",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(agent_cluster_from_cert(&peer).unwrap(), cluster("idc-bj"));
    let refused = handshake(
        ca.agent_server_config(&server, true).unwrap(),
        client_with_cert(&ca, None),
        "127.0.0.1",
    )
    .await;
    assert!(refused.is_err(), "no client cert must fail: {refused:?}");
    let enrol = handshake(
        ca.agent_server_config(&server, false).unwrap(),
        client_with_cert(&ca, None),
        "127.0.0.1",
    )
    .await;
    assert_eq!(enrol, Ok(None));
}

#[test]
fn agent_and_user_certificates_never_pass_as_each_other() {
    let ca = Ca::generate().unwrap();
    let a = first_cert(&ca.issue_agent(&cluster("a"), hour()).unwrap().cert_pem);
    let b = first_cert(&ca.issue_agent(&cluster("b"), hour()).unwrap().cert_pem);
    let user = first_cert(
        &ca.issue_user("alice", &["dev".into()], hour())
            .unwrap()
            .cert_pem,
    );
    let server = first_cert(&server_cert(&ca).cert_pem);
    assert_eq!(agent_cluster_from_cert(&a).unwrap(), cluster("a"));
    assert_eq!(agent_cluster_from_cert(&b).unwrap(), cluster("b"));
    assert_ne!(agent_cluster_from_cert(&a).unwrap(), cluster("b"));
    assert!(matches!(
        agent_cluster_from_cert(&user),
        Err(PkiError::NotAgent(_))
    ));
    assert!(matches!(
        agent_cluster_from_cert(&server),
        Err(PkiError::NotAgent(_))
    ));
    assert!(matches!(user_from_cert(&a), Err(PkiError::NotUser(_))));
    // Reserved names cannot be issued to users.
    for bad in ["causeway:agent:a", "causeway:x", "", "a\nb", "a\r", "a\0"] {
        assert!(ca.issue_user(bad, &[], hour()).is_err(), "{bad:?}");
    }
    assert!(ca.issue_user("eve", &[AGENT_ORG.into()], hour()).is_err());
}

#[test]
fn csr_signing_takes_only_the_key() {
    let ca = Ca::generate().unwrap();
    let key = KeyPair::generate().unwrap();
    // The agent asks for a user-looking certificate with extra names: all ignored.
    let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "admin");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let (pem, serial, _) = ca.sign_agent_csr(&cluster("idc-bj"), &csr, hour()).unwrap();
    let der = first_cert(&pem);
    assert_eq!(agent_cluster_from_cert(&der).unwrap(), cluster("idc-bj"));
    assert_eq!(cert_serial(&der).unwrap(), serial);
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(x.public_key().raw, key.subject_public_key_info().as_slice());
    let orgs: Vec<_> = x
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, [AGENT_ORG]);
    assert!(
        ca.sign_agent_csr(&cluster("a"), "not a csr", hour())
            .is_err()
    );
}

#[tokio::test]
async fn pinned_client_trusts_only_the_pinned_ca() {
    let ca = Ca::generate().unwrap();
    let other = Ca::generate().unwrap();
    let server = server_cert(&ca);
    let ok = handshake(
        ca.agent_server_config(&server, false).unwrap(),
        pinned_client_config(&ca.pin()).unwrap(),
        "localhost",
    )
    .await;
    assert_eq!(ok, Ok(None));
    let wrong_pin = handshake(
        ca.agent_server_config(&server, false).unwrap(),
        pinned_client_config(&other.pin()).unwrap(),
        "localhost",
    )
    .await;
    assert!(wrong_pin.is_err(), "{wrong_pin:?}");
    let wrong_name = handshake(
        ca.agent_server_config(&server, false).unwrap(),
        pinned_client_config(&ca.pin()).unwrap(),
        "stub.example",
    )
    .await;
    assert!(wrong_name.is_err(), "{wrong_name:?}");
    // A server with a certificate from another CA is refused.
    let mut forged = other
        .agent_server_config(&server_cert(&other), false)
        .unwrap();
    let _ = &mut forged;
    let forged_result = handshake(
        forged,
        pinned_client_config(&ca.pin()).unwrap(),
        "localhost",
    )
    .await;
    assert!(forged_result.is_err());
}

#[test]
fn ca_is_created_once_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let a = Ca::load_or_create(dir.path()).unwrap();
    let b = Ca::load_or_create(dir.path()).unwrap();
    assert_eq!(a.pin(), b.pin());
    assert_eq!(a.cert_pem(), b.cert_pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A key that does not match the certificate is refused, naming the file.
    let other = tempfile::tempdir().unwrap();
    Ca::load_or_create(other.path()).unwrap();
    fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
    let err = Ca::load_or_create(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("ca.key") && err.contains("does not match"),
        "{err}"
    );
    // Half a CA is refused.
    fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
    assert!(Ca::load_or_create(dir.path()).is_err());
}

#[test]
fn pins_parse_and_print() {
    let ca = Ca::generate().unwrap();
    let s = ca.pin().to_string();
    assert!(s.starts_with("sha256:") && s.len() == 7 + 64);
    assert_eq!(s.parse::<CaPin>().unwrap(), ca.pin());
    assert_eq!(CaPin::of_cert(ca.cert_der()).unwrap(), ca.pin());
    for bad in [
        "",
        "sha256:",
        "sha1:00",
        &s[..s.len() - 1],
        &format!("{s}0"),
        &s.replace("sha256:", "sha256:zz")[..71],
    ] {
        assert!(bad.parse::<CaPin>().is_err(), "{bad:?}");
    }
}

#[test]
fn pins_refuse_a_sign_space_or_other_junk_in_place_of_a_digit() {
    let pin = Ca::generate().unwrap().pin();
    let s = pin.to_string();
    // Two characters where one byte's two digits stand: the same length as a good pin.
    // `+f` parsed as 0x0f with the hand-written decoder this replaced.
    for junk in ["+f", "-f", " f", "f ", "0x", "g0", "\u{0}0", "f\n"] {
        let bad = format!("sha256:{junk}{}", &s[9..]);
        assert_eq!(bad.len(), s.len(), "{bad:?}");
        assert!(bad.parse::<CaPin>().is_err(), "{bad:?}");
    }
    // Upper-case digits were and are accepted.
    let upper = format!("sha256:{}", s["sha256:".len()..].to_ascii_uppercase());
    assert_eq!(upper.parse::<CaPin>().unwrap(), pin);
}

#[test]
fn serials_are_hex_without_leading_zeros() {
    assert_eq!(serial_hex(&[0, 0, 1, 0xab]), "01ab");
    assert_eq!(serial_hex(&[0x7f]), "7f");
    assert_eq!(serial_hex(&[]), "");
}
